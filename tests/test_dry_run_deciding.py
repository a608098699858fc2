"""A policy's dry run is first shown for an agent and an account this policy decides for, as
a submission is matched to its policy: once an autonomy recommendation gave optimizer its own
bid ceiling on demo, the general bid policy's dry run was still tried for optimizer, the last
to propose a bid, so that its verdict was the other policy's and a ceiling typed into it was
never read."""

import html
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals.models import Agent, Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from approvals.services.proposals import proposal_evaluate
from executors.runner import proposal_execute
from feedback.autonomy import AutonomyRules, advisor_for, autonomy_recommendations_propose
from ledger.models import Account
from policies.models import Policy
from tests.conftest import bid_adjustment, reallocation
from tests.factories import evaluated
from tests.test_autonomy import record

GENERAL = "Bid adjustments"
EARNED = "Bid adjustments: optimizer on demo"


def dry_run_url(policy: Policy) -> str:
    return reverse("admin:policies_policy_dry_run", args=[policy.pk])


def said(page, element: str) -> str:
    """A paragraph of the page, by its id, as a person reads it."""
    text = page.content.decode()
    start = text.index(f'id="{element}">') + len(f'id="{element}">')
    return html.unescape(text[start : text.index("</p>", start)])


@pytest.fixture
def earned(demo_world) -> Policy:
    """optimizer's own bid ceiling on demo, as a policy owner's approval of an autonomy
    recommendation makes it; optimizer has proposed bids (its record), copywriter none."""
    rules = AutonomyRules.current()
    rules.widen_min_decisions = rules.narrow_min_decisions = 10
    rules.save()
    record(*["approve"] * 10)
    [recommendation] = autonomy_recommendations_propose()
    proposal_evaluate(proposal_id=recommendation.pk)
    owner = get_user_model().objects.get(username="policy-owner")
    proposal_approve(proposal_id=recommendation.pk, reviewer=owner)
    proposal_execute(proposal_id=recommendation.pk)
    return Policy.objects.get(name=EARNED)


def test_the_general_policys_dry_run_is_tried_for_an_agent_it_decides(earned, login):
    owner = login("policy-owner")
    general = Policy.objects.get(name=GENERAL, is_draft=False)
    page = owner.get(dry_run_url(general))
    form = page.context["form"]
    assert form["agent"].initial.name == "copywriter"
    assert form["account"].initial.external_id == "demo"
    assert said(page, "dry-run-agent") == (
        "No agent that proposed a bid adjustment lately is one this policy decides for: "
        f"policy “{EARNED}” decides for “optimizer” on “demo”. It is tried for agent "
        "“copywriter” on account “demo”, the only agent and account this policy decides for."
    )
    assert said(page, "dry-run-decides").startswith(
        "Of the active agents that may propose a bid adjustment, each on the accounts it acts "
        "on, this policy decides for “copywriter” on “demo”: choose one of those below"
    )

    # As the page opens it, with a ceiling typed: this policy's verdict, the ceiling tried.
    data = {
        "agent": form["agent"].initial.pk,
        "account": form["account"].initial.pk,
        "payload": form["payload"].value(),
        "try_auto_execute_ceiling": "50",
    }
    verdict = owner.post(dry_run_url(general), data)
    assert verdict.context["verdict"].policy_name == GENERAL
    assert verdict.context["verdict"].outcome == "auto_approve"
    assert said(verdict, "dry-run-tried") == (
        "Tried, for this run only: an auto-execute ceiling of 50%."
    )

    # The earned policy's own dry run is tried for optimizer, the last to propose one.
    page = owner.get(dry_run_url(earned))
    assert page.context["form"]["agent"].initial.name == "optimizer"
    assert said(page, "dry-run-agent").startswith(
        "It is tried for agent “optimizer” on account “demo”, the last to propose a bid "
        "adjustment that this policy decides ("
    )


