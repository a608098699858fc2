"""A policy changed while proposals it routed wait for a person: they are not routed again
(their ceilings, approvals, expiry and deadline stay as routed), and the policy owner is told
so before saving (the form, a draft's promotion page) and after (the message), with a link to
the queue listing exactly them. The one exception is a hard ceiling lowered below one: a
person's approval of it as proposed is refused, as the policy now blocks it outright, in words
its page says first; it never runs above the new hard ceiling."""

import html
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from executors.runner import proposal_execute
from hitlproject.errors import DomainError
from hitlproject.vocabulary import HardCeilingFinding, refusal_said
from ledger.models import Campaign
from notifications.services import _refusal_moved_said
from policies.models import Policy
from tests.conftest import decided_from_page, reallocation
from tests.factories import evaluated
from tests.test_policy_tuning import change_url, duplicate, form_data
from tests.test_reallocation_no_longer_fits import queue_marks


def reallocations() -> Policy:
    return Policy.objects.get(action_type="budget_reallocation", is_draft=False)


def text_of(page) -> str:
    """A page's words as a person reads them: tags out, entities read, spaces folded."""
    body = re.sub(r"<script.*?</script>|<style.*?</style>", " ", page.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def saved(owner: Client, policy: Policy, **typed) -> list[str]:
    """The policy's form saved with ``typed`` and a reason; the messages said after."""
    url = change_url(policy)
    answer = owner.post(url, form_data(owner, url, change_reason="Tuning.", **typed), follow=True)
    assert answer.status_code == 200 and answer.redirect_chain, text_of(answer)
    return [html.unescape(re.sub(r"<[^>]+>", "", str(m))) for m in answer.context["messages"]]


def queue_ids(client: Client, url: str) -> list[int]:
    return sorted(proposal.pk for proposal in client.get(url).context["cl"].result_list)


def link_in(message_html: str) -> str:
    return html.unescape(re.search(r'href="([^"]*policy=[^"]*)"', message_html).group(1))


@pytest.fixture
def owner(login) -> Client:
    return login("policy-owner")


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def test_the_form_says_before_saving_what_waits_under_the_policy_and_links_to_exactly_those(
    owner, login
):
    waiting = [evaluated(reallocation("280.00")), evaluated(reallocation("300.00"))]
    evaluated(reallocation("50.00"))  # 5%: auto-approved, not waiting
    page = owner.get(change_url(reallocations()))
    notice = re.search(r'<p id="waiting-under-policy">(.*?)</p>', page.content.decode()).group(1)
    said = text_of(page)
    assert (
        "2 proposals routed by it wait for a person. A change of the policy does not route them "
        "again: each keeps the verdict, the approvals needed, the review window and the decision "
        "deadline it was routed with. A ceiling raised does not let one run on its own, and "
        "switched off, the policy leaves them waiting for a person. A hard ceiling lowered below "
        "one is the exception: a person's approval of it as proposed is then refused."
    ) in said
    assert queue_ids(login("operator"), link_in(notice)) == sorted(p.pk for p in waiting)


def test_a_hard_ceiling_lowered_below_a_waiting_proposal_refuses_its_approval_saying_why(
    owner, login, operator
):
    proposal = evaluated(reallocation("280.00"))  # 28%, over the 10% auto-execute ceiling
    said = saved(owner, reallocations(), block_above_magnitude="20")
    assert said[1] == (
        "1 proposal routed by its earlier versions still waits for a person. A change of the "
        "policy does not route it again: it keeps the verdict, the approvals needed, the review "
        "window and the decision deadline it was routed with. A ceiling raised does not let it "
        "run on its own, and switched off, the policy leaves it waiting for a person. It is "
        "above its hard ceiling now: a person's approval of it as proposed is refused, as the "
        "policy blocks it outright; an edit within it, or a rejection, is possible."
    )
    why = (
        "Policy “Budget reallocations” has changed since it routed this proposal (version 1; "
        "now version 2): 28.0% of brand-search's daily budget is above the 20.0% hard ceiling "
        "of policy “Budget reallocations”."
    )
    # Its page says so before the operator tries, beside what routed it and its terms now.
    page = text_of(
        login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    )
    # In the policy's words, not a guardrail's: its hard ceiling is no guardrail.
    assert (
        f"The hard ceiling of the policy that routed it refuses it now, as proposed: {why} "
        "Approving it as it is will be refused; an edit within its policy's hard ceiling, or a "
        "rejection, is possible."
    ) in page
    assert "A guardrail refuses" not in page and "within the guardrail" not in page
    assert "it has changed since, to version 2" in page
    # The queue marks it the same way.
    queue = text_of(login("operator").get(reverse("admin:approvals_proposal_changelist")))
    assert f"The hard ceiling of the policy that routed it refuses it now, as proposed: {why}" in (
        queue
    )
    assert "A guardrail refuses" not in queue
    # Its Guardrail column names who refuses it: it read "Refuses it now: see its summary"
    # under the "guardrail" heading, which the policy's hard ceiling is not.
    flags, _ = queue_marks(login("operator"), "guardrail_flag")
    assert flags[proposal.pk] == (
        "The hard ceiling of the policy that routed it refuses it now: see its summary"
    )

    refused = decided_from_page(
        login("operator"), "approve", proposal.pk, {"note": "ok"}, follow=True
    )
    assert [str(m) for m in refused.context["messages"]] == [
        f"The hard ceiling of the policy that routed it refuses proposal #{proposal.pk} now: {why}"
    ]
    with pytest.raises(DomainError, match="has changed since it routed this proposal"):
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    assert Campaign.objects.get(external_id="brand-search").daily_budget == 1000


def test_a_hard_ceiling_still_above_it_lets_it_be_approved_and_the_message_says_none_refused(
    owner, operator
):
    proposal = evaluated(reallocation("280.00"))
    said = saved(owner, reallocations(), block_above_magnitude="50")
    assert said[1].startswith("1 proposal routed by its earlier versions still waits")
    assert "hard ceiling" not in said[1]
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.APPROVED


def test_a_raised_auto_execute_ceiling_leaves_it_waiting_for_a_person_as_said(owner, operator):
    proposal = evaluated(reallocation("280.00"))
    said = saved(owner, reallocations(), auto_execute_max_magnitude="30")
    assert said[0].endswith("What changed: Auto-execute ceiling: 10% → 30%.")
    assert "A ceiling raised does not let it run on its own" in said[1]
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PENDING_REVIEW  # not re-routed
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.APPROVED


def test_fewer_approvals_asked_for_leaves_one_routed_under_two_still_needing_two(owner, operators):
    policy = reallocations()
    saved(owner, policy, required_approvals="2")
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operators[0])
    said = saved(owner, policy, required_approvals="1")
    assert "Required approvals: 2 → 1" in said[0]
    assert "it keeps the verdict, the approvals needed" in said[1]
    proposal.refresh_from_db()
    assert (proposal.status, proposal.required_approvals) == (ProposalStatus.PENDING_REVIEW, 2)
    proposal_approve(proposal_id=proposal.pk, reviewer=operators[1])
    assert Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.APPROVED


