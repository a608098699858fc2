"""Slack's requests to the platform: button presses on its messages."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
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


def _signed_by_slack(request: HttpRequest) -> bool:
    """Signed with the app's signing secret, less than 5 minutes ago."""
    try:
        return SignatureVerifier(settings.SLACK_SIGNING_SECRET).is_valid(
            body=request.body.decode("utf-8"),
            timestamp=request.headers.get("X-Slack-Request-Timestamp"),
            signature=request.headers.get("X-Slack-Signature"),
        )
    except (ValueError, UnicodeDecodeError):  # a timestamp that is no number, a body no text
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
    if not _signed_by_slack(request):
        return _refused(
            401, "Not signed by Slack with this app's signing secret in the last 5 minutes."
        )
    if not slack_request_first_seen(signature=request.headers["X-Slack-Signature"]):
        return _refused(403, "This request was handled already; a replay decides nothing.")
    try:
        press = press_parse(request.POST.get("payload"))
    except InvalidInput as error:
        return _refused(400, error.message)
    reply = slack_press_handle(press=press)
    if reply:
        try:
            slack_tell(channel=press.channel, slack_user_id=press.slack_user_id, text=reply)
        except ChannelError as error:
            logger.warning("Could not tell %s on Slack: %s (%s)", press.slack_user_id, reply, error)
    return HttpResponse(status=200)
