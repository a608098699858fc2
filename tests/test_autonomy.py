"""Earned autonomy: a clean record earns an agent a wider auto-execute ceiling, a poor one a
narrower, always as a proposal a policy owner decides, applied to the policy only once
approved."""

import html
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals.api import proposal_body
from approvals.models import Agent, Proposal
from approvals.roles import POLICY_OWNERS
from approvals.services.acts import no_longer_applies_each
from approvals.services.agents import agent_key_issue
from approvals.services.decisions import (
    proposal_approve,
    proposal_reject,
    proposal_retry,
    proposals_approve,
)
from approvals.services.proposals import (
    Submission,
    proposal_evaluate,
    proposal_submit,
    proposal_withdraw_for_agent,
)
from audit.actors import Actor
from executors.runner import proposal_execute
from feedback.autonomy import advisor_for, autonomy_recommendations_propose
from feedback.models import AutonomyRules
from hitlproject.errors import Conflict, DomainError, NotAllowed
from ledger.models import Account, Campaign
from notifications.models import Notification, NotificationStatus
from notifications.services import notifications_deliver
from policies.models import Policy
from tests.conftest import BID_RAISES, bid_adjustment, decided_from_page, posted_from_page
from tests.factories import backdated, evaluated
from tests.test_proposal_history_elsewhere import elsewhere

GENERAL = "Bid adjustments"  # the demo's policy: bids auto-execute up to 15%


@pytest.fixture
def rules(demo_world) -> AutonomyRules:
    """The policy owners' rules, with the numbers of decisions small enough for a test."""
    rules = AutonomyRules.current()
    rules.widen_min_decisions = rules.narrow_min_decisions = 10
    rules.save()
    return rules


def record(*decisions: str) -> list[Proposal]:
    """optimizer's 20% bid raises on demo, each decided as given ("approve", "edit" or a
    rejection reason), spread over the last 25 days so that no campaign moves twice in a
    day."""
    operator = get_user_model().objects.get(username="operator")
    raises = list(BID_RAISES.items())
    made = []
    for n, decision in enumerate(decisions):
        campaign, bid = raises[n % len(raises)]
        proposal = evaluated(bid_adjustment(bid, campaign))
        if decision == "approve":
            proposal_approve(proposal_id=proposal.pk, reviewer=operator)
        elif decision == "edit":
            smaller = str(Decimal(bid) - Decimal("0.05"))
            proposal_approve(
                proposal_id=proposal.pk,
                reviewer=operator,
                edited_payload={"campaign": campaign, "new_bid": smaller},
            )
        else:
            proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code=decision)
        if decision in ("approve", "edit"):
            # It runs (the next on its campaign is approved only once it has), and the bid is
            # put back, so that every raise in the record is the same 20% one.
            before = Campaign.objects.get(external_id=campaign).bid
            proposal_execute(proposal_id=proposal.pk)
            Campaign.objects.filter(external_id=campaign).update(bid=before)
        made.append(proposal)
    start = timezone.now() - timedelta(days=25)
    for n, proposal in enumerate(made):
        at = start + n * timedelta(days=25) / len(made)
        backdated(proposal, created_at=at, decided_at=at + timedelta(hours=2))
    return made


@pytest.fixture
def recommendation(rules) -> Proposal:
    """A recommendation to widen optimizer's bid ceiling, waiting for a policy owner."""
    record(*["approve"] * 10)
    [made] = autonomy_recommendations_propose()
    return proposal_evaluate(proposal_id=made.pk)


def test_the_rule_a_recommendation_meets_is_said_with_its_thresholds_as_set(rules):
    """A policy owner's rule of 97.5% approved as proposed reads as 97.5%, not "98%": a
    share rounded up said the rule asked more than it does."""
    rules.widen_min_clean_share = Decimal("0.975")
    rules.save()
    record(*["approve"] * 10)

    [recommendation] = autonomy_recommendations_propose()

    assert "(at least 10 decisions, at least 97.5% approved as proposed" in (
        recommendation.rationale
    )


def test_a_one_day_window_is_said_as_one_day(rules):
    """A policy owner's window of one day reads "Over the last 1 day", not "1 days"."""
    rules.window = timedelta(days=1)
    rules.save()
    made = record(*["approve"] * 10)
    start = timezone.now() - timedelta(hours=20)
    for n, proposal in enumerate(made):
        at = start + n * timedelta(hours=1)
        backdated(proposal, created_at=at, decided_at=at + timedelta(minutes=30))

    [recommendation] = autonomy_recommendations_propose()

    assert recommendation.rationale.startswith(
        "Over the last 1 day optimizer made 10 bid adjustment proposals on demo: "
    )