def test_switched_off_the_policy_leaves_them_waiting_and_its_hard_ceiling_refuses_nothing(
    owner, operator
):
    policy = reallocations()
    proposal = evaluated(reallocation("280.00"))
    saved(owner, policy, block_above_magnitude="20")
    said = saved(owner, policy, is_active=False)
    assert said[0].endswith("What changed: Is active: yes → no.")
    assert "switched off, the policy leaves it waiting for a person" in said[1]
    assert "hard ceiling now" not in said[1]
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.APPROVED


def test_a_draft_s_promotion_page_says_which_waiting_ones_its_hard_ceiling_would_refuse(
    owner, operator
):
    policy = reallocations()
    over, under = evaluated(reallocation("280.00")), evaluated(reallocation("150.00"))
    draft = duplicate(owner, policy, block_above_magnitude="20", change_reason="Cap it.")
    promote = reverse("admin:policies_policy_promote", args=[draft.pk])
    shown = text_of(owner.get(promote))
    # Routed by the live policy the draft replaces, not by the draft.
    assert (
        "2 proposals routed by “Budget reallocations”, the policy the draft replaces, wait for "
        "a person. A change of the policy does not route them again"
    ) in shown
    assert "routed by it" not in shown
    assert (
        "1 of them would be above the draft's hard ceiling: once it is promoted, a person's "
        "approval of it as proposed would be refused, as the policy would block it outright; "
        "an edit within it, or a rejection, is possible."
    ) in shown
    assert "refused already" not in shown  # the live policy has no hard ceiling
    done = owner.post(promote, {"change_reason": "Capped."}, follow=True)
    said = [html.unescape(re.sub(r"<[^>]+>", "", str(m))) for m in done.context["messages"]]
    assert "1 of them is above its hard ceiling now" in said[1]
    with pytest.raises(DomainError, match=r"20\.0% hard ceiling"):
        proposal_approve(proposal_id=over.pk, reviewer=operator)
    proposal_approve(proposal_id=under.pk, reviewer=operator)
    assert Proposal.objects.get(pk=under.pk).status == ProposalStatus.APPROVED


