"""Who may act on a proposal: every act (approve, edit then approve, reject, withdraw for the
agent, retry, report an outcome) follows one rule, on the server and in the console alike.
Operators act on agents' actions, policy owners on the platform's recommendations; nobody
acts on a proposal of an agent they own or one about an agent they own (but for saying what
happened); and the console shows a button only where the server takes the act."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from approvals.models import Agent, Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_retry, proposals_approve
from approvals.services.proposals import proposal_evaluate, proposal_withdraw_for_agent
from feedback.autonomy import autonomy_recommendations_propose
from feedback.models import AutonomyRules, Outcome
from hitlproject.errors import NotAllowed
from policies.models import Policy
from tests.conftest import creative, creative_batch, decided_from_page, reallocation
from tests.factories import evaluated
from tests.test_autonomy import record
from tests.test_reallocation_no_longer_fits import queue_marks

# The page's form for each act, and what the act posts.
FORMS = {
    "approve": "approve-form",
    "edit-approve": "edit-approve-form",
    "reject": "reject-form",
    "withdraw": "withdraw-form",
    "retry": "retry-form",
    "outcome": "outcome-form",
}
# The status each act starts from, and the status it leaves the proposal in.
STATUSES = {
    "approve": ("pending_review", "approved"),
    "edit-approve": ("pending_review", "approved"),
    "reject": ("pending_review", "rejected"),
    "withdraw": ("pending_review", "withdrawn"),
    "retry": ("failed", "approved"),
    "outcome": ("executed", "executed"),
}
EVERY_ACT = list(FORMS)
OUTCOME_ONLY = ["outcome"]


def an_action() -> Proposal:
    """optimizer's 28% reallocation, waiting for an operator."""
    return evaluated(reallocation("280.00"))


def a_recommendation() -> Proposal:
    """The platform's recommendation to widen optimizer's bid ceiling, waiting for a policy
    owner. The record that earns it is made once; each call sets the earlier ones aside (as
    withdrawn), so that the platform recommends afresh."""
    if not Proposal.objects.filter(action_type="policy_change").exists():
        rules = AutonomyRules.current()
        rules.widen_min_decisions = rules.narrow_min_decisions = 10
        rules.save()
        record(*["approve"] * 10)
    Proposal.objects.filter(action_type="policy_change").update(status=ProposalStatus.WITHDRAWN)
    [made] = autonomy_recommendations_propose()
    return proposal_evaluate(proposal_id=made.pk)


def edited(proposal: Proposal) -> dict:
    """The edit form's fields, as a reviewer fills them in."""
    if proposal.action_type == "policy_change":
        return {"edit-to_ceiling": "20"}  # percent
    return {"edit-amount": "250.00"}


def in_state(make, status: str) -> Proposal:
    proposal = make()
    if status != ProposalStatus.PENDING_REVIEW:  # a failed or executed one, as if it had run
        Proposal.objects.filter(pk=proposal.pk).update(status=status)
    return Proposal.objects.get(pk=proposal.pk)


def post_data(act: str, proposal: Proposal) -> dict:
    return {
        "approve": {"note": "fine"},
        "edit-approve": {**edited(proposal), "edit-note": "smaller"},
        "reject": {"reason_code": "too_aggressive", "note": ""},
        "withdraw": {},
        "retry": {},
        "outcome": {"effect": "improved", "note": "CPA down 8%."},
    }[act]


def users():
    return get_user_model().objects


ROLES = {
    # name: (who signs in, what they own, the proposal, the acts they may take)
    "operator on an action": ("operator", None, an_action, EVERY_ACT),
    "policy owner on an action": ("policy-owner", None, an_action, []),
    "auditor on an action": ("auditor", None, an_action, []),
    "operator owning the agent that proposed it": (
        "operator",
        "optimizer",
        an_action,
        OUTCOME_ONLY,
    ),
    "policy owner on a recommendation": ("policy-owner", None, a_recommendation, EVERY_ACT),
    "operator on a recommendation": ("operator", None, a_recommendation, []),
    "auditor on a recommendation": ("auditor", None, a_recommendation, []),
    "policy owner owning the agent it concerns": (
        "policy-owner",
        "optimizer",
        a_recommendation,
        OUTCOME_ONLY,
    ),
    "policy owner owning the platform's agent that proposed it": (
        "policy-owner",
        "autonomy-advisor",
        a_recommendation,
        OUTCOME_ONLY,
    ),
}


