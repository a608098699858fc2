"""Button presses on the platform's Slack messages: each request seen once, the press read from
Slack's payload, the Slack user mapped to the console user with the same email, and the
decision (or claim) made through the same services and rules as the console's, as that user.
What the person is told back: why it was refused, or nothing (the message is updated)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from approvals.services.acts import (
    Act,
    AgentMayNoLongerAct,
    LacksPermission,
    OwnsAgent,
    act_refusal,
)
from approvals.services.decisions import (
    GuardrailRefuses,
    proposal_approve,
    proposal_reject,
)
from approvals.services.proposals import SEEN_SHAPE, EditedSinceSeen
from hitlproject.errors import DomainError, InvalidInput
from hitlproject.validation import one_line
from notifications.channels import ChannelError
from notifications.messages import proposal_url
from notifications.models import SlackRequestSeen
from notifications.selectors import slack_lacks_second_factor, users_by_email
from notifications.services import (
    may_not_read,
    outcome_text,
    progress_text,
    proposal_claim,
    proposal_release,
    slack_messages_redrawn_for,
    slack_messages_redrawn_for_proposals,
)
from notifications.slack import slack_user_email

# Slack's signature check refuses a request older than 5 minutes; one seen is kept a while
# longer, so that its replay is refused for as long as its signature would pass.
SEEN_FOR = timedelta(minutes=10)
ACTIONS = ("approve", "reject", "claim", "release")
# A decision's note, saying for its reviewers, auditors and agent that it was made on Slack.
APPROVED_ON_SLACK = "Approved on Slack."
REJECTED_ON_SLACK = "Rejected on Slack."
# Refusals a message offering the button pressed had not foreseen (one who has decided, or a
# proposal that moved, has had its messages updated already).
REDRAWN_ON_REFUSAL = (LacksPermission, OwnsAgent, AgentMayNoLongerAct)
_PROPOSAL_ID = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Press:
    slack_user_id: str
    channel: str
    action: str
    proposal_id: int
    reason_code: str = ""
    # The action as the pressed message showed it (``payload_seen``); "" on a message sent
    # before buttons carried it.
    seen: str = ""


def slack_request_first_seen(*, signature: str) -> bool:
    """Record a verified request's signature; False if it was seen before (a replay). Those
    older than a signature stays valid are purged as it goes."""
    now = timezone.now()
    with transaction.atomic():  # one commit for both
        SlackRequestSeen.objects.filter(received_at__lt=now - SEEN_FOR).delete()
        try:
            with transaction.atomic():
                SlackRequestSeen.objects.create(signature=signature, received_at=now)
        except IntegrityError:
            return False
    return True


def press_parse(payload: str | None) -> Press:
    """The press in a ``block_actions`` payload (the ``payload`` form field Slack posts)."""
    if not payload:
        raise InvalidInput("Expected a form field “payload” with Slack's JSON.")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as error:  # RecursionError: nested too deep to read
        raise InvalidInput(f"The payload is not JSON: {error}") from error
    if not isinstance(data, dict) or data.get("type") != "block_actions":
        raise InvalidInput("Only button presses (block_actions) are handled here.")
    user, actions = data.get("user"), data.get("actions")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not user["id"]:
        raise InvalidInput("The payload names no Slack user.")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise InvalidInput("The payload has no action.")
    action = actions[0]
    action_id = action.get("action_id")
    if action_id not in ACTIONS:
        raise InvalidInput(f"Unknown action {action_id!r}: expected one of {', '.join(ACTIONS)}.")
    # Values: "<id>" to claim or give back; "<id>:<seen>" to approve; "<id>:<reason>:<seen>"
    # to reject (without ":<seen>" on a message sent before buttons carried it).
    if action_id == "reject":
        option = action.get("selected_option")
        value = option.get("value") if isinstance(option, dict) else None
    else:
        value = action.get("value")
    proposal_id, *rest = value.split(":") if isinstance(value, str) else [""]
    reason_code = rest.pop(0) if action_id == "reject" and rest else ""
    seen = rest.pop(0) if action_id in ("approve", "reject") and rest else ""
    if not _PROPOSAL_ID.fullmatch(proposal_id):
        raise InvalidInput(f"The action's value {value!r} names no proposal.")
    if rest or (seen and not SEEN_SHAPE.fullmatch(seen)):
        raise InvalidInput(f"The action's value {value!r} is not one of this platform's.")
    channel = data.get("channel") if isinstance(data.get("channel"), dict) else {}
    container = data.get("container") if isinstance(data.get("container"), dict) else {}
    channel_id = channel.get("id") or container.get("channel_id") or ""
    return Press(
        slack_user_id=user["id"],
        channel=channel_id if isinstance(channel_id, str) else "",
        action=action_id,
        proposal_id=int(proposal_id),
        reason_code=reason_code,
        seen=seen,
    )


def slack_press_handle(*, press: Press) -> str:
    """Decide, claim or give back a claim as the console user the Slack user is. Returns
    what to tell them back, or "" when the message's update says it."""
    try:
        email = slack_user_email(press.slack_user_id)
    except ChannelError as error:
        return f"Nothing was done: your console user could not be found ({error})."
    users = users_by_email(email)
    former = users_by_email(email, active=False) if not users else []
    if len(former) == 1:
        # Deactivated past the signals that take their messages back at once (an update of
        # their row, a directory's sync): the message pressed still shows the proposal, and
        # its buttons. It is taken back now, as it would have been.
        slack_messages_redrawn_for(
            proposal_id=press.proposal_id, user=former[0], about="a press by one deactivated"
        )
    if len(users) != 1:
        found = "no active console user has" if not users else "several console users have"
        return f"Nothing was done: {found} the address {email}."
    user = users[0]
    barred = may_not_read(user)
    if barred:
        # Told nothing of it: neither whether it waits, nor who decided it, nor how far it has
        # come, as the console shows them nothing of it and their messages are taken back
        # (now: the message pressed was sent before, and showed it until the proposal moved).
        slack_messages_redrawn_for(
            proposal_id=press.proposal_id, user=user, about=f"a press by one who {barred}"
        )
        return f"Nothing was done: {user.get_username()} {barred}."
    lacking = slack_lacks_second_factor(user)
    if lacking and press.action in ("approve", "reject"):
        # One who may not decide it anyway (an auditor, its agent's owner) is told that, as
        # anywhere: not sent to its page to do what they may not do there either.
        refusal = _decision_refusal(user, press)
        if refusal is not None:
            return _refused(refusal, user=user, press=press)
        # As the console asks it at every login: a press here is no second factor. A message
        # sent before the requirement offered the buttons: now it offers only to take it on.
        slack_messages_redrawn_for(
            proposal_id=press.proposal_id, user=user, about=f"a press refused: {lacking}"
        )
        return (
            f"Nothing was done: {lacking}. Approve or reject it on its page: "
            f"{proposal_url(press.proposal_id)}"
        )
    try:
        if press.action == "approve":
            # Said as a rejection's is: the decision's record keeps the channel it came by.
            proposal_approve(
                proposal_id=press.proposal_id,
                reviewer=user,
                note=APPROVED_ON_SLACK,
                seen=press.seen or None,
            )
        elif press.action == "reject":
            proposal_reject(
                proposal_id=press.proposal_id,
                reviewer=user,
                reason_code=press.reason_code,
                note=REJECTED_ON_SLACK,
                seen=press.seen or None,
            )
        elif press.action == "release":
            proposal_release(proposal_id=press.proposal_id, user=user)  # its messages say so
        else:
            proposal_claim(proposal_id=press.proposal_id, user=user)  # its messages say so
    except DomainError as error:
        return _refused(error, user=user, press=press)
    return ""  # the messages follow the proposal: its move, or the approval counted