def test_one_above_a_lowered_hard_ceiling_edited_within_it_is_approved_and_runs_as_edited(
    owner, login
):
    proposal = evaluated(reallocation("280.00"))  # 28%, over the 20% hard ceiling set below
    saved(owner, reallocations(), block_above_magnitude="20")
    done = decided_from_page(
        login("operator"),
        "edit-approve",
        proposal.pk,
        {"edit-amount": "200.00", "edit-note": "Within the new hard ceiling."},
        follow=True,
    )
    said = [str(m) for m in done.context["messages"]]
    assert not any("refuses" in m or "Not approved" in m for m in said), said
    proposal.refresh_from_db()
    assert (proposal.status, proposal.payload["amount"]) == (ProposalStatus.APPROVED, "200.00")
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED
    assert Campaign.objects.get(external_id="brand-search").daily_budget == 800


def test_the_form_opened_again_says_how_many_its_lowered_hard_ceiling_refuses_now(owner):
    evaluated(reallocation("280.00"))  # 28%: above the 20% hard ceiling set below
    evaluated(reallocation("150.00"))  # 15%: within it
    saved(owner, reallocations(), block_above_magnitude="20")
    shown = text_of(owner.get(change_url(reallocations())))
    assert (
        "2 proposals routed by it wait for a person. A change of the policy does not route them "
        "again"
    ) in shown
    assert (
        "1 of them is above its hard ceiling now: a person's approval of it as proposed is "
        "refused, as the policy blocks it outright; an edit within it, or a rejection, is "
        "possible."
    ) in shown


def test_one_re_assessed_above_the_hard_ceiling_after_another_move_is_still_refused(
    owner, operator
):
    over = evaluated(reallocation("280.00"))  # 28%, routed by version 1
    saved(owner, reallocations(), block_above_magnitude="20")
    other = evaluated(reallocation("150.00"))  # 15%, routed by version 2
    proposal_approve(proposal_id=other.pk, reviewer=operator)
    assert proposal_execute(proposal_id=other.pk).status == ProposalStatus.EXECUTED
    over.refresh_from_db()  # re-assessed under version 2: 280 of 850 is 32.9%
    assert over.reassessed_policy_version is not None
    with pytest.raises(DomainError, match=r"32\.9% of brand-search's daily budget is above the"):
        proposal_approve(proposal_id=over.pk, reviewer=operator)
    assert Proposal.objects.get(pk=over.pk).status == ProposalStatus.PENDING_REVIEW
    assert Campaign.objects.get(external_id="brand-search").daily_budget == 850


def test_a_draft_s_promotion_page_tells_what_the_live_hard_ceiling_refuses_now_from_the_draft_s(
    owner, operator
):
    """The live policy's hard ceiling lowered to 29% refuses the 30% one already; a draft's at
    20% would refuse the 28% one too: the page says which is refused now, and which only once
    the draft is promoted, not that both "would be"."""
    policy = reallocations()
    low, high = evaluated(reallocation("280.00")), evaluated(reallocation("300.00"))
    evaluated(reallocation("150.00"))  # 15%: within both
    saved(owner, policy, block_above_magnitude="29")
    draft = duplicate(owner, policy, block_above_magnitude="20", change_reason="Cap it lower.")

    shown = text_of(owner.get(reverse("admin:policies_policy_promote", args=[draft.pk])))

    assert (
        "3 proposals routed by “Budget reallocations”, the policy the draft replaces, wait for "
        "a person. A change of the policy does not route them again: each keeps the verdict, "
        "the approvals needed, the review window and the decision deadline it was routed with. "
        "A ceiling raised does not let one run on its own, and switched off, the policy leaves "
        "them waiting for a person. 1 of them is above the hard ceiling of “Budget "
        "reallocations” now: a person's approval of it as proposed is refused already, as that "
        "policy blocks it outright. 2 of them would be above the draft's hard ceiling (1 of "
        "these refused already): once it is promoted, a person's approval of them as proposed "
        "would be refused, as the policy would block them outright; an edit within it, or a "
        "rejection, is possible."
    ) in shown
    with pytest.raises(DomainError, match=r"29\.0% hard ceiling"):
        proposal_approve(proposal_id=high.pk, reviewer=operator)
    proposal_approve(proposal_id=low.pk, reviewer=operator)  # not refused yet, as said


def test_a_draft_s_promotion_page_says_which_refused_now_its_higher_hard_ceiling_would_let_pass(
    owner, operator
):
    policy = reallocations()
    low, high = evaluated(reallocation("280.00")), evaluated(reallocation("300.00"))
    saved(owner, policy, block_above_magnitude="25")
    draft = duplicate(owner, policy, block_above_magnitude="29", change_reason="Loosen it.")
    promote = reverse("admin:policies_policy_promote", args=[draft.pk])

    shown = text_of(owner.get(promote))

    assert (
        "Both are above the hard ceiling of “Budget reallocations” now: a person's approval of "
        "them as proposed is refused already, as that policy blocks them outright. 1 of them "
        "would be above the draft's hard ceiling (refused already): once it is promoted, a "
        "person's approval of it as proposed would be refused, as the policy would block it "
        "outright; an edit within it, or a rejection, is possible. Once the draft is promoted, "
        "1 of those would no longer be refused: within the draft's hard ceiling, a person may "
        "approve it as proposed."
    ) in shown
    owner.post(promote, {"change_reason": "Loosened."})
    assert Policy.objects.get(pk=policy.pk).block_above_magnitude == Decimal("0.29")
    with pytest.raises(DomainError, match=r"29\.0% hard ceiling"):
        proposal_approve(proposal_id=high.pk, reviewer=operator)
    proposal_approve(proposal_id=low.pk, reviewer=operator)
    assert Proposal.objects.get(pk=low.pk).status == ProposalStatus.APPROVED


