"""A failed proposal is let run again only as its policy judges it now: a reallocation whose
source budget was cut since it failed is re-assessed as its retry would be, and one its
policy's hard ceiling refuses now is not retried (its page, the refusal and the Retry button
say so first), where it used to be "sent to run again" and fail again at once."""

import html
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from approvals.models import Agent, Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_retry
from executors.runner import proposal_execute
from hitlproject.errors import DomainError
from ledger.models import Campaign
from policies.models import Policy
from tests.conftest import reallocation
from tests.factories import evaluated
from tests.test_policy_change_waiting import reallocations, saved
from tests.test_reallocation_figures_once_moves_ahead_have_run import ahead_said


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def as_read(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def failed_reallocation(operator, amount: str) -> Proposal:
    """A reallocation out of brand-search a person approved, failed by a cap on generic-search
    set before it ran, the cap lifted since."""
    proposal = evaluated(reallocation(amount))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="510.00")
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.FAILED
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    proposal.refresh_from_db()
    return proposal


def executed_reallocation(operator, amount: str) -> Proposal:
    proposal = evaluated(reallocation(amount))
    if proposal.status == ProposalStatus.PENDING_REVIEW:
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED
    return proposal


@pytest.mark.django_db
def test_a_failed_move_its_source_cut_since_above_the_hard_ceiling_is_not_retried(login, operator):
    """18% of brand-search's 1,000.00 under a 20% hard ceiling, failed; brand-search cut to
    850.00 since by another move: 180.00 is 21.2% of it. Retry was offered and said "sent to
    run again", then the attempt failed at once ("It would now be blocked"). Now the page
    says why no retry is offered, a retry posted anyway is refused in those words, and
    nothing runs; with brand-search back above 900.00, it is retried."""
    saved(login("policy-owner"), reallocations(), block_above_magnitude="20")
    failed = failed_reallocation(operator, "180.00")
    executed_reallocation(operator, "150.00")  # brand-search 1,000.00 -> 850.00
    page_url = reverse("admin:approvals_proposal_change", args=[failed.pk])
    retry_url = reverse("admin:approvals_proposal_retry", args=[failed.pk])
    why = (
        "Re-assessed since policy “Budget reallocations” routed this proposal (version 2, "
        "unchanged since), as the budget it draws on moved: 21.2% of brand-search's daily "
        "budget is above the 20.0% hard ceiling of policy “Budget reallocations”."
    )

    page = login("operator").get(page_url).text
    answer = login("operator").post(retry_url, follow=True)

    assert 'id="retry-form"' not in page
    [note] = re.findall(r'<p class="errornote" id="retry-refused-by-guardrail">(.*?)</p>', page)
    assert as_read(note) == (
        f"The hard ceiling of the policy that routed it refuses it now: {why} "
        "A retry would fail again: its execution would refuse it."
    )
    said = [str(message) for message in answer.context["messages"]]
    assert said == [
        f"The hard ceiling of the policy that routed it refuses proposal #{failed.pk} now: "
        f"{why} A retry would fail again: its execution would refuse it."
    ]
    failed.refresh_from_db()
    assert failed.status == ProposalStatus.FAILED
    assert failed.executions.count() == 1
    assert Campaign.objects.get(external_id="brand-search").daily_budget == 850

    Campaign.objects.filter(external_id="brand-search").update(daily_budget="950.00")
    page = login("operator").get(page_url).text
    assert 'id="retry-refused-by-guardrail"' not in page and 'id="retry-form"' in page
    assert proposal_retry(proposal_id=failed.pk, reviewer=operator).status == "approved"