def test_a_clean_record_earns_a_wider_ceiling_once_a_policy_owner_approves(rules, login):
    record(*["approve"] * 10)

    [recommendation] = autonomy_recommendations_propose()

    assert recommendation.agent.name == "autonomy-advisor"
    assert recommendation.summary == (
        "widen optimizer's auto-execute ceiling for bid adjustment on demo from 15.0% to 22.5%"
    )
    # In words, as the console writes an action type (not "10 bid_adjustment proposals") and
    # its counts ("at least 1 decision", never "1 decisions").
    assert recommendation.rationale.startswith(
        "Over the last 30 days optimizer made 10 bid adjustment proposals on demo: "
    )
    assert "(at least 10 decisions, at least 95% approved as proposed" in recommendation.rationale
    assert (
        "What if the ceiling had been 22.5% over those days, every other rule as it is now (it "
        "was 15.0% when "
        "recommended): 10 of the 10 "
        "proposals would have run on their own (0 did), 0 gone to people (10 did)"
    ) in recommendation.rationale
    what_if = recommendation.supporting_data["what_if"]
    assert what_if["auto_approve"] == {"happened": 0, "proposed": 10}
    assert what_if["review"] == {"happened": 10, "proposed": 0}
    assert recommendation.supporting_data["scorecard"]["approved"] == 10
    # Approved, it makes a copy that decides for optimizer on demo in the policy's place.
    assert recommendation.rationale.endswith(
        "\n\nApproved, it does not change “Bid adjustments”: it makes optimizer's own policy on "
        "demo, a copy of it with the new ceiling, which then decides instead of “Bid "
        "adjustments” for optimizer on demo. A later change of “Bid adjustments” (a hard "
        "ceiling, say) does not hold there unless it is made on that copy too."
    )

    recommendation = proposal_evaluate(proposal_id=recommendation.pk)
    assert recommendation.status == "pending_review"
    assert "A change to the policies always waits for a policy owner." in (
        recommendation.verdict_reasons
    )
    assert autonomy_recommendations_propose() == []  # not asked twice

    operator = get_user_model().objects.get(username="operator")
    with pytest.raises(NotAllowed, match="may not decide on policy change proposals"):
        proposal_approve(proposal_id=recommendation.pk, reviewer=operator)
    assert not Policy.objects.filter(agent__name="optimizer").exists()

    owner = login("policy-owner")
    page = owner.get(reverse("admin:approvals_proposal_change", args=[recommendation.pk]))
    assert 'id="approve-form"' in page.text
    assert 'id="withdraw-form"' in page.text  # withdrawing it is as much a policy owner's
    operators_page = login("operator").get(
        reverse("admin:approvals_proposal_change", args=[recommendation.pk])
    )
    assert 'id="approve-form"' not in operators_page.text
    assert 'id="withdraw-form"' not in operators_page.text
    assert 'id="what-if-chart"' in page.text
    assert "What if the ceiling had been 22.5%" in page.text
    decided_from_page(owner, "approve", recommendation.pk)
    assert Proposal.objects.get(pk=recommendation.pk).status == "approved"
    assert not Policy.objects.filter(agent__name="optimizer").exists()  # not until executed

    assert proposal_execute(proposal_id=recommendation.pk).status == "executed"
    earned = Policy.objects.get(agent__name="optimizer", account__external_id="demo")
    assert earned.auto_execute_max_magnitude == Decimal("0.225")
    assert earned.history.get().history_change_reason.startswith(
        f"proposal #{recommendation.pk}: widen optimizer's"
    )
    assert Policy.objects.get(name=GENERAL).auto_execute_max_magnitude == Decimal("0.15")
    # The ceiling is the optimizer's alone: its next 20% raise runs, the copywriter's waits.
    assert evaluated(bid_adjustment("2.40")).status == "approved"
    assert evaluated(bid_adjustment("2.40"), agent="copywriter").status == "pending_review"


@pytest.mark.parametrize(
    "decisions",
    [
        ["approve"] * 8 + ["edit"] * 2,  # 80% as proposed
        ["approve"] * 19 + ["too_aggressive"],  # 95% as proposed, but one was too aggressive
        ["approve"] * 9,  # too few decisions
    ],
)
def test_a_mixed_or_short_record_earns_nothing(rules, decisions):
    record(*decisions)
    assert autonomy_recommendations_propose() == []


def test_rejections_that_climb_narrow_the_ceiling(rules):
    made = record(*["approve"] * 6 + ["wrong_signal"] * 4)

    [recommendation] = autonomy_recommendations_propose()

    assert recommendation.summary == (
        "narrow optimizer's auto-execute ceiling for bid adjustment on demo from 15.0% to 7.5%"
    )
    assert len(made) == recommendation.supporting_data["scorecard"]["decided"]


def test_the_recommendation_counts_the_decisions_in_the_words_of_the_console(rules):
    """The policy owner reads how many were approved as proposed and edited as counts of the
    same decisions (not "50% as proposed, 1 edited"), and the reasons as the decision pages
    name them ("wrong signal"), not as codes ("wrong_signal")."""
    record(*["approve"] * 5 + ["edit"] + ["wrong_signal"] * 3 + ["too_aggressive"])

    [recommendation] = autonomy_recommendations_propose()

    assert (
        "people decided 10, approving 60% (5 as proposed, 1 edited) and rejecting 4 (reasons: "
        "3 wrong signal, 1 too aggressive)."
    ) in recommendation.rationale


def test_the_what_if_says_what_happened_as_what_happened_when_the_ceiling_moved_meanwhile(
    rules, login
):
    """A 12% raise ran on its own under the 15% the policy had then; the ceiling was lowered to
    10% since. The recommendation to widen it to 15% said "What if the ceiling had been 15.0%
    instead of 10.0% over those days: 1 … would have run on their own (instead of 1)" and drew
    that 1 as the bar "Ceiling now": with 10% none would have. What happened is said as such."""
    early = evaluated(bid_adjustment("2.24"))  # brand-search 2.00 → 2.24, +12%
    assert early.status == "approved"
    proposal_execute(proposal_id=early.pk)
    Campaign.objects.filter(external_id="brand-search").update(bid=Decimal("2.00"))
    backdated(early, created_at=timezone.now() - timedelta(days=28))
    general = Policy.objects.get(name=GENERAL)
    general.auto_execute_max_magnitude = Decimal("0.10")
    general.save()
    record(*["approve"] * 10)

    [recommendation] = autonomy_recommendations_propose()

    assert recommendation.summary.endswith("from 10.0% to 15.0%")
    assert (
        "What if the ceiling had been 15.0% over those days, every other rule as it is now (it "
        "was 10.0% when "
        "recommended): 1 of the 11 "
        "proposals would have run on their own (1 did), 10 gone to people (10 did) and 0 been "
        "blocked (0 were)"
    ) in recommendation.rationale
    assert "instead of 10.0%" not in recommendation.rationale
    page = login("policy-owner").get(
        reverse("admin:approvals_proposal_change", args=[recommendation.pk])
    )
    chart = html.unescape(page.text.split('id="what-if-chart"', 1)[1].split("</details>", 1)[0])
    assert "As it happened" in chart
    assert "Ceiling now" not in chart


def test_no_recommendations_while_the_rules_are_off(rules):
    record(*["approve"] * 10)
    rules.is_active = False
    rules.save()
    assert autonomy_recommendations_propose() == []


