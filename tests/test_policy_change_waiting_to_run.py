"""A hard ceiling lowered while an approved proposal waits to run (its task queued, a kill
switch engaged over it, its channel's next attempt due) holds its execution too, as it holds
a person's approval of one still waiting (tests/test_policy_change_waiting.py): the attempt
fails, nothing applied or sent, saying why in the words the approval would be refused in,
on its page, in its history and in its agent's feedback; a person's Retry of it is refused
in the same words. The policy owner set "nothing above 20%": 28% never runs."""

import html
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.timezone import now

from approvals.models import Execution, Proposal, ProposalStatus
from approvals.selectors import next_attempts_due
from approvals.services.decisions import proposal_approve, proposal_retry
from executors.runner import proposal_execute
from hitlproject.errors import DomainError
from hitlproject.formats import console_time
from hitlproject.vocabulary import EXECUTION_FAILED
from ledger.models import Campaign
from policies.models import Policy
from tests.conftest import bid_adjustment, reallocation, wait_until
from tests.factories import evaluated
from tests.test_console_shows_what_happened import status_line
from tests.test_feedback_api import failed_feedback
from tests.test_kill_switch_holds_execution import budgets, engage, next_attempt_due, release
from tests.test_policy_change_waiting import reallocations, saved, text_of
from tests.test_policy_tuning import change_url, duplicate, form_data

ABOVE_20 = (
    "Policy “Budget reallocations” has changed since it routed this proposal (version 1; now "
    "version 2): 28.0% of brand-search's daily budget is above the 20.0% hard ceiling of "
    "policy “Budget reallocations”."
)
REFUSED = f"The hard ceiling of the policy that routed it refuses it now: {ABOVE_20}"
UNTOUCHED = (Decimal("1000.00"), Decimal("500.00"))


def person(username: str = "operator"):
    return get_user_model().objects.get(username=username)


def bids() -> Policy:
    return Policy.objects.get(action_type="bid_adjustment", is_draft=False)


def ran(proposal) -> Proposal:
    return Proposal.objects.get(pk=proposal.pk)


def bid() -> Decimal:
    return Campaign.objects.get(external_id="brand-search").bid


def approved_28() -> object:
    """A 28% reallocation a person approved under version 1 of its policy, its execution
    queued (not run yet: the worker is busy, or down)."""
    proposal = evaluated(reallocation("280.00"))
    assert proposal_approve(proposal_id=proposal.pk, reviewer=person()).status == "approved"
    return proposal


@pytest.fixture
def owner(login):
    return login("policy-owner")


def test_an_approved_one_whose_hard_ceiling_was_lowered_before_it_ran_fails_saying_why(
    owner, login, agent_client
):
    proposal = approved_28()
    saved(owner, reallocations(), block_above_magnitude="20")

    failed = proposal_execute(proposal_id=proposal.pk)

    assert failed.status == ProposalStatus.FAILED
    assert budgets() == UNTOUCHED
    assert [(e.status, e.error) for e in failed.executions.all()] == [("failed", REFUSED)]
    record = failed.history.filter(status="failed").earliest("history_id")
    assert record.history_change_reason == f"{EXECUTION_FAILED}{REFUSED}"
    assert (proposal.pk, "failed", REFUSED) in failed_feedback(agent_client)
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert REFUSED in status_line(page)


def test_the_brief_s_case_approved_then_held_by_a_switch_released_after_the_ceiling_fell(
    owner, demo_world
):
    """Approved at 28%; a kill switch engaged before its task ran; the policy owner lowered the
    hard ceiling to 20% and the switch was released. The switch's save sent it back to a
    person at once (it no longer waits for the task to find the switch): released, the
    switch runs none of what it sent back, and the task, run now, changes nothing."""
    proposal = approved_28()
    switch = engage()
    saved(owner, reallocations(), block_above_magnitude="20")
    release(switch)

    held = proposal_execute(proposal_id=proposal.pk)

    assert held.status == ProposalStatus.PENDING_REVIEW
    assert not held.executions.exists()
    assert budgets() == UNTOUCHED