@pytest.mark.parametrize("role", ROLES)
def test_each_act_is_offered_exactly_where_the_server_takes_it(login, role):
    username, owned, make, allowed_acts = ROLES[role]
    client = login(username)
    for act in EVERY_ACT:
        Agent.objects.update(owner=None)
        start, end = STATUSES[act]
        proposal = in_state(make, start)
        if owned:
            Agent.objects.filter(name=owned).update(owner=users().get(username=username))
        allowed = act in allowed_acts
        page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
        assert (f'id="{FORMS[act]}"' in page.text) == allowed, (role, act)

        response = decided_from_page(
            client,
            act,
            proposal.pk,
            post_data(act, proposal),
            follow=True,
        )

        after = Proposal.objects.get(pk=proposal.pk)
        reported = Outcome.objects.filter(proposal=proposal).exists()
        if allowed:
            assert after.status == end, (role, act, [str(m) for m in response.context["messages"]])
            assert reported == (act == "outcome")
        else:
            assert (after.status, reported) == (start, False), (role, act)
            assert response.status_code == 403 or "someone else must decide" in response.text, (
                role,
                act,
            )


def test_nobody_acts_on_a_proposal_about_an_agent_they_own_through_any_service(demo_world):
    owner = users().get(username="policy-owner")
    recommendation = a_recommendation()
    Agent.objects.filter(name="optimizer").update(owner=owner)
    concerns = r"owns agent optimizer, which proposal #\d+ concerns; someone else must decide"

    with pytest.raises(NotAllowed, match=concerns):
        proposal_withdraw_for_agent(proposal_id=recommendation.pk, reviewer=owner)
    with pytest.raises(NotAllowed, match=concerns):
        proposal_approve(proposal_id=recommendation.pk, reviewer=owner)
    Proposal.objects.filter(pk=recommendation.pk).update(status=ProposalStatus.FAILED)
    with pytest.raises(NotAllowed, match=concerns):
        proposal_retry(proposal_id=recommendation.pk, reviewer=owner)
    assert Proposal.objects.get(pk=recommendation.pk).status == ProposalStatus.FAILED


def test_an_operator_may_not_retry_what_their_own_agent_proposed(demo_world):
    operator = users().get(username="operator")
    Agent.objects.filter(name="optimizer").update(owner=operator)
    failed = in_state(an_action, ProposalStatus.FAILED)
    with pytest.raises(NotAllowed, match="owns agent optimizer, which proposed"):
        proposal_retry(proposal_id=failed.pk, reviewer=operator)
    assert Proposal.objects.get(pk=failed.pk).status == ProposalStatus.FAILED


def test_an_owner_approving_in_bulk_is_refused_for_each_of_their_agents_proposals(operators):
    owner = operators[0]
    Agent.objects.filter(name="optimizer").update(owner=owner)
    own = [an_action(), evaluated(reallocation("150.00"))]
    others = evaluated(reallocation("160.00"), agent="copywriter")

    decided = proposals_approve(proposal_ids=[p.pk for p in [*own, others]], reviewer=owner)

    assert [p.pk for p in decided.proposals] == [others.pk]
    assert all("someone else must decide" in error.message for error in decided.refused)
    assert len(decided.refused) == 2
    assert {Proposal.objects.get(pk=p.pk).status for p in own} == {"pending_review"}


def test_after_approving_once_a_reviewer_is_no_longer_offered_the_decision(login, operators):
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = an_action()
    url = reverse("admin:approvals_proposal_change", args=[proposal.pk])
    decided_from_page(login("operator"), "approve", proposal.pk)

    assert 'id="approve-form"' not in login("operator").get(url).text
    colleague = Client()
    colleague.force_login(operators[1])
    assert 'id="approve-form"' in colleague.get(url).text


def lose_access(agent: Agent, how: str) -> str:
    """Take ``agent``'s right to act on the demo account away, ``how``; what the page says."""
    if how == "deactivated":
        Agent.objects.filter(pk=agent.pk).update(is_active=False)
        return "agent optimizer has been deactivated since it proposed it"
    agent.accounts.clear()
    return "agent optimizer may no longer act on account demo since it proposed it"