def test_one_routed_within_the_hard_ceiling_then_re_assessed_above_it_is_refused_saying_so(
    owner, login, operator
):
    """Routed by the version in force (20% hard ceiling) at 18%, it waits; another move cuts
    brand-search from 1,000 to 850, and re-assessed, 180 is 21.2% of it: the policy's hard
    ceiling, unchanged, refuses it now, and its page and the refusal say so, in words an
    operator reads without knowing the code: which policy, which version, and why it moved."""
    saved(owner, reallocations(), block_above_magnitude="20")
    waiting = evaluated(reallocation("180.00"))  # 18%, routed by version 2
    other = evaluated(reallocation("150.00"))  # 15%, routed by version 2
    proposal_approve(proposal_id=other.pk, reviewer=operator)
    assert proposal_execute(proposal_id=other.pk).status == ProposalStatus.EXECUTED
    waiting.refresh_from_db()
    assert waiting.reassessed_policy_version == waiting.verdict_policy_version
    why = (
        "Re-assessed since policy “Budget reallocations” routed this proposal (version 2, "
        "unchanged since), as the budget it draws on moved: 21.2% of brand-search's daily "
        "budget is above the 20.0% hard ceiling of policy “Budget reallocations”."
    )

    page = text_of(
        login("operator").get(reverse("admin:approvals_proposal_change", args=[waiting.pk]))
    )
    refused = decided_from_page(
        login("operator"), "approve", waiting.pk, {"note": "ok"}, follow=True
    )

    assert (
        f"The hard ceiling of the policy that routed it refuses it now, as proposed: {why} "
        "Approving it as it is will be refused"
    ) in page
    assert [str(m) for m in refused.context["messages"]] == [
        f"The hard ceiling of the policy that routed it refuses proposal #{waiting.pk} now: {why}"
    ]
    assert Proposal.objects.get(pk=waiting.pk).status == ProposalStatus.PENDING_REVIEW


def test_a_refusal_for_a_guardrail_and_the_policy_s_hard_ceiling_at_once_names_both():
    cap = "brand-search's daily budget would be 710.00 USD, above its cap of 660.00 USD."
    ceiling = HardCeilingFinding(
        "Policy “Budget reallocations” has changed since it routed this proposal (version 1; "
        "now version 2): 28.0% of brand-search's daily budget is above the 20.0% hard ceiling "
        "of policy “Budget reallocations”."
    )

    assert (
        refusal_said((cap,), named="proposal #7") == f"A guardrail refuses proposal #7 now: {cap}"
    )
    assert refusal_said((ceiling,), named="proposal #7") == (
        f"The hard ceiling of the policy that routed it refuses proposal #7 now: {ceiling}"
    )
    assert refusal_said((cap, ceiling), named="proposal #7") == (
        "A guardrail and the hard ceiling of the policy that routed it refuse proposal #7 now: "
        f"{cap} {ceiling}"
    )


def test_a_slack_message_s_update_names_the_policy_s_hard_ceiling_refusing_it_as_it_went():
    """What an update of a Slack message says changed as it went (its outbox row's "Update of
    a message sent: …"): it read "its approval refused by a guardrail as it went" where only
    the policy's hard ceiling, lowered meanwhile, refuses it."""
    cap = "brand-search's daily budget would be 710.00 USD, above its cap of 660.00 USD."
    ceiling = HardCeilingFinding("28.0% is above the 20.0% hard ceiling of policy “R”.")

    assert _refusal_moved_said(("", ()), ("", (ceiling,))) == (
        "its approval refused by the hard ceiling of the policy that routed it as it went"
    )
    assert _refusal_moved_said(("", (ceiling,)), ("", ())) == (
        "its approval no longer refused by the hard ceiling of the policy that routed it as it went"
    )
    assert _refusal_moved_said(("", (cap,)), ("", (ceiling,))) == (
        "its approval refused by the hard ceiling of the policy that routed it, not a "
        "guardrail, as it went"
    )
    assert _refusal_moved_said(("", ()), ("", (cap,))) == (
        "its approval refused by a guardrail as it went"
    )
