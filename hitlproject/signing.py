"""HMAC signatures on what the platform sends out (agents' callbacks, the webhook executor).

``X-HITL-Signature: t=<unix time>,v1=<hex>``, where ``v1`` is the HMAC-SHA256, keyed by the
receiver's secret, of ``"<t>.<body>"``. The receiver's side is the client's
``hitl_client.verify_callback`` (``clients/python``), which an agent installs.
"""

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "X-HITL-Signature"


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def signed_now(secret: str, body: bytes) -> str:
    return sign(secret, int(time.time()), body)