@pytest.mark.django_db
def test_a_failed_move_re_assessed_over_the_cumulative_ceiling_says_so_before_its_retry(
    login, operator
):
    """18% of brand-search's 1,000.00 to generic-search (500.00), under a 40% cumulative
    ceiling, approved, failed; 150.00 moved the same way since. Re-assessed as a retry runs
    it, it takes generic-search +66.0% within the day, over that ceiling: the retry, a
    person's approval, runs it all the same ("…, which its approval still covers"), but the
    page offered Retry saying nothing of it. Now it says so beside Retry."""
    saved(login("policy-owner"), reallocations(), cumulative_max_magnitude="40")
    failed = failed_reallocation(operator, "180.00")
    page_url = reverse("admin:approvals_proposal_change", args=[failed.pk])
    page = login("operator").get(page_url).text
    assert 'id="retry-form"' in page and 'id="retry-over-cumulative"' not in page
    executed_reallocation(operator, "150.00")  # brand-search 850.00, generic-search 650.00

    page = login("operator").get(page_url).text
    assert 'id="retry-form"' in page
    [note] = re.findall(r'<p class="errornote" id="retry-over-cumulative">(.*?)</p>', page)
    assert as_read(note) == (
        "Re-assessed now, as a retry would run it, as the budget it draws on moved: With this "
        "move of +27.7%, generic-search's daily budget would move +66.0% within 1 day, over "
        "the 40.0% cumulative ceiling of policy “Budget reallocations”, counting the executed "
        "moves. Retrying runs it anyway: a person's retry is their approval, which covers it "
        "past that ceiling."
    )
    # As said: the retry runs it, on the figures re-assessed, and the ledger shows it.
    assert proposal_retry(proposal_id=failed.pk, reviewer=operator).status == "approved"
    assert proposal_execute(proposal_id=failed.pk).status == ProposalStatus.EXECUTED
    assert Campaign.objects.get(external_id="generic-search").daily_budget == 830
    failed.refresh_from_db()
    assert any("which its approval still covers" in str(r) for r in failed.verdict_reasons)


