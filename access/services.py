"""The console's second factor: checking a code, setting up an authenticator app, resetting it.

A code that is refused counts as a failed login, so django-axes locks out whoever keeps
guessing codes exactly as it locks out whoever keeps guessing passwords; django-otp also makes
each device wait longer after every refusal.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.http import HttpRequest
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from access.selectors import confirmed_device
from hitlproject.errors import Conflict, NotAllowed

# The device a session is setting up: its key is shown to that session only.
ENROLLMENT_SESSION_KEY = "access_enrollment_device"


def second_factor_check(
    *, request: HttpRequest, user: AbstractBaseUser, device: TOTPDevice, token: str
) -> TOTPDevice:
    """The device if ``token`` is its current code; otherwise the refusal is recorded as a
    failed login and ``NotAllowed`` raised. A code is accepted once."""
    accepted = allowed = False
    with transaction.atomic():
        locked = TOTPDevice.objects.select_for_update().filter(pk=device.pk, user=user).first()
        if locked is not None:
            allowed, _ = locked.verify_is_allowed()
            accepted = allowed and locked.verify_token("".join(token.split()))
    if not accepted:
        user_login_failed.send(
            sender=__name__, credentials={"username": user.get_username()}, request=request
        )
        if locked is not None and not allowed:
            raise NotAllowed("Too many wrong codes in a row: wait a few seconds and try again.")
        raise NotAllowed("That is not the code your authenticator app shows now.")
    return locked


def second_factor_session_verify(
    *, request: HttpRequest, user: AbstractBaseUser, token: str
) -> TOTPDevice:
    """Mark this session verified by the code of the user's authenticator app."""
    device = confirmed_device(user)
    if device is None:
        raise Conflict("No authenticator app is set up for you yet.")
    device = second_factor_check(request=request, user=user, device=device, token=token)
    _session_verified(request, device)
    return device


def enrollment_device(*, request: HttpRequest, user: AbstractBaseUser) -> TOTPDevice:
    """The key this session is setting up: made on its first visit and kept across reloads
    (an app that scanned it stays right), while any other unconfirmed key of the user's,
    shown to another session, is dropped."""
    device = None
    if ENROLLMENT_SESSION_KEY in request.session:
        device = TOTPDevice.objects.filter(
            pk=request.session[ENROLLMENT_SESSION_KEY], user=user, confirmed=False
        ).first()
    if device is None:
        with transaction.atomic():
            get_user_model().objects.select_for_update().get(pk=user.pk)
            TOTPDevice.objects.filter(user=user, confirmed=False).delete()
            device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
        request.session[ENROLLMENT_SESSION_KEY] = device.pk
    return device


def second_factor_enroll(*, request: HttpRequest, user: AbstractBaseUser, token: str) -> TOTPDevice:
    """Confirm the key this session set up with a code from the app that scanned it; the
    session is then verified."""
    device = TOTPDevice.objects.filter(
        pk=request.session.get(ENROLLMENT_SESSION_KEY), user=user, confirmed=False
    ).first()
    if device is None:
        raise Conflict("This set-up was replaced by a newer one: scan the code shown now.")
    device = second_factor_check(request=request, user=user, device=device, token=token)
    with transaction.atomic():
        # One person, one authenticator app: two sessions setting one up take turns here.
        get_user_model().objects.select_for_update().get(pk=user.pk)
        if confirmed_device(user) is not None:
            raise Conflict("An authenticator app is already set up for you: enter its code.")
        if not TOTPDevice.objects.filter(pk=device.pk, confirmed=False).update(confirmed=True):
            raise Conflict("This set-up was replaced by a newer one: scan the code shown now.")
    device.confirmed = True
    del request.session[ENROLLMENT_SESSION_KEY]
    _session_verified(request, device)
    return device


def second_factor_reset(*, user: AbstractBaseUser) -> int:
    """Forget the user's authenticator app (a lost phone); they set up a new one at their next
    login, and sessions it verified are no longer verified. Returns how many were removed."""
    removed, _ = TOTPDevice.objects.filter(user=user).delete()
    return removed


def _session_verified(request: HttpRequest, device: TOTPDevice) -> None:
    request.session.cycle_key()
    otp_login(request, device)