def test_an_agent_cannot_propose_a_policy_change(optimizer):
    change = bid_adjustment(action_type="policy_change") | {
        "payload": {
            "agent": "optimizer",
            "action_type": "bid_adjustment",
            "from_ceiling": "0.15",
            "to_ceiling": "0.90",
        }
    }
    for path in ("/api/v1/proposals/", "/api/v1/policies/evaluate/"):
        response = optimizer.post(path, change, format="json")
        assert response.status_code == 400, response.content
        assert "Only the platform proposes a policy change" in response.text
    assert not Proposal.objects.exists()


def test_an_agent_s_policy_change_missing_other_fields_is_refused_as_one_not_asked_to_fill_it(
    optimizer,
):
    """A policy change refused for its other fields (no rationale) said what its payload
    lacked (an agent, ceilings), as if it could be proposed once filled in, and not that an
    agent may not propose one at all; alone and in a batch."""
    change = {"action_type": "policy_change", "account": "demo", "payload": {}}
    single = optimizer.post("/api/v1/proposals/", change, format="json")
    batch = optimizer.post("/api/v1/proposals/batch/", [change], format="json")
    for errors in (single.json(), batch.json()[0]["errors"]):
        assert errors == {
            "rationale": ["This field is required."],
            "confidence": ["This field is required."],
            "action_type": ["Only the platform proposes a policy change, not an agent."],
        }
    assert single.status_code == 400
    assert not Proposal.objects.exists()


def test_opening_the_autonomy_rules_first_is_not_recorded_as_setting_them(login, demo_world):
    """On a new platform the rules are there with their defaults before anyone opens them,
    made by its set-up; the history an auditor reads says so, not that the policy owner who
    only opened their page made them (it said "Created … policy-owner (person)"), nor that
    the page's first read did ("the autonomy review")."""
    page = login("policy-owner").get("/admin/feedback/autonomyrules/", follow=True)
    assert page.status_code == 200
    history = login("auditor").get(
        reverse("admin:feedback_autonomyrules_history", args=[AutonomyRules.current().pk])
    )
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", history.text)))
    assert "Created the platform's set-up (system)" in text
    assert "policy-owner (person)" not in text


def test_the_rules_say_what_ticking_recommend_changes_does(login, demo_world):
    """Beside the ticked box the policy owner read "Off: no recommendations.", as though
    recommendations were off."""
    page = html.unescape(
        login("policy-owner").get("/admin/feedback/autonomyrules/", follow=True).text
    )
    assert 'name="is_active" checked' in page or re.search(r'name="is_active"[^>]*checked', page)
    assert "Off: no recommendations" not in page
    assert (
        "Ticked: each day the autonomy review proposes the ceiling changes these rules call "
        "for, each for a policy owner to decide. Unticked: it proposes none."
    ) in page


def test_policy_owners_keep_the_autonomy_rules_and_operators_read_them(login, demo_world):
    url = reverse("admin:feedback_autonomyrules_change", args=[AutonomyRules.current().pk])
    form = {
        "is_active": "on",
        "window": "14 00:00:00",
        "widen_min_decisions": "100",
        # Shares in percent, as a policy's ceilings are typed (fractions had been asked here).
        "widen_min_clean_share": "97",
        "widen_factor": "1.25",
        "widen_max_ceiling": "40",
        "narrow_min_decisions": "20",
        "narrow_min_rejected_share": "30",
        "narrow_factor": "0.5",
        "change_reason": "Two weeks say enough; widen less, and only on a longer record.",
    }
    assert login("operator").post(url, form).status_code == 403
    read = login("operator").get(url)
    assert read.status_code == 200
    # Read only, the window reads as a policy's does, not as Python's "30 days, 0:00:00".
    [shown] = re.findall(r'Window:</label>\s*<div class="readonly">(.*?)</div>', read.text)
    assert shown == "30 days"
    [share] = re.findall(
        r'Widen max ceiling:</label>\s*<div class="readonly">(.*?)</div>', read.text
    )
    assert share == "50%"
    editing = login("policy-owner").get(url).text
    assert re.search(r'name="widen_min_clean_share" value="95"', editing)
    saved = posted_from_page(login("policy-owner"), url, form, follow=True)
    assert saved.redirect_chain == [(url, 302)]
    # Not Django's "The autonomy rules “Autonomy rules” was changed successfully.", and
    # what changed, as the history reads it, in the form's order (not A to Z).
    assert [str(m) for m in saved.context["messages"]] == [
        "The autonomy rules were changed. What changed: Window: 30 days → 14 days; Widen min "
        "decisions: 50 → 100; Widen min clean share: 95% → 97%; Widen factor: 1.50 → 1.25; "
        "Widen max ceiling: 50% → 40%; Narrow min rejected share: 25% → 30%."
    ]
    rules = AutonomyRules.current()
    assert (rules.window, rules.widen_min_decisions) == (timedelta(days=14), 100)
    assert (rules.widen_min_clean_share, rules.widen_max_ceiling) == (
        Decimal("0.970"),
        Decimal("0.400"),
    )
    assert rules.narrow_min_rejected_share == Decimal("0.300")
    history = (
        login("auditor").get(reverse("admin:feedback_autonomyrules_history", args=[rules.pk])).text
    )
    said = " ".join(html.unescape(history).split())
    assert "Widen min clean share:</strong> 95% → 97%" in said and "0.950" not in said
    refused = posted_from_page(login("policy-owner"), url, form | {"widen_max_ceiling": "140"})
    assert "Enter a percentage from 0 to 100 (95 for 95%)." in refused.text
    assert AutonomyRules.current().widen_max_ceiling == Decimal("0.400")
    changed = rules.history.latest("history_date")
    assert changed.history_actor == "policy-owner"
    assert changed.history_change_reason == form["change_reason"]  # said why, as for policies


def test_the_owner_of_the_agent_concerned_may_not_decide_its_autonomy(recommendation):
    owner = get_user_model().objects.get(username="policy-owner")
    Agent.objects.filter(name="optimizer").update(owner=owner)
    with pytest.raises(NotAllowed, match=r"owns agent optimizer, which proposal #\d+ concerns"):
        proposal_approve(proposal_id=recommendation.pk, reviewer=owner)


