"""The receiving end of the platform's callbacks: when an agent has a callback URL, each
decision on and execution of its proposals is POSTed there as JSON, with ``X-HITL-Event``
(``proposal.approved``, ``.rejected``, ``.blocked``, ``.expired``, ``.executed``,
``.failed``, ``.superseded``), ``X-HITL-Delivery`` (the event's id, the body's ``id``
too: delivery is at least once, so drop one seen before, by the body's ``id``, which the
signature covers) and ``X-HITL-Signature: t=<unix time>,v1=<hex>``, the
HMAC-SHA256, keyed by the agent's callback secret, of ``"<t>.<body>"``.

``verify_callback`` is the check a receiver makes before it believes an event: the
platform's own (``hitlproject.signing.verify``), which an agent installing this client
alone could not import."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-HITL-Signature"
EVENT_HEADER = "X-HITL-Event"
DELIVERY_HEADER = "X-HITL-Delivery"


def verify_callback(
    secret: str, signature: str | None, body: bytes, *, tolerance: int = 300
) -> bool:
    """Whether ``body`` (the request's raw bytes, as received) was signed with ``secret``
    (the agent's callback signing secret) less than ``tolerance`` seconds ago: ``signature``
    is the ``X-HITL-Signature`` header (None where the request had none). An old signature
    is refused, so a recorded request sent again later is not believed; within
    ``tolerance`` it is, so drop an event whose ``id`` (in the signed body, not the
    ``X-HITL-Delivery`` header a replay may change) was seen before. Whatever the header
    holds, the answer is True or False, never an exception."""
    if not signature or not signature.isascii():  # the platform signs in ASCII alone
        return False
    parts = dict(item.partition("=")[::2] for item in signature.split(","))
    try:
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(mac.hexdigest(), given)
