import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip_address(request: HttpRequest) -> str | None:
    """The address a login attempt came from (AXES_CLIENT_IP_CALLABLE).

    The connection's own address, unless TRUSTED_PROXY_COUNT reverse proxies stand in front:
    then the one the outermost of them saw, which each proxy appends to X-Forwarded-For. What
    the client itself wrote into that header, to the left, is never believed.
    """
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    forwarded = [
        address.strip()
        for address in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if address.strip()
    ]
    if len(forwarded) < proxies:
        return remote
    try:
        return str(ipaddress.ip_address(_without_port(forwarded[-proxies])))
    except ValueError:
        return remote


def _without_port(entry: str) -> str:
    """An ``X-Forwarded-For`` entry's address without the port some proxies append to it
    ("203.0.113.7:41000", "[2001:db8::7]:41000", "[2001:db8::7]"). Read as no address, such
    an entry counted every client behind the proxy as the proxy itself, one lockout for all."""
    if entry.startswith("["):
        address, bracket, _ = entry[1:].partition("]")
        return address if bracket else entry
    host, colon, port = entry.partition(":")
    return host if colon and ":" not in port and port.isdigit() else entry