def test_one_the_policy_approved_on_its_own_does_not_run_above_the_ceiling_set_since(owner):
    proposal = evaluated(bid_adjustment("2.12"))  # 6%: the policy engine approves it
    assert proposal.status == ProposalStatus.APPROVED
    saved(owner, bids(), auto_execute_max_magnitude="4", block_above_magnitude="5")

    failed = proposal_execute(proposal_id=proposal.pk)

    assert failed.status == ProposalStatus.FAILED
    assert failed.executions.get().error == (
        "The hard ceiling of the policy that routed it refuses it now: Policy “Bid adjustments” "
        "has changed since it routed this "
        "proposal (version 1; now version 2): A 6.0% change to brand-search's bid is above "
        "the 5.0% hard ceiling of policy “Bid adjustments”."
    )
    assert bid() == Decimal("2.00")


def test_a_ceiling_lowered_but_still_above_it_or_another_field_changed_lets_it_run(owner):
    proposal = approved_28()
    saved(owner, reallocations(), block_above_magnitude="30")
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED
    assert budgets() == (Decimal("720.00"), Decimal("780.00"))


def test_a_policy_switched_off_since_holds_nothing_back(owner):
    """Its form said a hard ceiling lowered below one fails it at its next attempt: switched
    off, the policy fails none (the runner asks only a policy switched on), whatever its
    ceiling; it says so, and when it would."""
    proposal = approved_28()
    policy = reallocations()
    saved(owner, policy, block_above_magnitude="20")
    saved(owner, policy, is_active=False)
    assert (
        "1 proposal routed by it is approved and not yet carried out (queued, or between "
        "attempts on its channel). Switched off, the policy fails none: a hard ceiling lowered "
        "below one fails it at its next attempt rather than run it once the policy is switched "
        "on again, if it has not run by then."
    ) in read(owner.get(change_url(policy)))
    assert "above its hard ceiling" not in read(owner.get(change_url(policy)))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED


def test_between_two_attempts_on_its_channel_the_next_one_fails_unsent(channel, owner):
    endpoint = channel(503, 200)
    proposal = approved_28()
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING  # 503
    saved(owner, reallocations(), block_above_magnitude="20")
    next_attempt_due(proposal)

    failed = proposal_execute(proposal_id=proposal.pk)

    assert failed.status == ProposalStatus.FAILED
    assert [e.error for e in failed.executions.order_by("attempt")] == [
        "the endpoint answered HTTP 503",
        f"{REFUSED} Attempt 1 was sent to the channel before and was answered HTTP 503, which "
        "does not say whether the channel carried it out.",
    ]
    assert len(endpoint.received) == 1
    assert budgets() == UNTOUCHED


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_the_worker_s_next_attempt_after_the_ceiling_fell_is_not_sent(channel):
    """The real worker: an auto-approved bid's first request answered 503; while it was under
    way, the policy owner lowered the policy's hard ceiling below it. The worker's retry used
    to send it again, and it ran at 6% above the 5% the owner had just set."""
    endpoint = channel(503, 200)

    def lowered() -> None:
        policy = bids()
        policy.auto_execute_max_magnitude = Decimal("0.04")
        policy.block_above_magnitude = Decimal("0.05")
        policy.save()

    endpoint.while_first_request = lowered
    proposal = evaluated(bid_adjustment("2.12"))

    wait_until(lambda: ran(proposal).status in ("failed", "executed"))

    assert ran(proposal).status == ProposalStatus.FAILED
    assert len(endpoint.received) == 1 and bid() == Decimal("2.00")
    last = proposal.executions.order_by("attempt").last()
    assert last.error.startswith(
        "The hard ceiling of the policy that routed it refuses it now: Policy “Bid adjustments” "
        "has changed since it routed this "
        "proposal (version 1; now version 2): A 6.0% change to brand-search's bid is above "
        "the 5.0% hard ceiling"
    )