@pytest.mark.parametrize("how", ["deactivated", "account taken away"])
def test_what_an_agent_proposed_before_it_lost_the_account_is_not_let_run(login, operators, how):
    """An agent stopped (deactivated, or the account taken from it) since it proposed: its
    waiting proposal is not approved, by a page, in bulk or by a retry, and the page says
    why; it can still be rejected or withdrawn."""
    waiting, also_waiting = an_action(), evaluated(reallocation("150.00"))
    failed = in_state(lambda: evaluated(reallocation("160.00")), ProposalStatus.FAILED)
    said = lose_access(Agent.objects.get(name="optimizer"), how)
    client = login("operator")

    page = client.get(reverse("admin:approvals_proposal_change", args=[waiting.pk])).text
    assert f"Proposal #{waiting.pk} cannot be let run: {said}." in page
    assert 'id="approve-form"' not in page and 'id="edit-approve-form"' not in page
    assert 'id="reject-form"' in page and 'id="withdraw-form"' in page
    approved = decided_from_page(client, "approve", waiting.pk, follow=True)
    assert "cannot be let run" in approved.text
    decided = proposals_approve(proposal_ids=[also_waiting.pk], reviewer=operators[0])
    assert decided.proposals == [] and "cannot be let run" in decided.refused[0].message
    with pytest.raises(NotAllowed, match="cannot be let run"):
        proposal_retry(proposal_id=failed.pk, reviewer=operators[0])
    retry_page = client.get(reverse("admin:approvals_proposal_change", args=[failed.pk])).text
    assert 'id="retry-form"' not in retry_page and "cannot be let run" in retry_page
    assert {p.status for p in Proposal.objects.filter(pk__in=[waiting.pk, also_waiting.pk])} == {
        "pending_review"
    }

    decided_from_page(
        client,
        "reject",
        waiting.pk,
        {"reason_code": "other", "note": "Its agent is stopped."},
    )
    assert Proposal.objects.get(pk=waiting.pk).status == ProposalStatus.REJECTED


@pytest.mark.parametrize("how", ["deactivated", "account taken away"])
def test_the_queue_marks_what_an_agent_stopped_since_proposed_before_it_is_selected(login, how):
    """Its page and its approval refused it, but its row in the queue read as every other
    approvable row: an operator selected it with the others for bulk approval and was told
    after. Its summary says why under it, in its page's words; another agent's row says
    nothing; the agents' accounts are read once for the page, whatever its rows."""
    waiting = evaluated(reallocation("150.00"))
    more = [evaluated(reallocation(f"{amount}.00")) for amount in (170, 180, 190)]
    failed = in_state(lambda: evaluated(reallocation("160.00")), ProposalStatus.FAILED)
    others = evaluated(creative_batch(creative()), agent="copywriter")
    assert others.status == ProposalStatus.PENDING_REVIEW
    said = lose_access(Agent.objects.get(name="optimizer"), how)
    operator = login("operator")

    marks, read_with_more = queue_marks(operator)

    assert all(marks[p.pk].endswith(f"Cannot be let run: {said}.") for p in more)
    Proposal.objects.filter(pk__in=[p.pk for p in more]).update(status=ProposalStatus.WITHDRAWN)
    marks, read = queue_marks(operator)
    assert marks == {
        waiting.pk: (
            "move 150.00 USD/day from brand-search to generic-search (15.0%) Cannot be let "
            f"run: {said}."
        ),
        others.pk: others.summary,
    }
    assert read == read_with_more
    # Failed, it is not retried either: listed among failures, it says so too.
    failures = operator.get(
        reverse("admin:approvals_proposal_changelist"), {"status": "failed"}
    ).text
    assert f"Cannot be let run: {said}." in failures
    assert failed.summary in failures


def test_an_operator_whose_retry_came_second_is_told_who_retried_it_first(login, operators):
    """Two operators press Retry on the same failed proposal: the second was told "Proposal
    #N is already approved." (or "is executed; it was approved already"), as if someone had
    approved it rather than retried it, and not by whom: their colleague's retry, named, as
    a decision that came second is told who decided first."""
    colleague = operators[1]
    failed = in_state(an_action, ProposalStatus.FAILED)
    proposal_retry(proposal_id=failed.pk, reviewer=colleague)

    page = login("operator").post(
        reverse("admin:approvals_proposal_retry", args=[failed.pk]), follow=True
    )

    said = [str(message) for message in page.context["messages"]]
    assert len(said) == 1 and said[0].startswith(f"Proposal #{failed.pk} is already approved. ")
    assert said[0].endswith(" UTC.")
    assert (
        f"Its execution failed, and {colleague.get_username()} sent it to run again at " in said[0]
    )
    assert Proposal.objects.get(pk=failed.pk).status == ProposalStatus.APPROVED
