"""Who owes the console a second factor, and with which device."""

from django.contrib.auth.base_user import AbstractBaseUser
from django_otp.plugins.otp_totp.models import TOTPDevice

from access.models import SecondFactorRequirement


def second_factor_required(user: AbstractBaseUser) -> bool:
    """Whether one of the user's groups must use a second factor."""
    if not user.is_authenticated:
        return False
    return SecondFactorRequirement.objects.filter(group__user=user).exists()


def second_factor_verified(user: AbstractBaseUser) -> bool:
    """Whether this session's user confirmed a code (django-otp's middleware says so)."""
    return getattr(user, "otp_device", None) is not None


def second_factor_owed(user: AbstractBaseUser) -> bool:
    """A console user past the password who must still set up or enter a second factor."""
    return (
        user.is_authenticated
        and user.is_active
        and user.is_staff
        and second_factor_required(user)
        and not second_factor_verified(user)
    )


def confirmed_device(user: AbstractBaseUser) -> TOTPDevice | None:
    """The user's authenticator app, once they confirmed it (one per user)."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
