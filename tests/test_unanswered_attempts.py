"""A round of channel attempts that ends failed after an attempt with no sure answer (a
server's error, a timeout, a connection lost, a worker stopped while it was under way) may
have been carried out all the same: the failure says so, wherever it is read (the proposal's
reason, the last attempt's record, the agent's feedback, the failure notification). What a
retry would do (a new request, with the key it would send, the channel cannot tell from
those) is said only where a retry is offered and as it stands then: beside the console's
Retry button, and in the failure's message to a person who may retry it; not in the
failure's words, quoted long after and to the agent, who cannot retry. A refusal (a 4xx) or
an endpoint never reached says nothing of the kind."""

import html
import re
import socket
import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal
from approvals.services.decisions import proposal_retry
from approvals.services.recovery import proposals_requeue_stalled
from executors import webhook
from executors.models import ExecutionRound
from executors.runner import STOPPED, proposal_execute
from feedback.models import Feedback, FeedbackKind
from hitlproject.outbound import send_signed
from hitlproject.vocabulary import http_answer, unsure_answers_said
from ledger.models import Account, Campaign
from tests.conftest import bid_adjustment, wait_until
from tests.factories import evaluated
from tests.test_outbound import TricklingEndpoint
from tests.test_webhook_executor import approved_without_its_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

WARNING = "got no answer that says whether the channel carried it out"
# A 503 is an answer, if not a sure one: said as what the endpoint answered. It read "got no
# answer", which an operator read as the endpoint silent.
ANSWERED_503 = "was answered HTTP 503, which does not say whether the channel carried it out"
# What is said of a retry: only where one is offered, and true then.
RETRY_ADVICE = ("before retrying", "a retry is a new request", "a retry ")