def states_table(page: str) -> list[list[str]]:
    """The proposal's table of what it would change, as read: its heading row, then each row."""
    [table] = re.findall(r'<table id="proposal-states">(.*?)</table>', page, flags=re.S)
    return [
        [as_read(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)
    ]


@pytest.mark.django_db
def test_a_failed_move_its_source_cut_since_says_what_a_retry_would_set(login, operator):
    """180.00 from brand-search (1000.00) to generic-search (500.00), approved, failed; 150.00
    moved the same way since. A retry re-assesses it from the ledger now and sets
    brand-search 670.00 and generic-search 830.00, but the page's table of what it would
    change said only what it was assessed to set then (820.00 and 680.00) beside the figures
    now: an operator deciding to retry read figures that are not what a retry does. Now the
    table says what a retry would set, and the retry sets just that."""
    failed = failed_reallocation(operator, "180.00")
    page_url = reverse("admin:approvals_proposal_change", args=[failed.pk])
    as_assessed = [
        ["Campaign", "Field", "When proposed", "Proposed", "Now"],
        ["brand-search", "daily budget", "1000.00", "820.00", "1000.00"],
        ["generic-search", "daily budget", "500.00", "680.00", "500.00"],
    ]
    assert states_table(login("operator").get(page_url).text) == as_assessed
    executed_reallocation(operator, "150.00")  # brand-search 850.00, generic-search 650.00

    page = login("operator").get(page_url).text

    assert 'id="retry-form"' in page
    assert states_table(page) == [
        ["Campaign", "Field", "When proposed", "Proposed", "Now", "As a retry would re-assess it"],
        ["brand-search", "daily budget", "1000.00", "820.00", "850.00", "670.00"],
        ["generic-search", "daily budget", "500.00", "680.00", "650.00", "830.00"],
    ]
    # As said: the retry sets those figures, and the ledger shows them.
    assert proposal_retry(proposal_id=failed.pk, reviewer=operator).status == "approved"
    assert proposal_execute(proposal_id=failed.pk).status == ProposalStatus.EXECUTED
    assert Campaign.objects.get(external_id="brand-search").daily_budget == 670
    assert Campaign.objects.get(external_id="generic-search").daily_budget == 830


def budgets() -> tuple[Decimal, Decimal]:
    return tuple(
        Campaign.objects.get(external_id=name).daily_budget
        for name in ("brand-search", "generic-search")
    )


@pytest.mark.django_db
def test_a_failed_move_behind_one_approved_says_what_its_retry_leaves_after_it(login, operator):
    """180.00 from brand-search to generic-search, failed; 150.00 moved the same way since
    (850.00 / 650.00); then #N, 100.00 the same way, approved, not yet run. The table says
    what a retry would set re-assessed now (670.00 / 830.00), but the lines under it said
    "after this one, as proposed, 570.00": not as proposed (18.0% of 1,000.00), but as its
    retry re-assesses it once #N has run (24.0% of 750.00). Now they say so, and the ledger
    ends at what they said once #N and the retry have run."""
    failed = failed_reallocation(operator, "180.00")
    executed_reallocation(operator, "150.00")
    ahead = evaluated(reallocation("100.00"))
    assert proposal_approve(proposal_id=ahead.pk, reviewer=operator).status == "approved"
    page_url = reverse("admin:approvals_proposal_change", args=[failed.pk])

    page = login("operator").get(page_url).text

    assert 'id="retry-form"' in page
    assert states_table(page)[1:] == [
        ["brand-search", "daily budget", "1000.00", "820.00", "850.00", "670.00"],
        ["generic-search", "daily budget", "500.00", "680.00", "650.00", "830.00"],
    ]
    assert ahead_said(page) == [
        f"Once #{ahead.pk}, approved before its retry, has run: brand-search daily budget "
        "850.00 → 750.00; after this one, as a retry would re-assess it then, 570.00.",
        f"Once #{ahead.pk}, approved before its retry, has run: generic-search daily budget "
        "650.00 → 750.00; after this one, as a retry would re-assess it then, 930.00.",
    ]
    # As said: retried, it runs after #N, re-assessed from what #N left.
    assert proposal_retry(proposal_id=failed.pk, reviewer=operator).status == "approved"
    assert proposal_execute(proposal_id=ahead.pk).status == ProposalStatus.EXECUTED
    assert proposal_execute(proposal_id=failed.pk).status == ProposalStatus.EXECUTED
    assert budgets() == (Decimal("570.00"), Decimal("930.00"))
    failed.refresh_from_db()
    assert "(24.0%)" in failed.verdict_reasons[0]


def optimizers_policy(**ceilings) -> Policy:
    """A policy for the optimizer's reallocations alone, added after the failed one was
    routed by "Budget reallocations": more specific, it decides them now."""
    return Policy.objects.create(
        name="Reallocations by optimizer",
        action_type="budget_reallocation",
        agent=Agent.objects.get(name="optimizer"),
        **ceilings,
    )


@pytest.mark.django_db
def test_a_failed_move_is_judged_for_its_retry_by_the_policy_that_decides_it_now(login, operator):
    """Routed by "Budget reallocations" (no hard ceiling), failed; a policy for the
    optimizer's reallocations with a 20% hard ceiling added since; brand-search cut to
    850.00: 180.00 is 21.2% of it. The page offered Retry, judging the retry by the routing
    policy; the retry was "approved" and its execution, re-assessed under the policy that
    decides it now, failed at once ("It would now be blocked"). Now the page says that
    policy refuses it, the retry is refused in those words, and nothing runs."""
    failed = failed_reallocation(operator, "180.00")
    optimizers_policy(block_above_magnitude=Decimal("0.20"))
    executed_reallocation(operator, "150.00")  # brand-search 1,000.00 -> 850.00
    page_url = reverse("admin:approvals_proposal_change", args=[failed.pk])
    why = (
        "Re-assessed now, as a retry would run it, as the budget it draws on moved, under "
        "policy “Reallocations by optimizer” (version 1), which decides it now in place of "
        "policy “Budget reallocations” (version 1), which routed it: 21.2% of brand-search's "
        "daily budget is above the 20.0% hard ceiling of policy “Reallocations by optimizer”."
    )

    page = login("operator").get(page_url).text

    assert 'id="retry-form"' not in page
    [note] = re.findall(r'<p class="errornote" id="retry-refused-by-guardrail">(.*?)</p>', page)
    assert as_read(note) == (
        f"The hard ceiling of the policy that decides it now refuses it now: {why} "
        "A retry would fail again: its execution would refuse it."
    )
    with pytest.raises(DomainError) as refusal:
        proposal_retry(proposal_id=failed.pk, reviewer=operator)
    assert refusal.value.message == (
        f"The hard ceiling of the policy that decides it now refuses proposal #{failed.pk} "
        f"now: {why} A retry would fail again: its execution would refuse it."
    )
    failed.refresh_from_db()
    assert failed.status == ProposalStatus.FAILED and failed.executions.count() == 1
    assert budgets() == (Decimal("850.00"), Decimal("650.00"))


@pytest.mark.django_db
def test_a_failed_move_within_the_policy_that_decides_it_now_is_retried(login, operator):
    """Routed by "Budget reallocations", whose hard ceiling is 20%, failed; a policy for the
    optimizer's reallocations with a 25% hard ceiling added since; brand-search cut to
    850.00 (21.2%). The page refused the retry by the routing policy's ceiling, where its
    execution judges it by the one that decides it now, which lets it run. Now the page
    offers Retry, and the retry runs it on the figures its table said."""
    saved(login("policy-owner"), reallocations(), block_above_magnitude="20")
    failed = failed_reallocation(operator, "180.00")
    optimizers_policy(block_above_magnitude=Decimal("0.25"))
    executed_reallocation(operator, "150.00")
    page_url = reverse("admin:approvals_proposal_change", args=[failed.pk])

    page = login("operator").get(page_url).text

    assert 'id="retry-refused-by-guardrail"' not in page and 'id="retry-form"' in page
    assert states_table(page)[1:] == [
        ["brand-search", "daily budget", "1000.00", "820.00", "850.00", "670.00"],
        ["generic-search", "daily budget", "500.00", "680.00", "650.00", "830.00"],
    ]
    assert proposal_retry(proposal_id=failed.pk, reviewer=operator).status == "approved"
    assert proposal_execute(proposal_id=failed.pk).status == ProposalStatus.EXECUTED
    assert budgets() == (Decimal("670.00"), Decimal("830.00"))


@pytest.mark.django_db
def test_a_failed_move_an_edit_re_assessed_is_refused_as_unchanged_where_its_policy_is(
    login, operator
):
    """Proposed at 190.00, edited to 180.00 (its edit re-assessed it under "Budget
    reallocations", 20% hard ceiling, unchanged since), failed; a policy for the optimizer's
    reallocations with a 25% hard ceiling added since; brand-search cut to 850.00 (21.2%).
    Its execution refuses it by the routing policy's ceiling, "unchanged since", but the page
    said that policy "has changed since it routed this proposal (version 2; now version 2)"."""
    saved(login("policy-owner"), reallocations(), block_above_magnitude="20")
    proposal = evaluated(reallocation("190.00"))
    edited = {"from_campaign": "brand-search", "to_campaign": "generic-search", "amount": "180.00"}
    proposal_approve(proposal_id=proposal.pk, reviewer=operator, edited_payload=edited)
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="510.00")
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.FAILED
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    optimizers_policy(block_above_magnitude=Decimal("0.25"))
    executed_reallocation(operator, "150.00")  # brand-search 1,000.00 -> 850.00
    why = (
        "Re-assessed since policy “Budget reallocations” routed this proposal (version 2, "
        "unchanged since), as the budget it draws on moved: 21.2% of brand-search's daily "
        "budget is above the 20.0% hard ceiling of policy “Budget reallocations”."
    )

    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))

    assert 'id="retry-form"' not in page.text
    [note] = re.findall(
        r'<p class="errornote" id="retry-refused-by-guardrail">(.*?)</p>', page.text
    )
    assert as_read(note) == (
        f"The hard ceiling of the policy that routed it refuses it now: {why} "
        "A retry would fail again: its execution would refuse it."
    )
    assert "has changed since" not in as_read(page.text)