def _refused(error: DomainError, *, user, press: Press) -> str:
    """What to tell one whose press was refused. Refused for what the message did not know
    when it was drawn (its agent's owner changed, its agent stopped, a permission taken away,
    past the signals that redraw it at once: ``notifications.receivers``), their messages of
    it are drawn again as they may act on it now, so that they stop offering what was refused
    (before, they kept offering it until the proposal moved). Refused by a guardrail (one
    whose change no save told of: the ledger's, say, which the account's total cap counts),
    every message of it offered Approve: each is drawn again so."""
    if isinstance(error, GuardrailRefuses):
        slack_messages_redrawn_for_proposals(
            proposal_ids=[press.proposal_id], about=f"a press refused: {one_line(error.message)}"
        )
    elif isinstance(error, REDRAWN_ON_REFUSAL):
        slack_messages_redrawn_for(
            proposal_id=press.proposal_id,
            user=user,
            about=f"a press refused: {one_line(error.message)}",
        )
    return _refusal_text(error, proposal_id=press.proposal_id)


def _decision_refusal(user, press: Press) -> DomainError | None:
    """Why ``user`` may not make the decision pressed, wherever they made it (None: they may,
    or there is no such proposal, which the decision would say)."""
    proposal = Proposal.objects.select_related("agent", "account").filter(pk=press.proposal_id)
    proposal = proposal.first()
    if proposal is None:
        return None
    act = Act.APPROVE if press.action == "approve" else Act.REJECT
    return act_refusal(user, proposal, act)


def _refusal_text(error: DomainError, *, proposal_id: int) -> str:
    """The service's reason, and, for a proposal already decided, who decided it first; for
    one that still waits, how far it has come (whose approvals it has, how many more)."""
    # A press on a message shown before an edit: its message says nothing was decided.
    text = (
        error.message
        if isinstance(error, EditedSinceSeen)
        else f"Nothing was done: {error.message}"
    )
    proposal = Proposal.objects.filter(pk=proposal_id).first()
    if proposal is not None and proposal.status != ProposalStatus.PENDING_REVIEW:
        text += f" {outcome_text(proposal)}"
    elif proposal is not None and progress_text(proposal):  # it waits for someone else
        text += f" {progress_text(proposal)}"
    return text
