"""The console's login resists guessing: five failed logins lock that username out from that
address for a while, and a group an administrator names must confirm a code from an
authenticator app (TOTP) after the password. Everything goes through the real login page."""

import re
import time
from base64 import b32encode
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db.models import F
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from access.models import SecondFactorRequirement
from approvals.roles import OPERATORS, POLICY_OWNERS

LOGIN = "/admin/login/"
QUEUE = "/admin/approvals/proposal/"
SECOND_FACTOR = "/admin/second-factor/"
LOCKED = "Too many failed login attempts; try again in 15 minutes."


def log_in(client: Client, username: str, password: str, code: str = "", **headers):
    return client.post(
        LOGIN,
        {"username": username, "password": password, "otp_token": code, "next": QUEUE},
        **headers,
    )


def logged_in(client: Client) -> bool:
    return client.get(QUEUE).status_code == 200


def code_of(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """What the person's authenticator app shows (``steps_ahead`` 30-second steps from now:
    a code is accepted once, so a second login in the same test uses the next one)."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def shown_key(device: TOTPDevice) -> str:
    """The key as a person types it into an authenticator app."""
    return b32encode(device.bin_key).decode()


def require_second_factor(group_name: str) -> None:
    SecondFactorRequirement.objects.create(group=Group.objects.get(name=group_name))


@pytest.fixture
def operator(demo_world) -> dict:
    return demo_world["users"]["operator"]


@pytest.fixture
def no_code_throttle(settings) -> None:
    """django-otp makes a device wait a second after a wrong code; a test that tries the
    right code straight after a wrong one turns that wait off (the lockout still counts)."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0


def lock_out(username: str, **headers) -> None:
    for attempt in range(1, 6):
        response = log_in(Client(), username, "not-the-password", **headers)
        assert response.status_code == (429 if attempt == 5 else 200)


# --- Lockout ----------------------------------------------------------------------------------


def test_five_wrong_passwords_lock_that_username_out_from_that_address(operator):
    client = Client()
    for _ in range(4):
        page = log_in(client, operator["username"], "not-the-password")
        assert page.status_code == 200
        assert "Please enter the correct username and password" in page.text
    locked = log_in(client, operator["username"], "not-the-password")
    assert locked.status_code == 429
    assert LOCKED in locked.text

    right_password = log_in(client, **operator)
    assert right_password.status_code == 429
    assert LOCKED in right_password.text
    assert not logged_in(client)


def test_a_lockout_holds_neither_another_address_nor_another_user(demo_world, operator):
    lock_out(operator["username"])
    elsewhere = Client(REMOTE_ADDR="192.0.2.44")
    assert log_in(elsewhere, **operator).status_code == 302
    assert logged_in(elsewhere)
    auditor = Client()
    assert log_in(auditor, **demo_world["users"]["auditor"]).status_code == 302
    assert logged_in(auditor)


def test_a_lockout_ends_after_the_cool_off(operator):
    lock_out(operator["username"])
    assert log_in(Client(), **operator).status_code == 429
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))
    client = Client()
    assert log_in(client, **operator).status_code == 302
    assert logged_in(client)


def test_a_successful_login_starts_the_count_again(operator):
    for _ in range(4):
        assert log_in(Client(), operator["username"], "not-the-password").status_code == 200
    assert log_in(Client(), **operator).status_code == 302
    for _ in range(4):
        assert log_in(Client(), operator["username"], "not-the-password").status_code == 200
    client = Client()
    assert log_in(client, **operator).status_code == 302
    assert logged_in(client)


def test_new_browsers_spellings_and_forwarded_headers_do_not_reset_the_count(operator):
    """Without a trusted proxy the connection's address counts, whatever X-Forwarded-For says;
    a fresh user agent or a padded username is the same person from the same address."""
    for attempt in range(5):
        log_in(
            Client(),
            f"  {operator['username']} ",
            "not-the-password",
            HTTP_USER_AGENT=f"browser-{attempt}",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{attempt}",
        )
    assert log_in(Client(), **operator, HTTP_X_FORWARDED_FOR="198.51.100.99").status_code == 429