@pytest.mark.django_db
def test_a_failed_move_no_policy_routed_is_judged_by_the_policy_that_decides_it_now(
    login, operator
):
    """Routed to a person by no policy ("Budget reallocations" switched off), failed; a
    policy for the optimizer's reallocations with a 20% hard ceiling added since; brand-search
    cut to 850.00: 180.00 is 21.2% of it. Only a proposal a policy routed was judged by the
    one that decides it now: the page offered Retry, and its execution, re-assessed under
    that policy, would fail at once. Now the page says that policy refuses it."""
    policy = reallocations()
    policy.is_active = False
    policy.save()
    failed = failed_reallocation(operator, "180.00")
    assert failed.verdict_policy_id is None
    optimizers_policy(block_above_magnitude=Decimal("0.20"))
    executed_reallocation(operator, "150.00")  # brand-search 1,000.00 -> 850.00

    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[failed.pk]))

    assert 'id="retry-form"' not in page.text
    [note] = re.findall(
        r'<p class="errornote" id="retry-refused-by-guardrail">(.*?)</p>', page.text
    )
    assert as_read(note) == (
        "The hard ceiling of the policy that decides it now refuses it now: Re-assessed now, "
        "as a retry would run it, as the budget it draws on moved, under policy “Reallocations "
        "by optimizer” (version 1), which decides it now: 21.2% of brand-search's daily budget "
        "is above the 20.0% hard ceiling of policy “Reallocations by optimizer”. A retry would "
        "fail again: its execution would refuse it."
    )
    with pytest.raises(DomainError):
        proposal_retry(proposal_id=failed.pk, reviewer=operator)
    failed.refresh_from_db()
    assert failed.status == ProposalStatus.FAILED and failed.executions.count() == 1


