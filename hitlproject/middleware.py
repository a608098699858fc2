"""Middleware the console needs and the agent API does not.

The API authenticates every request by its API key (approvals.authentication): it reads no
session or cookie, logs no one in and keeps no messages, so sessions, CSRF, the logged-in
user, second factors, django-axes' lockout page and simple-history's request (history there
is stamped with the acting agent, audit.actors) are work for nothing on its requests. Each is
wrapped here to run for every other request, exactly as it would unwrapped, and to pass the
API's straight on. What the API relies on stays in ``MIDDLEWARE`` unwrapped: the security
headers (SecurityMiddleware, XFrameOptionsMiddleware) and CommonMiddleware (disallowed user
agents, a missing trailing slash).
"""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from axes.middleware import AxesMiddleware
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.decorators import sync_and_async_middleware
from django_otp.middleware import OTPMiddleware
from simple_history.middleware import HistoryRequestMiddleware

API_PREFIX = "/api/"


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


class ConsoleOnly:
    """Mixed into a middleware class in front of it: the middleware runs for every request but
    the API's, which go straight on. A subclass, so that checks looking for the middleware
    (the admin's for sessions, authentication and messages) find it."""

    get_response: Callable

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_request(request):
            return self.get_response(request)  # under ASGI, awaited by the caller
        return super().__call__(request)


class Sessions(ConsoleOnly, SessionMiddleware):
    pass


class Csrf(ConsoleOnly, CsrfViewMiddleware):
    def process_view(self, request: HttpRequest, callback, callback_args, callback_kwargs):
        if is_api_request(request):
            return None
        return super().process_view(request, callback, callback_args, callback_kwargs)


class Authentication(ConsoleOnly, AuthenticationMiddleware):
    pass


class SecondFactors(ConsoleOnly, OTPMiddleware):
    pass


class Messages(ConsoleOnly, MessageMiddleware):
    pass


class LoginLockout(ConsoleOnly, AxesMiddleware):
    pass


@sync_and_async_middleware
def HistoryRequest(get_response: Callable) -> Callable:
    """simple-history's request middleware (a function), for the console's requests."""
    console = HistoryRequestMiddleware(get_response)
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            return await (get_response if is_api_request(request) else console)(request)

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            return (get_response if is_api_request(request) else console)(request)

    return middleware
