import math
from base64 import b32encode

import segno
from django.conf import settings
from django.contrib import admin
from django.contrib.admin import AdminSite
from django.contrib.auth import REDIRECT_FIELD_NAME, logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe

from access.forms import SecondFactorCodeForm
from access.selectors import confirmed_device, second_factor_owed
from access.services import enrollment_device, second_factor_enroll, second_factor_session_verify
from hitlproject.errors import DomainError


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials=None
) -> HttpResponse:
    """What django-axes answers a locked-out login with (AXES_LOCKOUT_CALLABLE)."""
    cool_off = settings.AXES_COOLOFF_TIME
    minutes = math.ceil(cool_off.total_seconds() / 60) if cool_off else None
    context = {
        **admin.site.each_context(request),
        "title": "Too many failed login attempts",
        "cool_off_minutes": minutes,
    }
    return render(request, "access/lockout.html", context, status=429)


def second_factor(request: HttpRequest, *, admin_site: AdminSite) -> HttpResponse:
    """After the password: set up an authenticator app (its key and QR code, shown to this
    session only) or enter its code; either way the session is then verified."""
    user = request.user
    next_url = _next_url(request)
    login_url = reverse("admin:login", current_app=admin_site.name)
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return redirect_to_login(next_url, login_url)
    if request.method == "POST" and "log_out" in request.POST:
        logout(request)
        return HttpResponseRedirect(login_url)
    if not second_factor_owed(user):
        return HttpResponseRedirect(next_url)

    enrolling = confirmed_device(user) is None
    form = SecondFactorCodeForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        token = form.cleaned_data["otp_token"]
        try:
            if enrolling:
                second_factor_enroll(request=request, user=user, token=token)
            else:
                second_factor_session_verify(request=request, user=user, token=token)
        except DomainError as error:
            if getattr(request, "axes_locked_out", False):
                logout(request)
                return lockout_response(request)
            form.add_error("otp_token", error.message)
        else:
            return HttpResponseRedirect(next_url)

    context = {
        **admin_site.each_context(request),
        "title": "Set up a second factor" if enrolling else "Enter your second factor",
        "form": form,
        "enrolling": enrolling,
        REDIRECT_FIELD_NAME: next_url,
    }
    if enrolling:
        device = enrollment_device(request=request, user=user)
        secret = b32encode(device.bin_key).decode()
        context["secret"] = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
        # segno draws the QR code as SVG paths from the otpauth:// URL: no markup of ours in it.
        context["qr_code"] = mark_safe(segno.make(device.config_url, error="m").svg_inline(scale=4))
    return render(request, "access/second_factor.html", context)


def _next_url(request: HttpRequest) -> str:
    candidate = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME)
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse("admin:index")
