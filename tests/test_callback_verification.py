"""A callback receiver's check (``hitl_client.verify_callback``) answers False to any header a
sender could write, never raising: a receiver calls it on requests from anyone."""

import time

import pytest
from hitl_client import verify_callback

from hitlproject.signing import sign

SECRET = "whsec_receiver"
BODY = b'{"event": "proposal.executed"}'


def test_the_platforms_signature_is_believed():
    now = int(time.time())
    assert verify_callback(SECRET, sign(SECRET, now, BODY), BODY)
    assert verify_callback(SECRET, sign(SECRET, now, BODY).encode(), BODY)  # as bytes


@pytest.mark.parametrize(
    "header",
    [
        None,  # no X-HITL-Signature at all: headers.get() gives None
        "t={now},v1=é",  # bytes outside ASCII, as a server reads them
        b"t={now},v1=\xe9\xff",
        "t=\u0661\u0662\u0663,v1=00",  # Arabic-Indic digits, which int() reads
        "t=,v1=00",
        "t={now}",
        "",
        "t={now},v1=,",
    ],
)
def test_a_forged_or_missing_signature_is_false_not_an_error(header):
    """Before, a missing header raised AttributeError and a non-ASCII one TypeError: the
    receiver's handler failed (a 500) instead of refusing the request."""
    now = int(time.time())
    if isinstance(header, str):
        header = header.format(now=now)
    elif isinstance(header, bytes):
        header = header.replace(b"{now}", str(now).encode())
    assert verify_callback(SECRET, header, BODY) is False