def test_a_policy_owner_may_edit_the_new_ceiling_and_nothing_else(recommendation):
    owner = get_user_model().objects.get(username="policy-owner")
    payload = dict(recommendation.payload)
    with pytest.raises(DomainError, match="Only to_ceiling may be edited here, not agent"):
        proposal_approve(
            proposal_id=recommendation.pk,
            reviewer=owner,
            edited_payload=payload | {"agent": "copywriter"},
        )
    with pytest.raises(DomainError, match="to_ceiling: Ensure this value is less than or equal"):
        proposal_approve(
            proposal_id=recommendation.pk,
            reviewer=owner,
            edited_payload=payload | {"to_ceiling": "99999999"},
        )
    assert Proposal.objects.get(pk=recommendation.pk).status == "pending_review"

    narrower = payload | {"to_ceiling": "0.2"}
    proposal_approve(proposal_id=recommendation.pk, reviewer=owner, edited_payload=narrower)
    proposal_execute(proposal_id=recommendation.pk)
    assert Policy.objects.get(agent__name="optimizer").auto_execute_max_magnitude == Decimal("0.2")


def test_the_page_says_what_an_edit_of_the_new_ceiling_changed_in_percent(recommendation, login):
    # Under "New auto-execute ceiling for optimizer's bid adjustment (%)" it read
    # "0.225000 0.200000": the fractions the payload holds, not the percentages the owner typed.
    owner = login("policy-owner")
    page = reverse("admin:approvals_proposal_change", args=[recommendation.pk])
    decided_from_page(
        owner,
        "edit-approve",
        recommendation.pk,
        {"edit-to_ceiling": "20", "edit-note": "Half as far."},
    )
    assert Proposal.objects.get(pk=recommendation.pk).payload["to_ceiling"] == "0.200000"

    [(_, fields)] = owner.get(page).context["edit_changes"]

    assert fields == [
        (
            "New auto-execute ceiling for optimizer's bid adjustment (%)",
            [("removed", "22.5%"), ("added", "20%")],
        )
    ]


def test_a_changed_ceiling_fails_the_change_and_only_a_policy_owner_retries_it(
    recommendation,
):
    owner = get_user_model().objects.get(username="policy-owner")
    operator = get_user_model().objects.get(username="operator")
    proposal_approve(proposal_id=recommendation.pk, reviewer=owner)
    general = Policy.objects.get(name=GENERAL)
    general.auto_execute_max_magnitude = Decimal("0.12")
    general.save()

    failed = proposal_execute(proposal_id=recommendation.pk)

    assert failed.status == "failed"
    # In the words the policy's page writes its ceilings, not as the payload holds them
    # ("0.120000, not 0.150000").
    assert failed.executions.get().error == "The ceiling in force is now 12%, not 15% as proposed."
    with pytest.raises(NotAllowed, match="may not decide on policy change proposals"):
        proposal_retry(proposal_id=recommendation.pk, reviewer=operator)
    # Retried while the ceiling is still 12%, it would only fail again: not sent.
    with pytest.raises(Conflict, match="A retry would fail again"):
        proposal_retry(proposal_id=recommendation.pk, reviewer=owner)
    assert Proposal.objects.get(pk=recommendation.pk).status == "failed"
    general.auto_execute_max_magnitude = Decimal("0.15")
    general.save()
    assert proposal_retry(proposal_id=recommendation.pk, reviewer=owner).status == "approved"


def test_a_recommendation_whose_ceiling_moved_since_is_not_approved_and_its_page_says_so(
    recommendation, login
):
    """Someone moved the ceiling while the recommendation waited: its page says so, with the
    ceiling then and now, to whoever reads it; it offers no approval, and an approval posted
    anyway is refused in those words, not answered "sent to be executed" before failing."""
    general = Policy.objects.get(name=GENERAL)
    general.auto_execute_max_magnitude = Decimal("0.20")
    general.save()
    page = reverse("admin:approvals_proposal_change", args=[recommendation.pk])
    moved = (
        "optimizer's auto-execute ceiling for bid adjustment on demo has changed since this was "
        "proposed: it was 15% then, and is 20% now (policy “Bid adjustments”, version 2)"
    )
    owner = login("policy-owner")

    shown = owner.get(page)

    [note] = re.findall(r'<p class="errornote" id="no-longer-applies">(.*?)</p>', shown.text)
    assert html.unescape(note) == (
        f"Proposal #{recommendation.pk} no longer applies: {moved}. Approving it would not "
        "carry it out: its execution would refuse it. It can be rejected or withdrawn."
    )
    assert 'id="approve-form"' not in shown.text
    assert 'id="edit-approve-form"' not in shown.text
    assert 'id="reject-form"' in shown.text and 'id="withdraw-form"' in shown.text
    assert moved in html.unescape(login("operator").get(page).text)  # read by all who read it

    for act, form in (("approve", {}), ("edit-approve", {"edit-to_ceiling": "21"})):
        answer = decided_from_page(owner, act, recommendation.pk, form, follow=True)
        said = [str(message) for message in answer.context["messages"]]
        assert not any("sent to be executed" in message for message in said)
        assert any(moved in message for message in said), said
    recommendation.refresh_from_db()
    assert recommendation.status == "pending_review"
    assert not recommendation.decisions.exists()
    assert not Policy.objects.filter(agent__name="optimizer").exists()