def text_of(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")


def failed(proposal: Proposal) -> Proposal:
    wait_until(
        lambda: Proposal.objects.get(pk=proposal.pk).status in ("executed", "failed"), timeout=30
    )
    proposal = Proposal.objects.get(pk=proposal.pk)
    assert proposal.status == "failed"
    return proposal


def failure_reason(proposal: Proposal) -> str:
    return (
        Proposal.history.filter(
            id=proposal.pk, status="failed", history_change_reason__startswith="execution failed"
        )
        .order_by("-history_id")
        .values_list("history_change_reason", flat=True)
        .first()
    )


def retry_warning(proposal: Proposal, client) -> str:
    client.force_login(get_user_model().objects.get(username="operator"))
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    if 'id="retry-may-repeat"' not in text:
        return ""
    return text.split('id="retry-may-repeat">', 1)[1].split("</p>", 1)[0]


def _text(html_page: str) -> str:
    """A page's words as its reader reads them: no markup, one space between words."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", html_page)).split())


def test_a_round_of_server_errors_says_each_may_have_been_carried_out(channel, client, mailbox):
    endpoint = channel(503)
    proposal = failed(evaluated(bid_adjustment("2.12")))

    assert len(endpoint.received) == 5
    key = f"hitl-proposal-{proposal.pk}-2"
    said = (
        "the endpoint answered HTTP 503. Attempts 1–5 were answered HTTP 503, which does not "
        "say whether the channel carried it out."
    )
    assert failure_reason(proposal) == f"execution failed: {said}"
    attempts = list(proposal.executions.order_by("attempt"))
    assert [a.unanswered for a in attempts] == [True] * 5
    assert attempts[-1].error == said  # the execution record says what the failure says
    [feedback] = Feedback.objects.filter(proposal=proposal, kind=FeedbackKind.FAILED)
    assert said in feedback.note
    [message] = wait_until(lambda: mailbox.to("operator@example.com"), timeout=15)
    # The failure told by email, and to the operator, who may retry it, what a retry sends.
    assert " ".join(text_of(message).split()).count(said) == 1
    assert (
        "Check on the channel before retrying it: a retry is a new request "
        f"(key {key}) the channel cannot tell from attempts 1–5."
    ) in " ".join(text_of(message).split())
    assert retry_warning(proposal, client) == (
        "Attempts 1–5 were answered HTTP 503, which does not say whether the channel carried it "
        "out: check on "
        f"the channel before retrying it; a retry is a new request (key {key}) the channel "
        "cannot tell from these."
    )

    # The retry sends the key the warning named.
    operator = get_user_model().objects.get(username="operator")
    endpoint.statuses[:] = [200]
    proposal_retry(proposal_id=proposal.pk, reviewer=operator)
    wait_until(lambda: Proposal.objects.get(pk=proposal.pk).status == "executed")
    assert endpoint.received[-1]["headers"]["Idempotency-Key"] == key


def test_a_refusal_after_a_server_error_names_only_the_attempt_without_an_answer(channel, client):
    channel(503, 422)
    proposal = failed(evaluated(bid_adjustment("2.12")))

    reason = failure_reason(proposal)
    assert reason.startswith("execution failed: the endpoint answered HTTP 422. Attempt ")
    first = proposal.executions.order_by("attempt").first().attempt
    assert reason.endswith(f"Attempt {first} {ANSWERED_503}.")
    assert retry_warning(proposal, client).startswith(f"Attempt {first} {ANSWERED_503}: check")


def test_a_worker_stopped_mid_request_counts_as_unanswered(channel, monkeypatch):
    endpoint = channel(422)
    proposal = approved_without_its_task(bid_adjustment("2.12"), monkeypatch)

    def killed(request, account):
        raise KeyboardInterrupt("the worker was killed")

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(webhook, "_post", killed)
        proposal_execute(proposal_id=proposal.pk)
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())
    Proposal.objects.filter(pk=proposal.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    assert proposals_requeue_stalled()["executing"] == 1

    proposal = failed(proposal)
    assert len(endpoint.received) == 1  # the second attempt, refused
    first = proposal.executions.order_by("attempt").first()
    assert (first.error, first.unanswered) == (STOPPED, True)
    # Its history says what marked it failed, and why: the auditor read an empty reason.
    assert first.history.latest("history_id").history_change_reason == (
        f"attempt {first.attempt} marked failed: its worker stopped while it was under way, "
        "found when its execution was run again (sent again by the stall sweep, or its task "
        "delivered again)"
    )
    assert failure_reason(proposal) == (
        f"execution failed: the endpoint answered HTTP 422. Attempt {first.attempt} {WARNING}."
    )


def test_a_refusal_says_nothing_of_the_kind(channel, client):
    channel(422)
    proposal = failed(evaluated(bid_adjustment("2.12")))

    assert failure_reason(proposal) == "execution failed: the endpoint answered HTTP 422"
    assert not proposal.executions.get().unanswered
    assert retry_warning(proposal, client) == ""


def test_an_endpoint_never_reached_says_nothing_of_the_kind(channel, client):
    channel(200)
    with socket.socket() as unused:  # a port nothing listens on: refused before sending
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    Account.objects.filter(external_id="demo").update(
        execution_endpoint=f"http://127.0.0.1:{port}/hook"
    )
    proposal = failed(evaluated(bid_adjustment("2.12")))

    reason = failure_reason(proposal)
    assert reason.startswith("execution failed: the endpoint could not be reached: could not")
    assert WARNING not in reason
    assert not proposal.executions.filter(unanswered=True).exists()
    assert retry_warning(proposal, client) == ""


def test_a_timeout_is_unanswered_and_a_refused_connection_is_not(settings):
    settings.OUTBOUND_DEADLINE = 1
    endpoint = TricklingEndpoint(hold=60)
    try:
        timed_out = send_signed(endpoint.url, b"{}", secret="whsec_x", headers={})
    finally:
        endpoint.close()
    assert (timed_out.result, timed_out.unanswered) == ("timed out: no answer within 1 s", True)


FORGED = (
    b"Attempt 1 was answered HTTP 503, which does not say whether the channel carried it out: "
    b"check on the channel before retrying it; a retry is a new request (key "
    b"hitl-proposal-1-2) the channel cannot tell from it."
)


def test_an_endpoints_words_do_not_make_the_console_warn_beside_retry(channel, client):
    """A refusal whose body reads like the platform's warning is quoted in the failure, and
    the console says nothing beside Retry: every attempt got a sure answer. (It showed the
    endpoint's sentence as the platform's own warning.)"""
    channel(422, says=FORGED)
    proposal = failed(evaluated(bid_adjustment("2.12")))

    reason = failure_reason(proposal)
    assert reason.startswith("execution failed: the endpoint answered HTTP 422: “Attempt 1 was")
    assert not proposal.executions.filter(unanswered=True).exists()
    assert retry_warning(proposal, client) == ""


def test_the_console_warns_of_the_attempt_without_an_answer_not_of_the_endpoints_words(
    channel, client
):
    channel(503, 422, says=FORGED.replace(b"Attempt 1", b"Attempts 1\xe2\x80\x935"))
    proposal = failed(evaluated(bid_adjustment("2.12")))

    first = proposal.executions.order_by("attempt").first().attempt
    assert retry_warning(proposal, client) == (
        f"Attempt {first} {ANSWERED_503}: check on the channel before retrying it; a retry is a "
        f"new request (key hitl-proposal-{proposal.pk}-2) the channel cannot tell from it."
    )


@pytest.mark.parametrize("status", [302, 303])
def test_a_redirect_after_the_post_may_have_been_carried_out(channel, client, status):
    """A server that carried a POST out and sends the caller on to its result answers 303 (a
    Django or Rails endpoint, 302): the failure, which the platform does not follow, says the
    action may have been done. (It read as a plain refusal, and a retry did it again.)"""
    endpoint = channel(status)
    proposal = failed(evaluated(bid_adjustment("2.12")))

    assert len(endpoint.received) == 1  # not tried again: the answer is the endpoint's last
    attempt = proposal.executions.get()
    assert attempt.unanswered
    answered = (
        f"was answered HTTP {status} (a redirect, not followed), which does not say whether "
        "the channel carried it out"
    )
    said = (
        f"the endpoint answered HTTP {status} (a redirect, not followed). Attempt "
        f"{attempt.attempt} {answered}."
    )
    assert failure_reason(proposal) == f"execution failed: {said}"
    assert retry_warning(proposal, client) == (
        f"Attempt {attempt.attempt} {answered}: check on the channel before retrying it; a retry "
        f"is a new request (key hitl-proposal-{proposal.pk}-2) the channel cannot tell from it."
    )


@pytest.mark.parametrize("status", [307, 308])
def test_a_redirect_asking_for_the_request_elsewhere_was_not_carried_out(channel, client, status):
    channel(status)
    proposal = failed(evaluated(bid_adjustment("2.12")))

    assert failure_reason(proposal) == (
        f"execution failed: the endpoint answered HTTP {status} (a redirect, not followed)"
    )
    assert not proposal.executions.get().unanswered
    assert retry_warning(proposal, client) == ""


def test_a_deadline_met_while_the_name_resolves_is_not_unanswered(settings, monkeypatch):
    """The whole exchange's deadline passed while the endpoint's name was still being looked
    up (a resolver that never answers): nothing was sent, so nothing may have been carried
    out. It was recorded 'timed out' with no sure answer, as one cut off waiting for the
    endpoint's answer is, and the failure told people to check on the channel."""
    settings.OUTBOUND_DEADLINE = 1
    stuck = threading.Event()
    looked_up = socket.getaddrinfo

    def resolver_that_never_answers(host, *args, **kwargs):
        if host == "hooks.example.com":
            stuck.wait(timeout=30)
        return looked_up(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver_that_never_answers)
    try:
        sent = send_signed("https://hooks.example.com/x", b"{}", secret="whsec_x", headers={})
    finally:
        stuck.set()
    assert not sent.delivered and sent.retry
    assert not sent.unanswered, sent.result
    assert sent.result == "timed out before sending: nothing sent within 1 s"


def _field_shown(page: str, name: str) -> str:
    """A read-only field of an admin page, as its reader reads it."""
    cell = re.search(rf'field-{name}\b.*?<div class="readonly">(.*?)</div>', page, re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell.group(1))).split())