def test_a_draft_is_tried_for_whom_its_live_policy_decides(earned, login):
    owner = login("policy-owner")
    general = Policy.objects.get(name=GENERAL, is_draft=False)
    for live, agent in [(general, "copywriter"), (earned, "optimizer")]:
        draft = Policy.objects.create(
            name=f"{live.name} (draft)",
            action_type=live.action_type,
            agent=live.agent,
            account=live.account,
            auto_execute_max_magnitude=live.auto_execute_max_magnitude,
            is_draft=True,
            draft_of=live,
        )
        page = owner.get(dry_run_url(draft))
        assert page.context["form"]["agent"].initial.name == agent, live.name
        assert f"this policy decides for “{agent}” on “demo”:" in said(page, "dry-run-decides")


def test_a_later_proposer_another_policy_decides_is_passed_over_saying_so(demo_world, login):
    """copywriter proposed a reallocation; optimizer, with its own policy, proposed later."""
    optimizer = Agent.objects.get(name="optimizer")
    general = Policy.objects.get(name="Budget reallocations", is_draft=False)
    Policy.objects.create(
        name="Reallocations: optimizer",
        action_type="budget_reallocation",
        agent=optimizer,
        auto_execute_max_magnitude=general.auto_execute_max_magnitude,
    )
    evaluated(reallocation("280.00"), agent="copywriter")
    evaluated(reallocation("290.00"))
    page = login("policy-owner").get(dry_run_url(general))
    assert page.context["form"]["agent"].initial.name == "copywriter"
    text = said(page, "dry-run-agent")
    assert text.startswith(
        "It is tried for agent “copywriter” on account “demo”, the last to propose a budget "
        "reallocation that this policy decides ("
    ), text
    assert text.endswith(
        "A later one is decided by another policy: policy “Reallocations: optimizer” decides "
        "for “optimizer” on “demo”."
    ), text


def test_a_policy_that_decides_for_no_agent_says_so(demo_world, login):
    """optimizer's own policy, under one for optimizer on demo, its one account."""
    optimizer = Agent.objects.get(name="optimizer")
    own = Policy.objects.create(
        name="Bids: optimizer", action_type="bid_adjustment", agent=optimizer
    )
    Policy.objects.create(
        name="Bids: optimizer on demo",
        action_type="bid_adjustment",
        agent=optimizer,
        account=optimizer.accounts.get(),
    )
    evaluated(bid_adjustment("2.12"))
    page = login("policy-owner").get(dry_run_url(own))
    assert said(page, "dry-run-decides") == (
        "Of the active agents that may propose a bid adjustment, this policy decides for "
        "none, on any account it acts on: a more specific policy decides for each, so the "
        "verdict is never this policy's and a ceiling typed is not used."
    )
    assert said(page, "dry-run-agent") == (
        "It is tried for agent “optimizer” on account “demo”, the last to propose a bid "
        "adjustment; policy “Bids: optimizer on demo” decides it, not this policy, and its "
        "verdict is the one shown."
    )


def test_a_policy_changes_dry_run_is_tried_for_the_platforms_own_agent(demo_world, login):
    """Only the platform's own agent proposes a policy change (an autonomy recommendation).
    The dry run of a policy of them named copywriter and optimizer among whom it decides for
    and, before the platform's agent was given an account, was tried for copywriter, whose
    run was refused: "Only the platform proposes a policy change, not an agent"."""
    owner = login("policy-owner")
    policy = Policy.objects.create(name="Policy changes", action_type="policy_change")

    page = owner.get(dry_run_url(policy))  # no recommendation yet: no platform agent
    assert page.context["form"]["agent"].initial is None
    assert said(page, "dry-run-agent") == (
        "Only the platform's own agent proposes a policy change (an autonomy recommendation), "
        "and there is none yet: it is made with the first recommendation. There is no one to "
        "try it for until then."
    )
    assert 'id="dry-run-decides"' not in page.content.decode()

    demo = Account.objects.get(external_id="demo")
    advisor = advisor_for(demo)  # as a recommendation on demo makes it
    advisor.accounts.remove(demo)  # ...and one on an account it no longer acts on
    page = owner.get(dry_run_url(policy))
    assert page.context["form"]["agent"].initial is None
    assert said(page, "dry-run-agent").startswith(
        f"Only the platform's own agent, “{advisor}”, proposes a policy change (an autonomy "
        "recommendation), and it acts on no account this policy covers"
    )

    advisor.accounts.add(demo)
    page = owner.get(dry_run_url(policy))
    form = page.context["form"]
    assert form["agent"].initial == advisor
    assert form["account"].initial == demo
    assert said(page, "dry-run-decides").startswith(
        "Of the active agents that may propose a policy change, each on the accounts it acts "
        f"on, this policy decides for “{advisor}” on “demo”: choose one"
    )
    data = {
        "agent": advisor.pk,
        "account": demo.pk,
        "payload": form["payload"].value(),
    }
    verdict = owner.post(dry_run_url(policy), data).context["verdict"]
    assert verdict.policy_name == "Policy changes"
    assert verdict.outcome == "review"