def test_an_executed_recommendation_says_which_policy_version_it_wrote(recommendation, login):
    """The execution's row says what it did as the policy's history has it: the policy it
    created or changed (a link to it), the version as its page counts them, and the ceiling
    before and after; never "Succeeded — —"."""
    owner = get_user_model().objects.get(username="policy-owner")
    proposal_approve(proposal_id=recommendation.pk, reviewer=owner)
    assert proposal_execute(proposal_id=recommendation.pk).status == "executed"
    earned = Policy.objects.get(agent__name="optimizer")
    page = login("auditor").get(
        reverse("admin:approvals_proposal_change", args=[recommendation.pk])
    )

    [row] = re.findall(r'<td data-label="Status">Succeeded</td>(.*?)</tr>', page.text, re.S)

    cells = re.findall(r'<td[^>]*data-label="(Before|After)">(.*?)</td>', row, re.S)
    assert [(label, html.unescape(re.sub(r"<[^>]+>", "", text))) for label, text in cells] == [
        ("Before", "Auto-execute ceiling in force 15%"),
        (
            "After",
            "Policy “Bid adjustments: optimizer on demo” created as version 1: auto-execute "
            f"ceiling 15% → 22.5%. Made from “Bid adjustments” by proposal #{recommendation.pk}. "
            "For optimizer on demo it decides instead of “Bid adjustments”: a later change of "
            "that policy does not hold here unless it is made here too.",
        ),
    ]
    assert reverse("admin:policies_policy_change", args=[earned.pk]) in row
    # The attempt's own page says the same.
    attempt = recommendation.executions.get(status="succeeded")
    attempt_page = login("auditor").get(
        reverse("admin:approvals_execution_change", args=[attempt.pk])
    )
    assert (
        "Policy “Bid adjustments: optimizer on demo” created as version 1: auto-execute ceiling "
        "15% → 22.5%."
    ) in html.unescape(re.sub(r"<[^>]+>", "", attempt_page.text))


def test_an_executed_recommendation_s_history_says_which_policy_version_it_wrote(
    recommendation, login
):
    """The proposal's history, where an auditor reads what each attempt left, said of the
    attempt that wrote the policy "succeeded; after it: —", as if it had done nothing."""
    owner = get_user_model().objects.get(username="policy-owner")
    proposal_approve(proposal_id=recommendation.pk, reviewer=owner)
    assert proposal_execute(proposal_id=recommendation.pk).status == "executed"
    url = reverse("admin:approvals_proposal_history", args=[recommendation.pk])

    page = html.unescape(login("auditor").get(url).content.decode())

    assert (
        "Execution attempt 1 by the ledger executor: succeeded; after it: Policy “Bid "
        "adjustments: optimizer on demo” created as version 1: auto-execute ceiling 15% → "
        f"22.5%. Made from “Bid adjustments” by proposal #{recommendation.pk}. For optimizer on "
        "demo it decides instead of “Bid adjustments”: a later change of that policy does not "
        "hold here unless it is made here too."
    ) in [what for what, _ in elsewhere(page)]


def test_an_executed_recommendation_s_history_says_the_policy_it_wrote_was_deleted_since(
    recommendation, login
):
    """The proposal's history said what the attempt wrote in other words than its page, and
    of a policy deleted since it said nothing: its page says "(deleted since)"."""
    owner = get_user_model().objects.get(username="policy-owner")
    proposal_approve(proposal_id=recommendation.pk, reviewer=owner)
    assert proposal_execute(proposal_id=recommendation.pk).status == "executed"
    Policy.objects.get(agent__name="optimizer").delete()
    url = reverse("admin:approvals_proposal_history", args=[recommendation.pk])

    page = html.unescape(login("auditor").get(url).content.decode())

    [attempt] = [what for what, _ in elsewhere(page) if what.startswith("Execution attempt 1")]
    assert attempt.startswith(
        "Execution attempt 1 by the ledger executor: succeeded; after it: Policy “Bid "
        "adjustments: optimizer on demo” (deleted since) created as version 1: auto-execute "
        "ceiling 15% → 22.5%."
    )


def test_a_recommendation_executed_on_the_agents_own_policy_says_its_new_version(
    recommendation, login
):
    own = Policy.objects.get(name=GENERAL)
    own.pk = None
    own.name, own.agent, own.account = (
        "Optimizer's bids on demo",
        Agent.objects.get(name="optimizer"),
        recommendation.account,
    )
    own.save()
    owner = get_user_model().objects.get(username="policy-owner")
    proposal_approve(proposal_id=recommendation.pk, reviewer=owner)
    assert proposal_execute(proposal_id=recommendation.pk).status == "executed"
    page = login("policy-owner").get(
        reverse("admin:approvals_proposal_change", args=[recommendation.pk])
    )

    [after] = re.findall(r'<td class="policy-written" data-label="After">(.*?)</td>', page.text)

    assert html.unescape(re.sub(r"<[^>]+>", "", after)) == (
        "Policy “Optimizer's bids on demo” saved as version 2: auto-execute ceiling 15% → 22.5%."
    )
    assert reverse("admin:policies_policy_change", args=[own.pk]) in after


def test_an_agent_as_wide_as_the_rules_allow_is_left_alone(rules):
    record(*["approve"] * 10)
    Policy.objects.filter(name=GENERAL).update(auto_execute_max_magnitude=Decimal("0.8"))
    assert autonomy_recommendations_propose() == []


def test_a_withdrawn_recommendation_does_not_stand_in_the_way_of_the_next(recommendation):
    operator = get_user_model().objects.get(username="operator")
    with pytest.raises(NotAllowed, match="may not decide on policy change proposals"):
        proposal_withdraw_for_agent(proposal_id=recommendation.pk, reviewer=operator)
    owner = get_user_model().objects.get(username="policy-owner")
    proposal_withdraw_for_agent(proposal_id=recommendation.pk, reviewer=owner)
    [again] = autonomy_recommendations_propose()
    assert again.payload == recommendation.payload


def test_the_platforms_own_agent_gets_no_api_key(recommendation):
    with pytest.raises(DomainError, match="platform's own agent; it has no API keys"):
        agent_key_issue(agent=recommendation.agent, actor=Actor.system("test"))


def test_policy_owners_read_and_type_the_rules_window_in_words(login, demo_world):
    # The form showed and took only Django's "30 00:00:00"; "6 weeks" was refused.
    url = reverse("admin:feedback_autonomyrules_change", args=[AutonomyRules.current().pk])
    owner = login("policy-owner")
    page = owner.get(url)
    form = page.context["adminform"].form
    assert form["window"].value() == "30 days"
    assert 'value="30 days"' in page.text
    typed = {name: form[name].value() for name in form.fields} | {
        "window": "6 weeks",
        "change_reason": "A longer record before any change.",
    }
    typed["is_active"] = "on"
    assert owner.post(url, typed).status_code == 302
    assert AutonomyRules.current().window == timedelta(weeks=6)