def test_behind_a_trusted_proxy_the_address_it_saw_is_the_one_locked(settings, operator):
    settings.TRUSTED_PROXY_COUNT = 1
    # The proxy appends the address it saw; what the client wrote before it is not believed.
    for attempt in range(5):
        log_in(
            Client(),
            operator["username"],
            "not-the-password",
            HTTP_X_FORWARDED_FOR=f"10.9.9.{attempt}, 203.0.113.7",
        )
    assert log_in(Client(), **operator, HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 429
    other = Client()
    assert log_in(other, **operator, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 302
    assert logged_in(other)


@pytest.mark.parametrize(
    ("guesser", "colleague"),
    [
        ("203.0.113.7:41000", "203.0.113.8:52000"),
        ("[2001:db8:1::7]:41000", "[2001:db8:2::8]:52000"),
        ("[2001:db8:1::7]", "[2001:db8:2::8]"),
    ],
)
def test_behind_a_proxy_that_writes_the_port_each_client_is_still_told_apart(
    settings, operator, guesser, colleague
):
    """Some proxies append the client's address with its port ("203.0.113.7:41000", an IPv6
    one in brackets). Before, such an entry was not read as an address and every login was
    counted against the proxy's own: five wrong passwords from anyone locked the username out
    for everyone behind it."""
    settings.TRUSTED_PROXY_COUNT = 1
    for _ in range(5):
        log_in(Client(), operator["username"], "not-the-password", HTTP_X_FORWARDED_FOR=guesser)
    assert log_in(Client(), **operator, HTTP_X_FORWARDED_FOR=guesser).status_code == 429
    other = Client()
    assert log_in(other, **operator, HTTP_X_FORWARDED_FOR=colleague).status_code == 302
    assert logged_in(other)


# --- Second factor ----------------------------------------------------------------------------


@pytest.mark.parametrize("elsewhere", ["https://evil.example/", "//evil.example/", ""])
def test_a_login_sent_elsewhere_opens_the_console(demo_world, elsewhere):
    # A login link whose next leads off the site (or nowhere) lands on the console's index,
    # not on /accounts/profile/, a page this site does not have (a 404 after logging in).
    auditor = demo_world["users"]["auditor"]
    client = Client()
    response = client.post(LOGIN, {**auditor, "next": elsewhere}, follow=True)
    assert response.redirect_chain[-1] == ("/admin/", 302)
    assert response.status_code == 200


def test_an_operator_outside_such_groups_logs_in_with_a_password_alone(operator):
    require_second_factor(POLICY_OWNERS)
    client = Client()
    assert log_in(client, **operator).status_code == 302
    assert logged_in(client)


def test_a_group_member_without_an_app_sets_one_up_before_opening_the_queue(
    operator, no_code_throttle
):
    require_second_factor(OPERATORS)
    client = Client()
    assert log_in(client, **operator).status_code == 302

    page = client.get(QUEUE, follow=True)
    assert page.redirect_chain[-1][0].startswith(SECOND_FACTOR)
    assert "Set up a second factor" in page.text
    assert "<svg" in page.text  # the QR code, drawn inline
    device = TOTPDevice.objects.get(user__username=operator["username"])
    key = re.search(r'id="second-factor-key">([A-Z2-7 ]+)<', page.text).group(1)
    assert key.replace(" ", "") == shown_key(device)
    assert client.get(QUEUE).status_code == 302
    assert key in client.get(SECOND_FACTOR).text  # the same key until it is confirmed

    wrong = client.post(SECOND_FACTOR, {"otp_token": "000000", "next": QUEUE})
    assert "not the code your authenticator app shows" in wrong.text
    assert client.get(QUEUE).status_code == 302

    confirmed = client.post(SECOND_FACTOR, {"otp_token": code_of(device), "next": QUEUE})
    assert confirmed.status_code == 302
    assert confirmed["Location"] == QUEUE
    assert logged_in(client)
    device.refresh_from_db()
    assert device.confirmed
    # Set up once: the key is not shown again, to anyone.
    assert client.get(SECOND_FACTOR).status_code == 302


def test_with_an_app_set_up_the_login_needs_its_current_code(operator, no_code_throttle):
    require_second_factor(OPERATORS)
    user = get_user_model().objects.get(username=operator["username"])
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)

    without = Client()
    page = log_in(without, **operator)
    assert page.status_code == 200
    assert "enter the 6-digit code from your authenticator app" in page.text
    assert not logged_in(without)

    client = Client()
    code = code_of(device)
    assert log_in(client, **operator, code=code).status_code == 302
    assert logged_in(client)

    replayed = Client()
    page = log_in(replayed, **operator, code=code)
    assert "not the code your authenticator app shows" in page.text
    assert not logged_in(replayed)

    wrong = Client()
    page = log_in(wrong, **operator, code=f"{(int(code_of(device)) + 1) % 10**6:06d}")
    assert "not the code your authenticator app shows" in page.text
    assert not logged_in(wrong)


def test_guessing_codes_locks_out_like_guessing_passwords(operator):
    user = get_user_model().objects.get(username=operator["username"])
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    wrong = "000000" if code_of(device) != "000000" else "111111"
    for attempt in range(1, 6):
        response = log_in(Client(), **operator, code=wrong)
        assert response.status_code == (429 if attempt == 5 else 200)
    client = Client()
    assert log_in(client, **operator, code=code_of(device)).status_code == 429
    assert not logged_in(client)


def test_guessing_codes_while_setting_up_locks_out_and_logs_out(operator):
    require_second_factor(OPERATORS)
    client = Client()
    log_in(client, **operator)
    client.get(SECOND_FACTOR)
    for _ in range(5):
        response = client.post(SECOND_FACTOR, {"otp_token": "000000"})
    assert response.status_code == 429
    assert LOCKED in response.text
    assert client.get(SECOND_FACTOR).status_code == 302  # to the login page: logged out
    assert log_in(Client(), **operator).status_code == 429


def test_a_requirement_added_later_applies_to_sessions_already_open(login):
    client = login("operator")
    device = TOTPDevice.objects.create(
        user=get_user_model().objects.get(username="operator"), name="phone", confirmed=True
    )
    assert logged_in(client)
    require_second_factor(OPERATORS)
    page = client.get(QUEUE, follow=True)
    assert page.redirect_chain[-1][0].startswith(SECOND_FACTOR)
    assert "Enter your second factor" in page.text
    assert shown_key(device)[:8] not in page.text
    assert client.get("/admin/audit/export/").status_code == 302

    # Where it goes next stays on this site.
    verified = client.post(
        SECOND_FACTOR, {"otp_token": code_of(device), "next": "https://evil.example/"}
    )
    assert verified["Location"] == "/admin/"
    assert logged_in(client)


def test_a_person_asked_for_a_second_factor_can_log_out_instead(operator):
    require_second_factor(OPERATORS)
    client = Client()
    log_in(client, **operator)
    assert "Set up a second factor" in client.get(SECOND_FACTOR).text
    client.post(SECOND_FACTOR, {"log_out": "Log out"})
    assert "_auth_user_id" not in client.session
    assert client.get(SECOND_FACTOR)["Location"].startswith(LOGIN)


def test_an_administrator_resets_a_lost_authenticator_app(operator):
    require_second_factor(OPERATORS)
    user = get_user_model().objects.get(username=operator["username"])
    TOTPDevice.objects.create(user=user, name="lost phone", confirmed=True)
    call_command("second_factor_reset", operator["username"])
    client = Client()
    assert log_in(client, **operator).status_code == 302  # no code asked for now
    assert client.get(QUEUE, follow=True).redirect_chain[-1][0].startswith(SECOND_FACTOR)


# --- Who sees what ------------------------------------------------------------------------------


def test_no_console_page_shows_or_lets_anyone_probe_a_totp_key(demo_world):
    owner = get_user_model().objects.get(username="operator")
    device = TOTPDevice.objects.create(user=owner, name="phone", confirmed=True)
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("admin"))
    assert admin.get("/admin/otp_totp/totpdevice/").status_code == 404
    assert admin.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/").status_code == 404
    user_page = admin.get(f"/admin/auth/user/{owner.pk}/change/")
    assert user_page.status_code == 200
    assert device.key not in user_page.text
    assert shown_key(device) not in user_page.text
    probe = admin.get("/admin/auth/user/", {"totpdevice__key__startswith": device.key[:2]})
    assert probe.status_code == 400


def test_lockouts_and_requirements_are_for_administrators_only(login):
    pages = ["/admin/axes/accessattempt/", "/admin/axes/accesslog/"]
    pages.append("/admin/access/secondfactorrequirement/")
    for role in ("auditor", "operator", "policy-owner"):
        client = login(role)
        for page in pages:
            assert client.get(page).status_code == 403, (role, page)

    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("admin"))
    for page in pages:
        assert admin.get(page).status_code == 200, page
    operators = Group.objects.get(name=OPERATORS)
    added = admin.post("/admin/access/secondfactorrequirement/add/", {"group": operators.pk})
    assert added.status_code == 302
    requirement = SecondFactorRequirement.objects.get(group=operators)
    assert requirement.history.get().history_actor == "admin"
