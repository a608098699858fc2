"""No input gets a 500, and the policy engine fails loudly: a policy's windows and a report's
period are bounded where they are entered, and a proposal the engine cannot evaluate goes to a
human with the reason instead of waiting unevaluated forever."""

import html
import io
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import OperationalError, transaction
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from approvals.services.lifecycle import proposal_transition
from approvals.services.proposals import proposal_evaluate
from audit.actors import Actor
from policies import engine as policy_engine
from policies.models import Policy
from policies.services import EvaluationContext
from tests.conftest import bid_adjustment
from tests.factories import evaluated, submitted

# Past the last date Python can count to (year 9999), as 3,000,000 days is; this one still
# fits SQLite's 64-bit column of microseconds, so the test runs on the embedded default too.
FOREVER = timedelta(days=3_000_000)
ENGINE_FAILED = "The policy engine could not evaluate this proposal: "


def bid_policy() -> Policy:
    return Policy.objects.get(action_type="bid_adjustment")


def store_unchecked(policy: Policy, **values) -> None:
    """A value as an older release or a script could have stored it, past the form's checks."""
    Policy.objects.filter(pk=policy.pk).update(**values)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("review_window", FOREVER, "At most 365 days."),
        ("review_window", timedelta(0), "At least 1 minute."),
        ("cumulative_window", FOREVER, "At most 90 days."),
        ("cumulative_window", timedelta(seconds=-1), "At least 1 minute."),
        ("decide_within", timedelta(seconds=59), "At least 1 minute."),
        ("decide_within", timedelta(days=366), "At most 365 days."),
    ],
)
def test_a_policy_window_out_of_bounds_is_refused_where_it_is_entered(
    demo_world, field, value, message
):
    policy = bid_policy()
    setattr(policy, field, value)
    with pytest.raises(ValidationError) as refused:
        policy.full_clean()
    assert refused.value.message_dict[field] == [message]


def test_the_bounds_themselves_are_accepted(demo_world):
    policy = bid_policy()
    policy.review_window, policy.cumulative_window = timedelta(days=365), timedelta(days=90)
    policy.full_clean()
    policy.review_window = policy.cumulative_window = timedelta(minutes=1)
    policy.full_clean()


def posted_form(client, url) -> dict:
    form = client.get(url).context["adminform"].form
    return {
        name: "" if value is None else value
        for name, value in ((name, form[name].value()) for name in form.fields)
        if value is not False
    }


def test_a_policy_owner_saving_a_window_of_999999999_days_is_told_why(login):
    policy = bid_policy()
    client = login("policy-owner")
    url = reverse("admin:policies_policy_change", args=[policy.pk])
    data = posted_form(client, url)
    data |= {"review_window": "999999999 00:00:00", "cumulative_window": "999999999 00:00:00"}
    page = client.post(url, data)
    assert page.status_code == 200  # the form again, not a 500 nor a save
    # In the words the help text and the field use, beside the field, not Python's "365 days,
    # 0:00:00".
    form = page.context["adminform"].form
    assert form.errors["review_window"] == ["At most 365 days."]
    assert form.errors["cumulative_window"] == ["At most 90 days."]
    assert "At most 365 days." in page.text and "At most 90 days." in page.text
    assert "days, 0:00:00" not in page.text
    policy.refresh_from_db()
    assert policy.review_window == timedelta(hours=72)


def test_a_policy_s_action_type_reads_as_everywhere_else_in_the_console(login):
    """The list said "bid adjustment"; the policy's own page offered "bid_adjustment" to the
    policy owner and showed it so to the auditor."""
    policy = bid_policy()
    url = reverse("admin:policies_policy_change", args=[policy.pk])
    editing = login("policy-owner").get(url).text
    assert '<option value="bid_adjustment" selected>bid adjustment</option>' in editing
    assert '<option value="budget_reallocation">budget reallocation</option>' in editing
    read = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", login("auditor").get(url).text))
    assert "Action type: bid adjustment " in read
    assert "bid_adjustment" not in read