@pytest.mark.parametrize(
    "window, said",
    [
        ("0", "Enter a duration such as “90 minutes”, “36 hours” or “7 days”."),
        # Not Python's timedelta: "Ensure this value is greater than or equal to 1 day,
        # 0:00:00." and "… less than or equal to 365 days, 0:00:00."
        ("0 days", "At least 1 day."),
        ("400 00:00:00", "At most 365 days."),
        ("400 days", "At most 365 days."),
    ],
)
def test_the_rules_window_is_a_day_to_a_year(login, demo_world, window, said):
    url = reverse("admin:feedback_autonomyrules_change", args=[AutonomyRules.current().pk])
    page = login("policy-owner").get(url)
    form = {
        field: page.context["adminform"].form.initial.get(field, "")
        for field in page.context["adminform"].form.fields
    }
    response = posted_from_page(
        login("policy-owner"),
        url,
        {**form, "is_active": "on", "window": window, "change_reason": "Try it."},
    )
    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors["window"] == [said]
    assert AutonomyRules.current().window == timedelta(days=30)


@pytest.mark.parametrize("field", ["widen_min_decisions", "narrow_min_decisions"])
def test_a_rule_judges_at_least_one_decision(login, demo_world, field):
    """The review judges no record without a decision by a person: "after at least 0
    decisions" was saved, and read as a rule the review does not follow."""
    url = reverse("admin:feedback_autonomyrules_change", args=[AutonomyRules.current().pk])
    owner = login("policy-owner")
    form = owner.get(url).context["adminform"].form
    typed = {name: form[name].value() for name in form.fields} | {
        "is_active": "on",
        field: "0",
        "change_reason": "Try it.",
    }

    response = posted_from_page(owner, url, typed)

    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors[field] == [
        "Ensure this value is greater than or equal to 1."
    ]
    assert not AutonomyRules.history.filter(history_type="~").exists()


def test_the_widest_ceiling_says_that_0_never_widens(login, demo_world):
    url = reverse("admin:feedback_autonomyrules_change", args=[AutonomyRules.current().pk])
    page = login("policy-owner").get(url)
    assert "0 = never widen" in page.context["adminform"].form["widen_max_ceiling"].help_text


def settings_with_help(page: str) -> dict[str, str]:
    """Each setting a rules page shows, by its label, with the help under it ("" if none)."""
    said = {}
    for row in page.split('<div class="form-row')[1:]:
        label = re.search(r"<label[^>]*>(.*?):?</label>", row, re.S)
        help_ = re.search(r'<div class="help"[^>]*>\s*<div>(.*?)</div>', row, re.S)
        if label:
            said[html.unescape(label.group(1)).rstrip(":")] = (
                html.unescape(help_.group(1)).strip() if help_ else ""
            )
    return said


def test_the_rules_read_only_say_what_the_form_says_of_each_setting(login, demo_world):
    """An auditor reading the rules read "Widen min clean share: 95%", "Widen max ceiling:
    50%", "Narrow min rejected share: 25%" and "Window: 30 days" with no help under them,
    so the rules' sentence ("…this many decisions…" / "…of which at least this share
    approved unedited…") read broken where the policy owner's form read it whole: each
    setting says what the form says of it, on its page and on a past version's."""
    rules = AutonomyRules.current()
    url = reverse("admin:feedback_autonomyrules_change", args=[rules.pk])
    form = settings_with_help(login("policy-owner").get(url).text)
    assert form["Widen min clean share"] == (
        "…of which at least this share approved unedited, in percent (95 = 95%)…"
    )
    for reader in ("auditor", "operator"):
        read = settings_with_help(login(reader).get(url).text)
        assert read == {name: said for name, said in form.items() if name in read}
        assert set(form) - set(read) == {"Why this change", "Seen version"}  # asked of editors
        assert all(read.values())
    version = rules.history.latest("history_id")
    past = reverse(
        "admin:feedback_autonomyrules_simple_history", args=[rules.pk, version.history_id]
    )
    assert settings_with_help(login("auditor").get(past).text)["Widen max ceiling"] == (
        "…up to at most this ceiling, in percent (50 = 50%; 0 = never widen)."
    )


@pytest.mark.parametrize("share", ["NaN", "sNaN", "-NaN", "Infinity"])
def test_a_share_that_is_not_a_number_is_refused_in_the_form(login, demo_world, share):
    # "NaN" reached a comparison Python's decimals refuse to make: a server error, not a form.
    url = reverse("admin:feedback_autonomyrules_change", args=[AutonomyRules.current().pk])
    owner = login("policy-owner")
    form = owner.get(url).context["adminform"].form
    typed = {name: form[name].value() for name in form.fields} | {
        "is_active": "on",
        "widen_min_clean_share": share,
        "change_reason": "Try it.",
    }

    response = owner.post(url, typed)

    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors["widen_min_clean_share"] == [
        "Enter a percentage in the digits 0–9, with a point for decimals (95 or 95.5)."
    ]
    assert AutonomyRules.current().widen_min_clean_share == Decimal("0.950")
    assert not AutonomyRules.history.filter(history_type="~").exists()


def test_a_recommendation_is_told_to_the_policy_owners_who_decide_it(recommendation):
    """The demo's routes tell the policy owners of a proposed policy change, which only they
    may decide (the operators' route tells the operators of it too, as of every proposal)."""
    told = Notification.objects.filter(proposal=recommendation).select_related("recipient")
    assert {message.recipient.username for message in told} == {"operator", "policy-owner"}
    [theirs] = [message for message in told if message.recipient.username == "policy-owner"]
    assert theirs.route.name == "Demo: policy changes waiting, to the policy owners"