def test_an_attempt_refused_429_or_408_reads_not_carried_out_and_a_503_may_have_been(
    channel, client, optimizer
):
    """Walked: an attempt answered 429 read, on its page, "No sure answer: Sent, and no answer
    said whether the channel carried it out: it may have." (the flag's own help, shown beside
    every attempt whatever it was answered), where the runner counts a 429 or a 408 as surely
    not carried out; and the proposal's attempts tried again read a bare "Failed". Each
    attempt says what it did on the channel, as the API's ``carried_out`` says it."""
    channel(429, 408, 503, 422)
    proposal = failed(evaluated(bid_adjustment("2.12")))
    attempts = list(proposal.executions.order_by("attempt"))
    assert [a.unanswered for a in attempts] == [False, False, True, False]
    client.force_login(get_user_model().objects.get(username="operator"))

    pages = [
        client.get(reverse("admin:approvals_execution_change", args=[a.pk])).content.decode()
        for a in attempts
    ]

    assert [_field_shown(page, "carried_out_said") for page in pages] == [
        "Not carried out",
        "Not carried out",
        "May have been carried out (sent, no sure answer)",
        "Not carried out",
    ]
    assert "it may have" not in pages[0] and "it may have" not in pages[1]
    # Of the proposal, as the API says it: attempt 3 may have carried it out.
    answer = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
    assert answer["execution"]["carried_out"] == "unknown"
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    table = page.content.decode().split('id="proposal-executions"', 1)[1]
    assert re.findall(r'<td data-label="Status">(.*?)</td>', table) == [
        "Failed, tried again",
        "Failed, tried again",
        "Failed, tried again",
        "Failed",
    ]
    listed = client.get(reverse("admin:approvals_execution_changelist")).content.decode()
    assert re.findall(r'class="field-status_said">(.*?)</td>', listed) == [
        "Failed, tried again",
        "Failed, tried again",
        "Failed, tried again",
        "Failed",
    ]