def test_a_policy_owner_reads_and_types_its_windows_in_words(login):
    policy = bid_policy()
    client = login("policy-owner")
    url = reverse("admin:policies_policy_change", args=[policy.pk])
    page = client.get(url).text
    assert 'name="cumulative_window" value="1 day"' in page
    assert 'name="review_window" value="3 days"' in page

    data = posted_form(client, url) | {
        "cumulative_window": "36 hours",
        "review_window": "2 days",
        "decide_within": "90 minutes",
        "change_reason": "Windows in words.",
    }
    assert client.post(url, data).status_code == 302
    policy.refresh_from_db()
    assert (policy.cumulative_window, policy.review_window, policy.decide_within) == (
        timedelta(hours=36),
        timedelta(days=2),
        timedelta(minutes=90),
    )
    # As Django writes a duration, it is still taken; a word it does not know is refused.
    data |= {"cumulative_window": "1 12:00:00", "review_window": "2 fortnights"}
    refused = client.post(url, data)
    assert refused.status_code == 200
    assert "Enter a duration such as “90 minutes”, “36 hours” or “7 days”." in html.unescape(
        refused.text
    )
    policy.refresh_from_db()
    assert policy.review_window == timedelta(days=2)
    # Another script's digits read as 3 to Python, not to whoever reads the policy after.
    for typed in ("٣ days", "٣ 00:00:00"):
        refused = client.post(url, data | {"cumulative_window": "2 days", "review_window": typed})
        assert refused.status_code == 200
        assert "Enter a duration such as" in html.unescape(refused.text)
        policy.refresh_from_db()
        assert policy.review_window == timedelta(days=2)


@pytest.mark.parametrize("field", ["required_approvals", "approvals_above_threshold"])
def test_a_policy_asking_more_approvals_than_anyone_could_give_is_refused(login, field):
    """A million distinct approvals saved on SQLite (which bounds no small integer): every
    proposal it routed could only wait until it expired."""
    policy = bid_policy()
    client = login("policy-owner")
    url = reverse("admin:policies_policy_change", args=[policy.pk])
    data = posted_form(client, url) | {"change_reason": "More eyes."}
    refused = client.post(url, data | {field: "1000000"})
    assert refused.status_code == 200
    assert "Ensure this value is less than or equal to 10." in refused.text
    policy.refresh_from_db()
    assert getattr(policy, field) < 10
    assert client.post(url, data | {field: "10"}).status_code == 302
    policy.refresh_from_db()
    assert getattr(policy, field) == 10


@pytest.mark.parametrize("field", ["review_window", "cumulative_window"])
def test_a_stored_window_out_of_bounds_sends_proposals_to_a_human_with_the_reason(
    demo_world, field
):
    store_unchecked(bid_policy(), **{field: FOREVER})
    label = field.replace("_", " ")
    proposal = evaluated(bid_adjustment("2.12"))  # a 6% move the policy would auto-approve
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    assert proposal.verdict_reasons == [
        f"{ENGINE_FAILED}policy “Bid adjustments” has a {label} of 3,000,000 days, outside "
        f"what a policy may have (1 minute to {'365' if field == 'review_window' else '90'} "
        "days); a human decides."
    ]
    # It waits the default window, not one that overflows.
    waits = proposal.review_expires_at - timezone.now()
    assert timedelta(hours=71) < waits <= timedelta(hours=72)


def test_a_window_out_of_bounds_on_another_policy_changes_nothing_here(demo_world):
    store_unchecked(Policy.objects.get(action_type="budget_change"), cumulative_window=FOREVER)
    assert evaluated(bid_adjustment("2.12")).status == ProposalStatus.APPROVED


def test_any_failure_of_the_engine_sends_the_proposal_to_a_human_not_nowhere(
    demo_world, monkeypatch
):
    def engine_bug(facts, rules):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(policy_engine, "evaluate", engine_bug)
    proposal = submitted(bid_adjustment("2.12"))
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    [reason] = proposal.verdict_reasons
    assert reason.startswith(ENGINE_FAILED + "ZeroDivisionError") and reason.endswith(
        "; a human decides."
    )
    assert proposal.risk == 100  # unknown risk: first in the queue
    assert proposal.history.latest().history_change_reason == reason