def approved_ahead(operator, amount: str) -> Proposal:
    """A move out of brand-search a person approved, not yet run: a failed move's retry runs
    after it, and is re-assessed from what it leaves."""
    ahead = evaluated(reallocation(amount))
    assert proposal_approve(proposal_id=ahead.pk, reviewer=operator).status == "approved"
    return ahead


ABOVE_20 = (
    "21.2% of brand-search's daily budget is above the 20.0% hard ceiling of policy “Budget "
    "reallocations”."
)


@pytest.mark.django_db
def test_a_failed_move_above_the_hard_ceiling_once_the_moves_ahead_have_run_is_not_retried(
    login, operator
):
    """18% of brand-search's 1,000.00 under a 20% hard ceiling, failed; #N, 150.00 out of
    brand-search, approved since, not yet run. A retry runs after #N and is re-assessed from
    the 850.00 it leaves: 21.2%. The page judged the retry at 18% and offered Retry; pressed,
    it was "sent to run again", and its execution after #N failed at once ("It would now be
    blocked: 21.2% …"). Now the page says why no retry is offered, naming #N, and a retry
    pressed anyway is refused in those words; with the ceiling raised to 22%, Retry is
    offered, and pressed, it runs after #N on the figures #N leaves."""
    owner = login("policy-owner")
    saved(owner, reallocations(), block_above_magnitude="20")
    failed = failed_reallocation(operator, "180.00")
    ahead = approved_ahead(operator, "150.00")
    page_url = reverse("admin:approvals_proposal_change", args=[failed.pk])
    retry_url = reverse("admin:approvals_proposal_retry", args=[failed.pk])
    why = (
        "Re-assessed since policy “Budget reallocations” routed this proposal (version 2, "
        f"unchanged since), as the budget it draws on moves once #{ahead.pk}, approved before "
        f"its retry, has run: {ABOVE_20}"
    )

    page = login("operator").get(page_url).text
    answer = login("operator").post(retry_url, follow=True)

    assert 'id="retry-form"' not in page
    [note] = re.findall(r'<p class="errornote" id="retry-refused-by-guardrail">(.*?)</p>', page)
    assert as_read(note) == (
        f"The hard ceiling of the policy that routed it refuses it now: {why} "
        "A retry would fail again: its execution would refuse it."
    )
    assert [str(message) for message in answer.context["messages"]] == [
        f"The hard ceiling of the policy that routed it refuses proposal #{failed.pk} now: "
        f"{why} A retry would fail again: its execution would refuse it."
    ]
    failed.refresh_from_db()
    assert failed.status == ProposalStatus.FAILED and failed.executions.count() == 1

    saved(owner, reallocations(), block_above_magnitude="22")
    page = login("operator").get(page_url).text
    assert 'id="retry-refused-by-guardrail"' not in page and 'id="retry-form"' in page
    retried_behind(login, failed, ahead)


