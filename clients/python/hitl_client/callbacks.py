"""The receiving end of the platform's callbacks: when an agent has a callback URL, each
decision on and execution of its proposals is POSTed there as JSON, with ``X-HITL-Event``
(``proposal.approved``, ``.rejected``, ``.blocked``, ``.expired``, ``.executed``,
``.failed``, ``.superseded``, ``.withdrawn`` by a reviewer; ``.sent_back`` when one approved
to run went back to a person, before it ran or after an attempt that may have carried it
out), ``X-HITL-Delivery`` (the
event's id, the body's ``id`` too: delivery is at least once, so drop one seen before, by
the body's ``id``, which the signature covers) and ``X-HITL-Signature: t=<unix time>,v1=<hex>``, the
HMAC-SHA256, keyed by the agent's callback secret, of ``"<t>.<body>"``.

``verify_callback`` is the check a receiver makes before it believes an event. It covers the
body alone: read the event's ``type`` from the body, not from ``X-HITL-Event``, which a
request recorded on the way and sent again within the tolerance may have changed."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-HITL-Signature"
EVENT_HEADER = "X-HITL-Event"
DELIVERY_HEADER = "X-HITL-Delivery"


def verify_callback(
    secret: str, signature: str | bytes | None, body: bytes, *, tolerance: int = 300
) -> bool:
    """Whether ``body`` (the request's raw bytes, as received) was signed with ``secret``
    (the agent's callback signing secret) less than ``tolerance`` seconds ago: ``signature``
    is the ``X-HITL-Signature`` header. An old signature is refused, so a recorded request
    sent again later is not believed; within ``tolerance`` it is, so drop an event whose
    ``id`` (in the signed body, not the ``X-HITL-Delivery`` header a replay may change) was
    seen before. Whatever the sender wrote in the header (nothing at all, bytes outside
    ASCII, a time in other digits or too many of them) is answered False, never an error:
    the request came from anyone."""
    if isinstance(signature, bytes):
        signature = signature.decode("latin-1")  # as servers read a header's bytes
    if not isinstance(signature, str) or not signature.isascii():
        return False
    parts = dict(item.partition("=")[::2] for item in signature.split(","))
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    # isdigit on ASCII: 0-9 alone; a time of more digits than a clock will ever show is not
    # read (int() refuses more than 4,300).
    if not (stamp.isdigit() and len(stamp) <= 20 and given):
        return False
    timestamp = int(stamp)
    if abs(time.time() - timestamp) > tolerance:
        return False
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(mac.hexdigest(), given)