def linked(agents: int, accounts: int, proposals: int) -> None:
    """``agents`` optimization agents, each acting on ``accounts`` accounts, and ``proposals``
    bid adjustments by them, the latest last."""
    demo = Account.objects.get(external_id="demo")
    made = Account.objects.bulk_create(
        Account(
            external_id=f"bulk-{n}",
            name=f"Bulk {n}",
            channel=demo.channel,
            currency=demo.currency,
            max_total_daily_budget=demo.max_total_daily_budget,
        )
        for n in range(accounts)
    )
    bots = Agent.objects.bulk_create(
        Agent(name=f"bulk-{n:03d}", kind="optimization") for n in range(agents)
    )
    Link = Agent.accounts.through
    Link.objects.bulk_create(Link(agent=bot, account=account) for bot in bots for account in made)
    now = timezone.now()
    Proposal.objects.bulk_create(
        Proposal(
            agent=bots[n % agents],
            account=made[n % accounts],
            action_type="bid_adjustment",
            payload={"campaign": "brand-search", "new_bid": "2.10"},
            rationale="bulk",
            confidence=0.5,
            summary="bulk",
            magnitude=Decimal("0.05"),
            magnitude_label="+5%",
            status=ProposalStatus.EXECUTED,
            created_at=now - timedelta(minutes=proposals - n),
        )
        for n in range(proposals)
    )


def test_a_dry_runs_page_reads_as_much_whatever_the_number_of_agents_and_proposals(
    demo_world, login
):
    """The page read every agent's every account, and grouped every proposal of the type, to
    choose whom to try it for: a general policy's page at 10,000 pairs and 200,000 proposals
    took a second. It reads the latest proposals and the first pairs by name, and says so."""
    owner = login("policy-owner")
    general = Policy.objects.get(name=GENERAL, is_draft=False)
    statements = []
    for agents, proposals in [(30, 300), (60, 600)]:
        linked(agents, 10, proposals)
        owner.get(dry_run_url(general))  # the session's first reads
        with CaptureQueriesContext(connection) as read:
            page = owner.get(dry_run_url(general))
        statements.append(len(read.captured_queries))
        pairs = Agent.accounts.through.objects.filter(
            agent__is_active=True, agent__is_platform=False
        ).count()
        assert pairs > 200
        text = said(page, "dry-run-decides")
        assert text.startswith(
            "Of the active agents that may propose a bid adjustment, each on the accounts it "
            f"acts on (the first 200 by name of {pairs} such pairs, only those looked at), this "
            "policy decides for “bulk-000” on “bulk-0”, "
        ), text
        assert " and 192 more: choose one" in text, text  # 8 named of the 200
        # The latest proposal, by an agent on an account past the first 200 pairs by name.
        last = Proposal.objects.filter(action_type="bid_adjustment").latest("created_at")
        assert page.context["form"]["agent"].initial == last.agent
        assert said(page, "dry-run-agent").startswith(
            f"It is tried for agent “{last.agent}” on account “{last.account}”, the last to "
            "propose a bid adjustment that this policy decides ("
        )
        Proposal.objects.filter(rationale="bulk").delete()
        Agent.accounts.through.objects.filter(agent__name__startswith="bulk-").delete()
        Agent.objects.filter(name__startswith="bulk-").delete()
        Account.objects.filter(external_id__startswith="bulk-").delete()
    assert statements[0] == statements[1], statements