def test_a_ceiling_is_never_widened_past_the_policy_s_hard_ceiling(rules, operators):
    """The bid policy refuses outright what is above 21%: its auto-execute ceiling is widened
    to 21%, not to 22.5%, where what lay between would be refused, never run. A hard ceiling
    lowered to 20% once the widening is approved fails its execution, in words, and changes
    nothing."""
    Policy.objects.filter(action_type="bid_adjustment").update(block_above_magnitude="0.21")
    record(*["approve"] * 10)

    [widening] = autonomy_recommendations_propose()

    assert Decimal(widening.payload["to_ceiling"]) == Decimal("0.21")
    owner = get_user_model().objects.get(username="policy-owner")
    proposal_approve(proposal_id=proposal_evaluate(proposal_id=widening.pk).pk, reviewer=owner)
    Policy.objects.filter(action_type="bid_adjustment").update(block_above_magnitude="0.20")
    failed = proposal_execute(proposal_id=widening.pk)
    assert failed.status == "failed"
    assert "The hard ceiling is below the auto-execute ceiling" in failed.executions.get().error
    assert not Policy.objects.filter(agent__name="optimizer").exists()


def asked_whether_it_still_applies(queries: CaptureQueriesContext) -> int:
    """How many times the statements ran ask whether a policy change still applies: each
    asking opens by reading the agents their payloads name, by name
    (``PolicyChange.no_longer_applies_each``)."""
    return sum(
        'WHERE "approvals_agent"."name" IN (' in query["sql"] for query in queries.captured_queries
    )


def test_a_recommendation_s_page_and_its_approval_ask_once_whether_it_still_applies(
    recommendation, login
):
    """Its page asked it three times (for its approval, for the line that says so, and for
    what approving it would end once executed), an approval posted twice (the console's
    check of the role, then the service's), and one given with others twice (their plan,
    then each under its lock): the policy in force read again each time, to say the same."""
    Policy.objects.filter(name=GENERAL).update(auto_execute_max_magnitude=Decimal("0.20"))
    owner = login("policy-owner")
    page = reverse("admin:approvals_proposal_change", args=[recommendation.pk])
    gone = f"Proposal #{recommendation.pk} no longer applies: optimizer's auto-execute ceiling"

    with CaptureQueriesContext(connection) as read:
        shown = owner.get(page)

    [note] = re.findall(r'<p class="errornote" id="no-longer-applies">(.*?)</p>', shown.text)
    assert html.unescape(note).startswith(gone)
    assert 'id="approve-form"' not in shown.text
    assert asked_whether_it_still_applies(read) == 1

    with CaptureQueriesContext(connection) as approving:
        answer = owner.post(
            reverse("admin:approvals_proposal_approve", args=[recommendation.pk]),
            {"seen": shown.context["seen"]},  # as the page shown above would send it
            follow=True,
        )

    assert any(gone in str(message) for message in answer.context["messages"])
    assert asked_whether_it_still_applies(approving) == 2  # the POST, and the page after it

    with CaptureQueriesContext(connection) as approving_together:
        decided = proposals_approve(
            proposal_ids=[recommendation.pk],
            reviewer=get_user_model().objects.get(username="policy-owner"),
        )

    [refused] = decided.refused
    assert refused.message.startswith(gone)
    assert asked_whether_it_still_applies(approving_together) == 1
    assert Proposal.objects.get(pk=recommendation.pk).status == "pending_review"


def test_a_recommendation_told_to_each_policy_owner_asks_once_whether_it_still_applies(rules):
    """Its messages to the policy owners, sent together, each say that it no longer applies,
    read once for all of them, not once a person."""
    second = get_user_model().objects.create_user(
        "second-owner", email="second-owner@example.com", is_staff=True
    )
    second.groups.add(Group.objects.get(name=POLICY_OWNERS))
    record(*["approve"] * 10)
    [made] = autonomy_recommendations_propose()
    proposal_evaluate(proposal_id=made.pk)
    Policy.objects.filter(name=GENERAL).update(auto_execute_max_magnitude=Decimal("0.20"))
    owners = Notification.objects.filter(
        proposal=made, recipient__groups__name=POLICY_OWNERS
    ).values_list("pk", flat=True)
    assert len(owners) == 2

    with CaptureQueriesContext(connection) as sending:
        sent = notifications_deliver(notification_ids=list(owners))

    assert {n.status for n in sent} == {NotificationStatus.SENT}
    for address in ("policy-owner@example.com", "second-owner@example.com"):
        [told] = [message for message in mail.outbox if message.to == [address]]
        assert f"Proposal #{made.pk} no longer applies" in told.body
    assert asked_whether_it_still_applies(sending) == 1


def test_whether_policy_changes_still_apply_is_read_at_once_whatever_their_number(rules):
    """A page, a decision set or a sending asks it of all their policy changes at once
    (``no_longer_applies_each``): it read the agent, the policy in force and the count of its
    versions again for each of them, 4 statements a change. Now as many for seven changes, of
    two agents on two accounts and of three action types, as for one; each answered as alone."""
    other = Account.objects.create(
        external_id="other", name="Other", channel="meta", currency="EUR"
    )
    for agent in Agent.objects.filter(name__in=["optimizer", "copywriter"]):
        agent.accounts.add(other)
    Policy.objects.filter(name=GENERAL).update(auto_execute_max_magnitude=Decimal("0.20"))
    asked = [
        # (account, agent, action type, the ceiling it was proposed against)
        ("demo", "optimizer", "bid_adjustment", "0.15"),  # moved since: 20% now
        ("demo", "copywriter", "bid_adjustment", "0.20"),  # still applies
        ("other", "optimizer", "budget_change", "0.10"),
        ("other", "copywriter", "budget_change", "0.05"),
        ("demo", "optimizer", "budget_reallocation", "0.10"),
        ("other", "copywriter", "budget_reallocation", "0.12"),
        ("other", "optimizer", "bid_adjustment", "0.15"),
    ]
    made = [
        proposal_submit(
            agent=advisor_for(Account.objects.get(external_id=account)),
            submission=Submission(
                account=account,
                action_type="policy_change",
                payload={
                    "agent": agent,
                    "action_type": action_type,
                    "from_ceiling": ceiling,
                    "to_ceiling": "0.30",
                },
                rationale="Its record speaks for it.",
                confidence=0.9,
            ),
        ).pk
        for account, agent, action_type, ceiling in asked
    ]

    def read(ids: list[int]) -> tuple[dict[int, str], int]:
        proposals = list(Proposal.objects.filter(pk__in=ids))  # their accounts not read yet
        with CaptureQueriesContext(connection) as reading:
            gone = no_longer_applies_each(proposals)
        return {pk: since.no_longer_applies for pk, since in gone.items()}, len(reading)

    alone = {}
    for pk in made:
        said, statements_for_one = read([pk])
        alone |= said
    said, statements_for_all = read(made)

    assert statements_for_all == statements_for_one
    assert said == alone
    assert [bool(said[pk]) for pk in made] == [True, False, False, True, False, True, True]
    assert said[made[0]] == (
        "optimizer's auto-execute ceiling for bid adjustment on demo has changed since this was "
        f"proposed: it was 15% then, and is 20% now (policy “{GENERAL}”, version "
        f"{Policy.history.filter(name=GENERAL).count()})"
    )
    assert said[made[3]].startswith(
        "copywriter's auto-execute ceiling for budget change on other has changed since"
    )


