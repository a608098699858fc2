"""The pages of refused and failed requests: in the console's look, saying what happened, with
a way back. The API answers JSON instead, as its own views do.

A refusal's own message is shown when it is written for people (``PermissionDenied`` and
``BadRequest`` raised by the console, ``Http404``'s); Django's messages about a request it
finds suspicious name settings, and are left to the log.
"""

from django.contrib import admin
from django.core.exceptions import BadRequest, DisallowedHost, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template import loader
from django.utils.http import url_has_allowed_host_and_scheme

API_CODES = {400: "bad_request", 403: "permission_denied", 404: "not_found", 500: "server_error"}


def _console_context(request: HttpRequest) -> dict:
    if not hasattr(request, "user"):  # refused before the session was read (a bad Host)
        return {"site_header": admin.site.site_header, "site_title": admin.site.site_title}
    return admin.site.each_context(request)


def _way_back(request: HttpRequest) -> str | None:
    """The page the person came from, if it is one of ours and not this one."""
    referer = request.META.get("HTTP_REFERER", "")
    try:
        host = request.get_host()
    except DisallowedHost:
        return None
    if not url_has_allowed_host_and_scheme(
        referer, allowed_hosts={host}, require_https=request.is_secure()
    ):
        return None
    return None if referer == request.build_absolute_uri() else referer


def _page(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        detail = "Not found." if status == 404 else message
        return JsonResponse({"detail": detail, "code": API_CODES[status]}, status=status)
    context = {
        **_console_context(request),
        "title": title,
        "message": message,
        "back_url": _way_back(request),
    }
    return render(request, f"{status}.html", context, status=status)


def _said(exception: Exception | None, told: type[Exception], default: str) -> str:
    """The exception's message, if it is of the kind written for people. As Django's own
    page does, only a message given as text (the URL resolver's 404 carries the patterns it
    tried)."""
    message = exception.args[0] if isinstance(exception, told) and exception.args else None
    return message if isinstance(message, str) and message else default


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    message = _said(exception, BadRequest, "The request could not be understood.")
    return _page(request, 400, "Bad request", message)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    message = _said(exception, PermissionDenied, "Your role does not allow this.")
    return _page(request, 403, "Not allowed", message)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    message = _said(exception, Http404, "There is no such page.")
    if message.startswith("No ") and " matches the given query" in message:
        message = "There is no such record."  # Django's wording names the model's class
    return _page(request, 404, "Not found", message)


def server_error(request: HttpRequest) -> HttpResponse:
    """Rendered without the request's context, as Django's own: whatever failed (the database,
    a context processor) is not asked again."""
    if request.path.startswith("/api/"):
        body = {"detail": "Server error.", "code": API_CODES[500]}
        return JsonResponse(body, status=500)
    context = {
        "site_header": admin.site.site_header,
        "site_title": admin.site.site_title,
        "title": "Something went wrong",
        "message": "The platform failed to answer. What you asked may not have been done; "
        "the error is logged for the people who run it.",
    }
    return HttpResponse(loader.get_template("500.html").render(context), status=500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A form posted without its valid token (CSRF_FAILURE_VIEW): most often a page left
    open past its session, or one opened before logging in again."""
    message = (
        "This form was no longer valid (its page was opened before your last login, or your "
        "browser did not send its cookie). Go back, reload the page and try again."
    )
    return _page(request, 403, "Form expired", message)