def test_a_proposal_left_submitted_by_an_earlier_release_is_still_routed(demo_world):
    proposal = submitted(bid_adjustment("2.12"))
    # A row as no code of today leaves it: submitted, with a factor that is not a number.
    Proposal.objects.filter(pk=proposal.pk).update(
        status=ProposalStatus.SUBMITTED, effects={"brand-search's bid": "lots"}
    )
    proposal = proposal_evaluate(proposal_id=proposal.pk)
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    [reason] = proposal.verdict_reasons
    assert reason.startswith(ENGINE_FAILED) and reason.endswith("; a human decides.")


def test_a_failed_evaluation_takes_as_many_approvals_as_the_policy_could_ask(demo_world):
    store_unchecked(
        bid_policy(),
        review_window=FOREVER,
        more_approvals_above_magnitude=Decimal("0.50"),
        approvals_above_threshold=3,
    )
    assert evaluated(bid_adjustment("2.12")).required_approvals == 3


def test_a_transient_database_error_records_nothing_rather_than_a_verdict(demo_world, monkeypatch):
    def connection_lost(self, **facts):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(EvaluationContext, "verdict", connection_lost)
    # In the caller's transaction, as the API submits: it is undone whole, and the agent's
    # retry (same key) submits it again.
    with pytest.raises(OperationalError), transaction.atomic():
        submitted(bid_adjustment("2.12"))
    assert not Proposal.objects.exists()


def test_the_dry_run_answers_what_would_happen_when_the_engine_cannot_evaluate(optimizer):
    store_unchecked(bid_policy(), cumulative_window=FOREVER)
    response = optimizer.post("/api/v1/policies/evaluate/", bid_adjustment("2.12"), format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["outcome"] == "review"
    assert body["reasons"][0].startswith(ENGINE_FAILED + "policy “Bid adjustments” has a cumul")
    assert not Proposal.objects.exists()


def test_a_bad_review_window_stored_later_is_brought_within_bounds_when_a_review_starts(
    demo_world,
):
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal.status == ProposalStatus.APPROVED
    store_unchecked(bid_policy(), review_window=FOREVER)
    moved = proposal_transition(
        proposal_id=proposal.pk,
        to_status=ProposalStatus.PENDING_REVIEW,
        actor=Actor.system("test"),
        reason="brand-search's bid moved since the proposal.",
    )
    assert moved.review_expires_at - timezone.now() > timedelta(days=364)
    assert moved.review_expires_at - timezone.now() <= timedelta(days=365)
    assert moved.history.latest().history_change_reason == (
        "brand-search's bid moved since the proposal. (Policy “Bid adjustments” has a review "
        "window of 3,000,000 days, outside what a policy may have; 365 days applies.)"
    )


@pytest.mark.parametrize(
    "since, until, message",
    [
        ("0001-01-01", "0001-02-01", "The period cannot start before 2000-01-01."),
        ("2001-01-01", "2012-01-01", "A period spans at most 1,826 days (five years)"),
        ("2024-01-01", "9999-12-31", "its last day is tomorrow at most"),
    ],
)
def test_the_what_if_simulation_refuses_a_period_it_cannot_run(login, since, until, message):
    page = login("policy-owner").get(
        reverse("admin:policies_policy_simulate"), {"since": since, "until": until}
    )
    assert page.status_code == 200
    assert message in page.text
    assert "report" not in page.context
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("simulate_policies", "--since", since, "--until", until)


def test_every_command_taking_a_period_refuses_year_one(demo_world):
    for command in (["simulate_policies"], ["export_audit"], ["export_feedback", "optimizer"]):
        with pytest.raises(CommandError, match="cannot start before 2000-01-01"):
            call_command(*command, "--since", "0001-01-01", stdout=io.StringIO())


def test_a_simulation_over_a_stored_window_out_of_bounds_says_why(login):
    store_unchecked(bid_policy(), cumulative_window=FOREVER)
    today = timezone.localdate()
    page = login("policy-owner").get(
        reverse("admin:policies_policy_simulate"),
        {"since": str(today - timedelta(days=7)), "until": str(today + timedelta(days=1))},
    )
    assert page.status_code == 200
    assert "The simulation cannot run: policy “Bid adjustments” has a cumulative window" in (
        page.text.replace("&ldquo;", "“").replace("&rdquo;", "”")
    )
    with pytest.raises(CommandError, match="The simulation cannot run"):
        call_command("simulate_policies", "--since", str(date(2024, 1, 1)))
