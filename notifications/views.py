"""Slack's requests to the platform: button presses on its messages."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from slack_sdk.signature import SignatureVerifier

from hitlproject.errors import InvalidInput
from notifications.channels import ChannelError
from notifications.interactivity import press_parse, slack_press_handle, slack_request_first_seen
from notifications.slack import slack_tell

logger = logging.getLogger(__name__)


def _refused(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


# Slack's requests are a few kilobytes (a press carries the message pressed, at most 50
# blocks); anything larger is refused before it is read.
MAX_BODY_BYTES = 1024 * 1024


def _too_large(request: HttpRequest) -> bool:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY_BYTES
    except ValueError:
        return True


def _signed_by_slack(request: HttpRequest, body: bytes) -> bool:
    """Signed with the app's signing secret, less than 5 minutes ago."""
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    # Slack's are seconds since 1970 in plain digits. Anything else is refused before the
    # verifier reads it as a number (one of 400 digits overflowed its arithmetic: a 500).
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    try:
        return SignatureVerifier(settings.SLACK_SIGNING_SECRET).is_valid(
            body=body.decode("utf-8"),
            timestamp=timestamp,
            signature=request.headers.get("X-Slack-Signature"),
        )
    except UnicodeDecodeError:  # a body that is no text
        return False


@csrf_exempt
@require_POST
def slack_interactivity(request: HttpRequest) -> HttpResponse:
    """A button press on a Slack message (Slack's interactivity request URL). Verified, seen
    once, decided at once through the console's rules; answered within Slack's 3 seconds.
    Refused (and nothing decided): unsigned, forged or stale (401), a replay (403)."""
    if not (settings.SLACK_SIGNING_SECRET and settings.SLACK_BOT_TOKEN):
        return _refused(
            503, "Slack is not configured here: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET."
        )
    too_large = _refused(413, f"The body is too large: Slack's are under {MAX_BODY_BYTES} bytes.")
    if _too_large(request):
        return too_large
    body = request.read(MAX_BODY_BYTES + 1)  # a body sent without its length, too
    if len(body) > MAX_BODY_BYTES:
        return too_large
    if not _signed_by_slack(request, body):
        return _refused(
            401, "Not signed by Slack with this app's signing secret in the last 5 minutes."
        )
    if not slack_request_first_seen(signature=request.headers["X-Slack-Signature"]):
        return _refused(403, "This request was handled already; a replay decides nothing.")
    try:
        # The form read from the very bytes whose signature was checked.
        press = press_parse(QueryDict(body).get("payload"))
    except InvalidInput as error:
        return _refused(400, error.message)
    reply = slack_press_handle(press=press)
    if reply:
        try:
            slack_tell(channel=press.channel, slack_user_id=press.slack_user_id, text=reply)
        except ChannelError as error:
            logger.warning("Could not tell %s on Slack: %s (%s)", press.slack_user_id, reply, error)
    return HttpResponse(status=200)