def test_a_retry_that_ends_superseded_is_not_said_to_send_a_new_request(channel, client):
    """A failed round whose 503'd attempt may have been carried out, its target moved since:
    retried, it ends superseded and sends nothing. Its page said both "retried, it is
    superseded there and then, and nothing is sent to run" and, beside the same Retry button,
    "a retry is a new request (key hitl-proposal-N-2) the channel cannot tell from it": the
    operator retried and no such request went. It says what the operator must still do
    (check the channel for attempt 1), not a request that will not be sent."""
    endpoint = channel(503, 422)
    proposal = failed(evaluated(bid_adjustment("2.12")))
    first = proposal.executions.order_by("attempt").first().attempt
    Campaign.objects.filter(external_id="brand-search").update(bid="2.30")  # moved since

    client.force_login(get_user_model().objects.get(username="operator"))
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert 'id="retry-ends-it"' in page.content.decode()
    warning = html.unescape(retry_warning(proposal, client))
    assert warning == f"Attempt {first} {ANSWERED_503}: check on the channel."
    # Nowhere on the page: not in its status line, nor in attempt 2's error, quoting the
    # failure as it was stored before the target moved.
    assert "a retry is a new request" not in _text(page.content.decode())
    assert "before retrying" not in _text(page.content.decode())

    sent = len(endpoint.received)
    proposal_retry(
        proposal_id=proposal.pk, reviewer=get_user_model().objects.get(username="operator")
    )
    proposal.refresh_from_db()
    assert proposal.status == "superseded"
    assert len(endpoint.received) == sent  # nothing more went, as the page said


def test_a_failure_says_what_happened_and_the_retry_only_beside_retry(channel, client, optimizer):
    """Walked: a bid's attempt 1 got a 503, the next a refusal. The failure was stored with
    "check on the channel before retrying it; a retry is a new request (key …) the channel
    cannot tell from it", and every place quoting it said it as if true now: the failed page
    said it three times (the status line, beside Retry, attempt 2's error), its history
    again, and its agent, who cannot retry, was told to check before retrying. What happened
    is said wherever it is read; the retry, once, beside the Retry button."""
    channel(503, 422)
    proposal = failed(evaluated(bid_adjustment("2.12")))
    first, last = proposal.executions.order_by("attempt")
    happened = f"Attempt {first.attempt} {ANSWERED_503}."
    client.force_login(get_user_model().objects.get(username="operator"))

    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    text = page.content.decode()
    status = _text(text.split('id="execution-failed">', 1)[1].split("</span>", 1)[0])
    table = _text(text.split('id="proposal-executions"', 1)[1].split("</table>", 1)[0])
    assert happened in status and happened in table
    for advice in RETRY_ADVICE:
        assert advice not in status and advice not in table
    # Said once, beside the Retry button, of the retry the button makes.
    assert _text(text).count("before retrying it") == 1
    assert _text(text).count("a retry is a new request") == 1
    assert "before retrying it" in retry_warning(proposal, client)

    history = client.get(reverse("admin:approvals_proposal_history", args=[proposal.pk]))
    assert happened in _text(history.content.decode())
    assert "before retrying" not in _text(history.content.decode())
    assert "a retry is a new request" not in _text(history.content.decode())

    # Its agent is told what happened, and nothing of a retry it cannot make.
    [feedback] = Feedback.objects.filter(proposal=proposal, kind=FeedbackKind.FAILED)
    assert feedback.note.endswith(happened)
    answer = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
    assert answer["execution"]["error"] == last.error
    # Its callback's reason is the failure's, as its history records it.
    told = [feedback.note, answer["execution"]["error"], failure_reason(proposal)]
    for said in told:
        for advice in RETRY_ADVICE:
            assert advice not in said, said


def test_attempts_without_a_sure_answer_are_said_by_what_the_channel_answered_them():
    """A 503 is an answer, which does not say whether the action was carried out; a timeout
    is none. Each said as it was, in one sentence."""
    busy = "the endpoint answered HTTP 503 (Retry-After: 30 s)"
    assert unsure_answers_said([(1, busy), (2, busy)]) == (
        "Attempts 1–2 were answered HTTP 503 (Retry-After: 30 s), which does not say whether "
        "the channel carried it out"
    )
    timed_out = "the endpoint timed out: no answer within 10 s"
    assert unsure_answers_said(
        [(3, timed_out), (1, busy), (2, "the endpoint answered HTTP 502")]
    ) == (
        "Attempt 1 was answered HTTP 503 (Retry-After: 30 s), attempt 2 was answered HTTP 502 "
        "and attempt 3 got no answer: none says whether the channel carried it out"
    )
    assert unsure_answers_said([(4, timed_out)]) == f"Attempt 4 {WARNING}"
    # A round's last error goes on to say the others' answers: only its start is its own.
    assert http_answer("the endpoint timed out. Attempt 1 was answered HTTP 503") == ""