def test_retrying_a_failed_one_above_a_ceiling_lowered_since_is_refused_in_the_same_words(
    owner, login
):
    """Failed for another reason (a cap on generic-search, lifted since); the hard ceiling
    lowered after it failed: Retry is refused, as its approval would be, and nothing runs."""
    proposal = approved_28()
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=Decimal("750"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.FAILED
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    saved(owner, reallocations(), block_above_magnitude="20")

    operator = login("operator")
    answer = operator.post(
        reverse("admin:approvals_proposal_retry", args=[proposal.pk]), follow=True
    )
    said = [str(message) for message in get_messages(answer.wsgi_request)]
    assert said == [
        f"The hard ceiling of the policy that routed it refuses proposal #{proposal.pk} now: "
        f"{ABOVE_20} A retry would fail again: its execution would refuse it."
    ]
    with pytest.raises(DomainError, match="has changed since it routed this proposal"):
        proposal_retry(proposal_id=proposal.pk, reviewer=person())
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.FAILED and proposal.executions.count() == 1
    assert budgets() == UNTOUCHED


def statements_executing(proposal) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED
    return len(queries.captured_queries)


def test_the_check_costs_no_statement_on_the_execute_path(owner):
    """Run before every attempt: the policy and its latest version are read in the statement
    that reads the proposal, so an auto-approved bid executes in as many statements whether
    its policy has no hard ceiling, one unchanged since it routed it, or one lowered since
    but still above it."""
    without = statements_executing(evaluated(bid_adjustment("2.12")))
    saved(owner, bids(), block_above_magnitude="50")
    unchanged = statements_executing(evaluated(bid_adjustment("2.20")))
    routed = evaluated(bid_adjustment("2.25"))
    saved(owner, bids(), block_above_magnitude="40")
    lowered_above_it = statements_executing(routed)
    assert without == unchanged == lowered_above_it


def read(page) -> str:
    """A page's words, as read: a link is no space before the stop that follows it."""
    return re.sub(r" ([.,:;)])", r"\1", text_of(page))


def test_the_form_the_message_after_the_save_and_a_promotion_page_name_the_approved_ones_it_fails(
    channel, owner
):
    """The walk's case: an approved one between attempts on its channel (503), another queued;
    lowering the hard ceiling said nothing about them, and 18 s later one failed. The form says
    how many approved ones wait to run under the policy; the message after the save, which
    of them its new hard ceiling fails at their next attempt; a draft's promotion page, which
    the draft's would."""
    channel(503, 200)
    between = approved_28()
    assert proposal_execute(proposal_id=between.pk).status == ProposalStatus.EXECUTING  # 503
    queued = evaluated(reallocation("150.00"))  # 15%
    assert proposal_approve(proposal_id=queued.pk, reviewer=person()).status == "approved"
    policy = reallocations()

    form = read(owner.get(change_url(policy)))
    assert (
        "2 proposals routed by it are approved and not yet carried out (queued, or between "
        "attempts on their channel). A hard ceiling lowered below one fails it at its next "
        "attempt rather than run it."
    ) in form

    draft = duplicate(owner, policy, block_above_magnitude="20", change_reason="Cap it.")
    page = owner.get(reverse("admin:policies_policy_promote", args=[draft.pk]))
    assert (
        "1 approved proposal routed by “Budget reallocations”, not yet carried out (queued, or "
        "between attempts on its channel), would be above the draft's hard ceiling: "
        f"#{between.pk}. Once it is promoted, it fails at its next attempt rather than run."
    ) in read(page)
    assert reverse("admin:approvals_proposal_change", args=[between.pk]) in page.text

    said = saved(owner, policy, block_above_magnitude="20")
    assert (
        "1 approved proposal routed by it, not yet carried out (queued, or between attempts on "
        "its channel), is above its hard ceiling now, lowered since it was routed: "
        f"#{between.pk}. It fails at its next attempt rather than run."
    ) in " ".join(said)
    assert f"#{queued.pk}" not in " ".join(said)
    next_attempt_due(between)
    assert proposal_execute(proposal_id=between.pk).status == ProposalStatus.FAILED  # as said
    assert proposal_execute(proposal_id=queued.pk).status == ProposalStatus.EXECUTED


def test_one_with_a_request_at_its_channel_now_is_not_counted_as_failing(owner):
    """Its request went before the change: the channel's answer decides it, as the kill switch
    form counts it apart."""
    proposal = approved_28()
    round_ = Execution.objects.create(
        proposal=proposal, attempt=1, executor="webhook", status="running", started_at=now()
    )
    Proposal.objects.filter(pk=proposal.pk).update(status=ProposalStatus.EXECUTING)
    assert "approved and not yet carried out" not in text_of(owner.get(change_url(reallocations())))
    said = " ".join(saved(owner, reallocations(), block_above_magnitude="20"))
    assert "not yet carried out" not in said
    assert round_.pk


def failing_link(said_html: str) -> str:
    """The link a notice gives to the queue's list of the approved ones a hard ceiling fails."""
    return html.unescape(re.search(r'href="([^"]*ceiling_fails=[^"]*)"', said_html).group(1))


def listed_ids(client, url: str) -> set[int]:
    page = client.get(url)
    assert page.status_code == 200
    return {proposal.pk for proposal in page.context["cl"].result_list}


def filter_said(client, url: str) -> tuple[str, list[str]]:
    """The queue filter's heading and its chosen choice, as the list's side panel shows them."""
    page = client.get(url)
    [spec] = [
        s
        for s in page.context["cl"].filter_specs
        if getattr(s, "parameter_name", "") == "ceiling_fails"
    ]
    chosen = [c["display"] for c in spec.choices(page.context["cl"]) if c["selected"]]
    return str(spec.title), chosen


def approved(proposal) -> object:
    if ran(proposal).status == ProposalStatus.PENDING_REVIEW:
        assert proposal_approve(proposal_id=proposal.pk, reviewer=person()).status == "approved"
    return proposal


def at_the_ceiling_stored() -> object:
    """An approved 20.00004% reallocation (2,000.01 of 10,000.03), stored as 20.0000%: only
    its exact figure tells it is above a 20% hard ceiling."""
    Campaign.objects.filter(external_id="display-retarget").update(daily_budget=Decimal("10000.03"))
    proposal = approved(
        evaluated(
            reallocation(
                "2000.01",
                payload={
                    "from_campaign": "display-retarget",
                    "to_campaign": "generic-search",
                    "amount": "2000.01",
                },
            )
        )
    )
    assert ran(proposal).magnitude == Decimal("0.200000")
    return proposal


def test_the_queue_lists_exactly_the_approved_ones_the_new_hard_ceiling_fails(
    channel, owner, login
):
    """The message after the save said "1 approved proposal … #12", and no list of the queue
    kept exactly those (approved or executing, no request at their channel now): "N approved
    proposals" links to one, and its heading and choice say what it lists."""
    channel(503, 200)
    between = approved_28()
    assert proposal_execute(proposal_id=between.pk).status == ProposalStatus.EXECUTING  # 503
    queued_15 = approved(evaluated(reallocation("150.00")))
    exactly_20 = approved(evaluated(reallocation("200.00")))
    just_above = at_the_ceiling_stored()
    waiting_28 = evaluated(reallocation("280.00"))  # waits for a person: not approved
    assert ran(waiting_28).status == ProposalStatus.PENDING_REVIEW

    answer = owner.post(
        change_url(reallocations()),
        form_data(
            owner,
            change_url(reallocations()),
            change_reason="Cap it.",
            block_above_magnitude="20",
        ),
        follow=True,
    )
    [warning] = [str(m) for m in answer.context["messages"] if "approved proposal" in str(m)]
    assert (
        "2 approved proposals routed by it, not yet carried out (queued, or between attempts "
        "on their channel), are above its hard ceiling now, lowered since they were routed: "
        f"#{between.pk} and #{just_above.pk}. Each fails at its next attempt rather than run."
    ) in html.unescape(re.sub(r"<[^>]+>", "", warning))
    link = failing_link(warning)
    assert re.search(r'<a href="[^"]*ceiling_fails=[^"]*">2 approved proposals</a>', warning)

    operator = login("operator")
    assert listed_ids(operator, link) == {between.pk, just_above.pk}
    assert filter_said(operator, link) == (
        "hard ceiling that fails it at its next attempt",
        [
            "Approved, not yet carried out (queued, or between attempts on their channel), "
            "above the hard ceiling of “Budget reallocations” now: each fails at its next "
            "attempt rather than run"
        ],
    )
    form = owner.get(change_url(reallocations()))
    assert failing_link(form.text) == link
    assert (
        "Of them, 2 approved proposals are above its hard ceiling already, lowered since they "
        f"were routed: #{between.pk} and #{just_above.pk}. Each fails at its next attempt "
        "rather than run."
    ) in read(form)

    # As listed: those two fail at their next attempt, the others run.
    next_attempt_due(between)
    assert proposal_execute(proposal_id=between.pk).status == ProposalStatus.FAILED
    assert proposal_execute(proposal_id=just_above.pk).status == ProposalStatus.FAILED
    assert proposal_execute(proposal_id=exactly_20.pk).status == ProposalStatus.EXECUTED
    assert proposal_execute(proposal_id=queued_15.pk).status == ProposalStatus.EXECUTED
    assert listed_ids(operator, link) == set()


def test_a_draft_s_promotion_page_links_to_those_its_hard_ceiling_would_fail(owner, login):
    queued_28 = approved_28()
    queued_15 = approved(evaluated(reallocation("150.00")))
    draft = duplicate(owner, reallocations(), block_above_magnitude="10", change_reason="Cap.")
    page = owner.get(reverse("admin:policies_policy_promote", args=[draft.pk]))
    link = failing_link(page.text)
    assert link.endswith(f"ceiling_fails={draft.pk}")
    assert re.search(r'<a href="[^"]*ceiling_fails=[^"]*">2 approved proposals</a>', page.text)
    operator = login("operator")
    assert listed_ids(operator, link) == {queued_28.pk, queued_15.pk}
    assert filter_said(operator, link)[1] == [
        "Approved, not yet carried out (queued, or between attempts on their channel), above "
        "the hard ceiling of draft “Budget reallocations”: once it is promoted, each fails at "
        "its next attempt rather than run"
    ]
    # The live policy has no hard ceiling: its own list is empty, not every proposal.
    assert listed_ids(operator, link.replace(f"={draft.pk}", f"={reallocations().pk}")) == set()
    unknown = operator.get(link.replace(f"={draft.pk}", "=99999"))
    assert unknown.status_code == 400
    assert "there is no policy #99999." in html.unescape(unknown.content.decode())


def statements_rendering(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries.captured_queries)


def test_the_form_reads_them_in_as_many_statements_however_many_there_are(owner):
    """The form read every approved one not yet carried out and judged each (two statements
    more for each one failing): with 10,002 of them, 9,000+ statements and 21-24 s a render.
    It counts them in the database now and names the first ten."""
    policy = reallocations()
    queued = [approved_28()]
    for _ in range(11):  # as many more, approved alike (copies: the budget holds one)
        copy = Proposal.objects.get(pk=queued[0].pk)
        copy.pk = copy.id = None
        copy.save()
        queued.append(copy)
    saved(owner, policy, block_above_magnitude="20")
    many = statements_rendering(owner, change_url(policy))
    said = read(owner.get(change_url(policy)))
    # Ten of them carried out since: two left.
    Proposal.objects.filter(pk__in=[p.pk for p in queued[2:]]).update(status="executed")
    few = statements_rendering(owner, change_url(policy))
    assert few == many
    assert "Of them, 12 approved proposals are above its hard ceiling already" in said
    assert f"#{queued[9].pk} and 2 more. Each fails at its next attempt rather than run." in said
    assert "Of them, 2 approved proposals are above" in read(owner.get(change_url(policy)))


def queue_row(client, proposal) -> str:
    """The proposal's row in the queue (every status), as its reader reads it."""
    page = client.get(reverse("admin:approvals_proposal_changelist") + "?status=all")
    row = re.search(
        rf"<tr[^>]*>(?:(?!</tr>).)*?/{proposal.pk}/change/(?:(?!</tr>).)*</tr>", page.text, re.S
    )
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", row.group(0)))).strip()


def due_said(proposal) -> str:
    return console_time(next_attempts_due([ran(proposal)])[proposal.pk])


def test_one_waiting_to_run_above_a_ceiling_lowered_since_says_its_next_attempt_fails_it(
    channel, owner, login, agent_client
):
    """Approved at 28%, queued or between attempts on its channel (a 503), above a hard
    ceiling its policy's owner lowered to 20% since: its page and its queue row read
    "attempt 2 is due at …" alone, its agent "it still may", while the policy's form said it
    fails at its next attempt rather than run, and it did. Each says so now, in the runner's
    words, with when that attempt is due."""
    channel(503, 200)
    between = approved_28()
    assert proposal_execute(proposal_id=between.pk).status == ProposalStatus.EXECUTING  # 503
    queued = approved(evaluated(reallocation("250.00")))
    runs = approved(evaluated(reallocation("150.00")))
    saved(owner, reallocations(), block_above_magnitude="20")

    due = due_said(between)
    fails_between = f"{REFUSED} It fails at its next attempt (due {due}) rather than run."
    fails_queued = (
        f"{REFUSED.replace('28.0%', '25.0%')} It fails at its next attempt rather than run."
    )
    operator = login("operator")
    page = operator.get(reverse("admin:approvals_proposal_change", args=[between.pk]))
    assert f"attempt 2 is due at {due} · {fails_between}" in status_line(page)
    page = operator.get(reverse("admin:approvals_proposal_change", args=[queued.pk]))
    assert status_line(page) == f"Approved · {fails_queued}"
    page = operator.get(reverse("admin:approvals_proposal_change", args=[runs.pk]))
    assert "fails at its next attempt" not in status_line(page)
    assert f"attempt 2 is due at {due} · {fails_between}" in queue_row(operator, between)
    assert fails_queued in queue_row(operator, queued)
    assert "fails at its next attempt" not in queue_row(operator, runs)

    api = agent_client("optimizer")
    assert api.get(f"/api/v1/proposals/{between.pk}/").json()["verdict"]["reasons"][0] == (
        fails_between
    )
    listed = {p["id"]: p for p in api.get("/api/v1/proposals/").json()["results"]}
    assert listed[queued.pk]["verdict"]["reasons"][0] == fails_queued
    assert "fails at its next attempt" not in " ".join(listed[runs.pk]["verdict"]["reasons"])

    # As said: each fails at its next attempt; the other runs.
    next_attempt_due(between)
    assert proposal_execute(proposal_id=between.pk).status == ProposalStatus.FAILED
    assert proposal_execute(proposal_id=queued.pk).status == ProposalStatus.FAILED
    assert proposal_execute(proposal_id=runs.pk).status == ProposalStatus.EXECUTED


def test_the_agent_s_list_asks_whether_each_fails_once_for_the_page(owner, agent_client):
    """Whether an approved proposal's next attempt fails it (a hard ceiling lowered since)
    was asked one proposal at a time as the list built each one's ``verdict.reasons``: a page
    of four approved ones read more than a page of one. The newest fails, the others run."""
    for _ in range(3):
        approved(evaluated(reallocation("150.00")))  # 15%: under the ceiling set below
    failing = approved(evaluated(reallocation("250.00")))
    saved(owner, reallocations(), block_above_magnitude="20")
    api = agent_client("optimizer")

    def listed(page_size: int) -> tuple[int, list[dict]]:
        with CaptureQueriesContext(connection) as queries:
            response = api.get(f"/api/v1/proposals/?page_size={page_size}")
        return len(queries), response.json()["results"]

    (one, short), (four, long) = listed(1), listed(4)
    fails = "fails at its next attempt rather than run."
    assert [(p["id"], p["verdict"]["reasons"][0].endswith(fails)) for p in short] == [
        (failing.pk, True)
    ]
    assert [fails in " ".join(p["verdict"]["reasons"]) for p in long] == [True, False, False, False]
    assert four <= one  # a page of one also reads whether a next page follows
