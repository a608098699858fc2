"""Requests the platform sends out (agents' callbacks, the webhook executor): signed, bounded
in time, never following a redirect, reading only the status. A 2xx carried it; a timeout,
a connection error, a 5xx, 408 or 429 may be tried again; any other answer refuses it."""

from dataclasses import dataclass

import requests

from hitlproject.signing import SIGNATURE_HEADER, signed_now

TIMEOUT = (3.05, 15)  # connect, read (seconds)
RETRIED_STATUSES = {408, 429}  # and every 5xx


@dataclass(frozen=True)
class Sent:
    delivered: bool
    retry: bool  # worth trying again, if not delivered
    result: str  # what happened, in words


def send_signed(url: str, body: bytes, *, secret: str, headers: dict[str, str]) -> Sent:
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signed_now(secret, body),
        **headers,
    }
    try:
        # Only the status is read: a reply that trickles in holds nothing up.
        with requests.post(
            url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False, stream=True
        ) as response:
            code = response.status_code
    except requests.Timeout:
        return Sent(False, True, "timed out")
    except requests.RequestException as error:
        return Sent(False, True, f"{type(error).__name__}: {error}"[:500])
    if 200 <= code < 300:
        return Sent(True, False, f"HTTP {code}")
    return Sent(False, code >= 500 or code in RETRIED_STATUSES, f"HTTP {code}")
