"""``hitl_client.verify_callback`` as a receiver calls it on whatever reaches its URL: it
answers whether to believe the request, True or False, and raises for nothing a sender can
put in the header (a receiver that raised answered 500 to anyone, and logged a traceback for
each request an attacker sent)."""

import time

import pytest
from hitl_client import verify_callback

from hitlproject.signing import sign

SECRET = "whsec_test"
BODY = b'{"id":"5d0c","type":"proposal.approved"}'


def test_a_current_signature_holds_and_an_old_or_early_one_does_not():
    now = int(time.time())
    assert verify_callback(SECRET, sign(SECRET, now, BODY), BODY)
    assert verify_callback(SECRET, sign(SECRET, now, BODY).encode(), BODY)  # as bytes
    assert not verify_callback(SECRET, sign(SECRET, now - 301, BODY), BODY)  # replayed later
    assert not verify_callback(SECRET, sign(SECRET, now + 301, BODY), BODY)


@pytest.mark.parametrize(
    "header",
    [
        # As a framework that reads headers as Latin-1 hands it over (Werkzeug, Django).
        "t=NOW,v1=\u00e9" + "0" * 63,
        "t=NOW,v1=\u2603",
        b"t=NOW,v1=\xe9\xff",  # bytes, as a server may pass them
        "t=\u0661\u0662\u0663,v1=00",  # Arabic-Indic digits, which int() reads
        "t=,v1=00",
        "t=NOW,v1=,",
        None,  # no X-HITL-Signature at all: headers.get(...) gave None
        "",
        "t",
        "t=NOW",
        "v1=00",
        "t=soon,v1=00",
        f"t={'9' * 5000},v1=00",  # more digits than int() reads
    ],
)
def test_a_header_no_signature_of_the_platforms_is_refused_not_raised(header):
    # The time as the test runs, not as it is collected: a test's name must be the same in
    # each of the suite's processes, which collect it seconds apart.
    if header is not None:
        now = str(int(time.time()))
        header = (
            header.replace(b"NOW", now.encode())
            if isinstance(header, bytes)
            else header.replace("NOW", now)
        )
    assert verify_callback(SECRET, header, BODY) is False