@pytest.mark.django_db
def test_a_failed_move_its_source_unmoved_behind_one_approved_says_what_its_retry_leaves(
    login, operator
):
    """180.00 from brand-search (1,000.00) to generic-search (500.00), failed; #N, 150.00
    the same way, approved since, not yet run; brand-search has not moved. The lines under
    its table said "after this one, as proposed, 670.00", where a retry runs after #N and
    is re-assessed from what #N leaves (21.2% of 850.00, not 18.0% of 1,000.00, as
    proposed). Now they say "as a retry would re-assess it then", and the retry, pressed,
    leaves just that."""
    failed = failed_reallocation(operator, "180.00")
    ahead = approved_ahead(operator, "150.00")
    page_url = reverse("admin:approvals_proposal_change", args=[failed.pk])

    page = login("operator").get(page_url).text

    assert 'id="retry-form"' in page
    assert states_table(page)[1:] == [
        ["brand-search", "daily budget", "1000.00", "820.00", "1000.00"],
        ["generic-search", "daily budget", "500.00", "680.00", "500.00"],
    ]
    assert ahead_said(page) == [
        f"Once #{ahead.pk}, approved before its retry, has run: brand-search daily budget "
        "1000.00 → 850.00; after this one, as a retry would re-assess it then, 670.00.",
        f"Once #{ahead.pk}, approved before its retry, has run: generic-search daily budget "
        "500.00 → 650.00; after this one, as a retry would re-assess it then, 830.00.",
    ]
    retried_behind(login, failed, ahead)


@pytest.mark.django_db
def test_a_failed_move_both_the_deciding_and_the_changed_routing_policy_refuse_names_each(
    login, operator
):
    """Routed by "Budget reallocations" (version 1, no hard ceiling), failed; that policy
    given a 20% hard ceiling since (version 2), and a policy for the optimizer's
    reallocations with a 21% one added; brand-search cut to 850.00: 180.00 is 21.2% of it,
    above both. Its execution refuses it for either. The page, and a retry pressed anyway,
    said only the deciding policy's finding; now each policy's, each named."""
    failed = failed_reallocation(operator, "180.00")
    saved(login("policy-owner"), reallocations(), block_above_magnitude="20")
    optimizers_policy(block_above_magnitude=Decimal("0.21"))
    executed_reallocation(operator, "150.00")  # brand-search 1,000.00 -> 850.00
    page_url = reverse("admin:approvals_proposal_change", args=[failed.pk])
    why = (
        "Re-assessed now, as a retry would run it, as the budget it draws on moved, under "
        "policy “Reallocations by optimizer” (version 1), which decides it now in place of "
        "policy “Budget reallocations” (version 1), which routed it: 21.2% of brand-search's "
        "daily budget is above the 21.0% hard ceiling of policy “Reallocations by optimizer”. "
        "Policy “Budget reallocations” has changed since it routed this proposal (version 1; "
        f"now version 2): {ABOVE_20}"
    )

    page = login("operator").get(page_url).text
    answer = login("operator").post(
        reverse("admin:approvals_proposal_retry", args=[failed.pk]), follow=True
    )

    assert 'id="retry-form"' not in page
    [note] = re.findall(r'<p class="errornote" id="retry-refused-by-guardrail">(.*?)</p>', page)
    assert as_read(note) == (
        "The hard ceilings of the policy that decides it now and of the policy that routed it "
        f"refuse it now: {why} A retry would fail again: its execution would refuse it."
    )
    assert [str(message) for message in answer.context["messages"]] == [
        "The hard ceilings of the policy that decides it now and of the policy that routed it "
        f"refuse proposal #{failed.pk} now: {why} A retry would fail again: its execution "
        "would refuse it."
    ]
    failed.refresh_from_db()
    assert failed.status == ProposalStatus.FAILED and failed.executions.count() == 1
    assert budgets() == (Decimal("850.00"), Decimal("650.00"))


def retried_behind(login, failed, ahead):
    """``failed`` retried by a press in the console, then ``ahead`` and it run, in that
    order: each leaves what the page said (brand-search 670.00, generic-search 830.00), the
    retry re-assessed at 21.2% of what ``ahead`` left."""
    login("operator").post(reverse("admin:approvals_proposal_retry", args=[failed.pk]))
    assert Proposal.objects.get(pk=failed.pk).status == ProposalStatus.APPROVED
    assert proposal_execute(proposal_id=ahead.pk).status == ProposalStatus.EXECUTED
    assert proposal_execute(proposal_id=failed.pk).status == ProposalStatus.EXECUTED
    assert budgets() == (Decimal("670.00"), Decimal("830.00"))
    failed.refresh_from_db()
    assert "(21.2%)" in failed.verdict_reasons[0]
