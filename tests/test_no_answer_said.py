"""A request that got no answer is said as it happened, in one wording wherever it went (an
execution endpoint, an agent's callback URL, Slack, the mail server): a timeout with its
limit ("timed out: no answer within 10 s"), and a connection lost once the request was sent
as what it is, "it may have arrived", not as "could not be reached", which says it never
did. Whether it is tried again is unchanged: a webhook's every attempt carries the round's
one key, so the endpoint carries the action out once."""

import socket
import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection

from approvals.models import Proposal
from approvals.services.decisions import proposal_reject
from feedback.models import CallbackEvent
from hitlproject.mail import mail_failure_in_words
from hitlproject.outbound import send_signed
from ledger.models import Campaign
from tests.conftest import HANG_UP, RESET, Receiver, bid_adjustment, wait_until
from tests.factories import evaluated
from tests.test_callbacks import settled as callbacks_settled
from tests.test_callbacks import waiting_proposal
from tests.test_outbound import SelfSignedEndpoint
from tests.test_webhook_executor import settled

LOST = "the connection was lost after the request was sent: it may have arrived"
HUNG_UP = f"{LOST} (server disconnected without sending a response)"
RESET_SAID = f"{LOST} (connection reset by peer)"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_an_execution_endpoint_hanging_up_after_the_request_may_have_it_and_does_it_once(
    channel,
):
    endpoint = channel(HANG_UP, 200)
    proposal = evaluated(bid_adjustment("2.12"))

    wait_until(settled(proposal))

    first, second = Proposal.objects.get(pk=proposal.pk).executions.order_by("attempt")
    # Not "the endpoint could not be reached: RemoteProtocolError: Server disconnected …".
    assert first.error == f"the endpoint did not answer: {HUNG_UP}"
    assert first.unanswered
    assert second.status == "succeeded"
    # Tried again as before, with the same key: the endpoint, seeing it twice, acts once.
    keys = [request["headers"]["Idempotency-Key"] for request in endpoint.received]
    assert len(keys) == 2 and len(set(keys)) == 1
    assert (
        Campaign.history.filter(external_id="brand-search", history_actor="executor").count() == 1
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_an_execution_endpoint_resetting_every_connection_fails_saying_it_may_have_acted(
    channel,
):
    endpoint = channel(RESET)
    proposal = evaluated(bid_adjustment("2.12"))

    wait_until(settled(proposal))

    proposal = Proposal.objects.get(pk=proposal.pk)
    assert proposal.status == "failed"
    attempts = list(proposal.executions.order_by("attempt"))
    assert all(a.unanswered for a in attempts)
    reason = attempts[-1].error
    assert reason.startswith(f"the endpoint did not answer: {RESET_SAID}. Attempts ")
    assert "got no answer that says whether the channel carried it out" in reason
    assert "could not be reached" not in reason
    assert len({r["headers"]["Idempotency-Key"] for r in endpoint.received}) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_callback_endpoint_hanging_up_is_tried_again_and_its_log_says_it_may_have_arrived(
    callback_endpoint,
):
    endpoint = callback_endpoint(HANG_UP, 200)
    proposal = waiting_proposal()
    operator = get_user_model().objects.get(username="operator")

    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="too_aggressive")

    wait_until(lambda: callbacks_settled(1))
    event = CallbackEvent.objects.get()
    assert [attempt["result"] for attempt in event.log] == [HUNG_UP, "HTTP 200"]
    assert len({r["headers"]["X-HITL-Delivery"] for r in endpoint.received}) == 1


def test_a_connection_refused_reached_nobody_and_a_lost_one_may_have_arrived():
    with socket.socket() as unused:  # nothing listens on it: refused before anything is sent
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    refused = send_signed(f"http://127.0.0.1:{port}/x", b"{}", secret="s", headers={})
    assert (refused.result, refused.retry) == ("could not connect: connection refused", True)
    assert not refused.unanswered and not refused.went

    for status, said in ((HANG_UP, HUNG_UP), (RESET, RESET_SAID)):
        endpoint = Receiver(status)
        try:
            lost = send_signed(endpoint.url, b"{}", secret="s", headers={})
        finally:
            endpoint.close()
        assert len(endpoint.received) == 1  # it arrived
        assert (lost.result, lost.retry, lost.unanswered, lost.went) == (said, True, True, True)


def silent_mail_server() -> tuple[socket.socket, threading.Event]:
    """An SMTP server that accepts a connection and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        done.wait(10)
        connection.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener, done


def test_a_mail_server_that_does_not_answer_is_said_to_time_out_with_its_limit():
    """It said "the mail server did not answer in time" or "… did not finish within 1 s",
    where an endpoint's said "timed out: no answer within 1 s"."""
    listener, done = silent_mail_server()
    connection = get_connection(
        "hitlproject.mail.EmailBackend",
        host="127.0.0.1",
        port=listener.getsockname()[1],
        timeout=1,
    )
    try:
        with pytest.raises(OSError) as raised:
            EmailMessage(
                "s", "b", "from@example.com", ["to@example.com"], connection=connection
            ).send()
    finally:
        done.set()
        listener.close()
    assert mail_failure_in_words(raised.value, timeout=1) == (
        "the mail server timed out: no answer within 1 s"
    )


def test_a_mail_server_whose_certificate_is_refused_is_said_as_an_endpoint_s_is(tmp_path):
    """It said OpenSSL's "no secure connection with the mail server: CERTIFICATE_VERIFY_FAILED";
    it says what an endpoint's says: the certificate refused, and why."""
    server = SelfSignedEndpoint(tmp_path)
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    connection = get_connection(
        "hitlproject.mail.EmailBackend", host="127.0.0.1", port=port, use_ssl=True, timeout=5
    )
    try:
        with pytest.raises(OSError) as raised:
            EmailMessage(
                "s", "b", "from@example.com", ["to@example.com"], connection=connection
            ).send()
    finally:
        server.close()
    assert mail_failure_in_words(raised.value, timeout=5) == (
        "no secure connection with the mail server: its TLS certificate was refused "
        "(self-signed certificate)"
    )