def test_an_executed_recommendation_s_attempt_page_reads_what_it_wrote_once(recommendation, login):
    """The attempt's Before and After each read the policy's history again for the same
    version it wrote."""
    owner = get_user_model().objects.get(username="policy-owner")
    proposal_approve(proposal_id=recommendation.pk, reviewer=owner)
    assert proposal_execute(proposal_id=recommendation.pk).status == "executed"
    attempt = recommendation.executions.get(status="succeeded")

    with CaptureQueriesContext(connection) as read:
        page = login("auditor").get(reverse("admin:approvals_execution_change", args=[attempt.pk]))

    shown = html.unescape(re.sub(r"<[^>]+>", "", page.text))
    assert "Auto-execute ceiling in force 15%" in shown
    assert "created as version 1: auto-execute ceiling 15% → 22.5%." in shown
    written = [q for q in read.captured_queries if '"history_actor" = ' in q["sql"]]
    assert len(written) == 1, [q["sql"] for q in written]


def test_a_recommendation_for_an_action_type_no_longer_known_says_so_and_changes_nothing(
    recommendation, login
):
    """A recommendation made for an action type since removed from the platform's code: its
    page was a server error (its ceilings' unit asked of no type). It says plainly that the
    type is gone, offers no approval, refuses one posted in those words, tells the policy
    owners so, and an approval given before the type went fails its execution in those words,
    writing no policy."""
    Proposal.objects.filter(pk=recommendation.pk).update(
        payload={**recommendation.payload, "action_type": "retired_type"}
    )
    gone = "there is no action type “retired type” any more"
    said = (
        f"Proposal #{recommendation.pk} no longer applies: {gone}. Approving it would not carry "
        "it out: its execution would refuse it. It can be rejected or withdrawn."
    )
    owner = login("policy-owner")
    page = reverse("admin:approvals_proposal_change", args=[recommendation.pk])

    shown = owner.get(page)

    assert shown.status_code == 200
    [note] = re.findall(r'<p class="errornote" id="no-longer-applies">(.*?)</p>', shown.text)
    assert html.unescape(note) == said
    assert 'id="approve-form"' not in shown.text
    assert login("operator").get(page).status_code == 200
    assert owner.get(reverse("admin:approvals_proposal_changelist")).status_code == 200
    answer = decided_from_page(owner, "approve", recommendation.pk, follow=True)
    assert said in [str(message) for message in answer.context["messages"]]
    [told] = Notification.objects.filter(
        proposal=recommendation, recipient__username="policy-owner"
    )
    Notification.objects.filter(pk=told.pk).update(
        status=NotificationStatus.PENDING, next_attempt_at=timezone.now()
    )
    [sent] = notifications_deliver(notification_ids=[told.pk])
    assert sent.status == NotificationStatus.SENT
    [message] = [message for message in mail.outbox if message.to == ["policy-owner@example.com"]]
    assert said in " ".join(message.body.split())

    Proposal.objects.filter(pk=recommendation.pk).update(payload=recommendation.payload)
    proposal_approve(
        proposal_id=recommendation.pk,
        reviewer=get_user_model().objects.get(username="policy-owner"),
    )
    Proposal.objects.filter(pk=recommendation.pk).update(
        payload={**recommendation.payload, "action_type": "retired_type"}
    )
    failed = proposal_execute(proposal_id=recommendation.pk)
    assert failed.status == "failed"
    assert failed.executions.get().error == "There is no action type “retired type” any more."
    assert not Policy.objects.filter(agent__name="optimizer").exists()
    assert owner.get(page).status_code == 200


def test_a_recommendation_s_confidence_reads_as_the_share_it_is(rules, login):
    """Narrowing on 4 rejections of 12: the recommendation's confidence, how strongly the
    record speaks for it, is a third. Its page read "confidence 0.3333333333333333" (the
    float it was computed as), in its rationale's heading and its field; it reads as the
    share, and what it is a share of. What is sent of it (the API's body) keeps the number."""
    record(*["approve"] * 8 + ["wrong_signal"] * 4)
    [made] = autonomy_recommendations_propose()
    assert made.confidence == pytest.approx(1 / 3)

    page = html.unescape(
        login("policy-owner").get(reverse("admin:approvals_proposal_change", args=[made.pk])).text
    )

    said = "33%: of optimizer's bid adjustment proposals people decided, the share rejected"
    assert f"<strong>What autonomy-advisor says</strong> (confidence {said}):" in page
    field = page.split("field-confidence_display")[1].split('class="readonly">')[1]
    assert field.startswith(f"{said}</div>")
    assert "0.333" not in page
    assert proposal_body(made)["confidence"] == made.confidence


def test_a_recommendations_page_says_a_fixed_rule_sends_it_to_a_person(recommendation, login):
    # It read "Routed by no policy: none matched it, so a person decides.", as if a policy
    # could have matched it: a change to the policies goes to a person by a fixed rule.
    page = login("policy-owner").get(
        reverse("admin:approvals_proposal_change", args=[recommendation.pk])
    )
    routed_by = page.text.split('id="routed-by">')[1].split("</p>")[0]

    assert " ".join(html.unescape(re.sub(r"<[^>]+>", "", routed_by)).split()) == (
        "Routed by a fixed rule, not a policy. A change to the policies always waits for a "
        "policy owner."
    )
