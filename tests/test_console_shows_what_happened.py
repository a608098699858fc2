"""What the operator and the auditor see is what was proposed, decided and done (issue 11,
points 1 to 3): recorded figures, never recomputed against today's ledger or policies."""

import html
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals.models import Decision, Proposal
from approvals.selectors import superseded_said, with_ended_recorded, withdrawal_seen
from approvals.services.decisions import proposal_approve, proposal_reject, proposal_retry
from executors.runner import proposal_execute
from hitlproject.vocabulary import PARTLY_CARRIED_OUT
from ledger.models import Account, Campaign, Creative
from notifications.digests import notifications_send_digests
from notifications.models import Notification, NotificationKind, NotificationStatus
from notifications.services import notifications_deliver, outcome_text
from policies.models import KillSwitch, Policy
from tests.conftest import (
    bid_adjustment,
    creative,
    creative_batch,
    decided_from_page,
    reallocation,
    seen_on_confirmation,
    target_cpa_strategy,
)
from tests.factories import backdated, evaluated

CHANGELIST = reverse("admin:approvals_proposal_changelist")


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def page_of(client, proposal: Proposal):
    return client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))


def test_an_executed_proposal_shows_the_move_it_made_not_one_against_todays_ledger(operator, login):
    reference = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=reference.pk, reviewer=operator)
    assert proposal_execute(proposal_id=reference.pk).status == "executed"
    # Later, the same move again: the ledger is 440.00 / 1060.00 now.
    again = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=again.pk, reviewer=operator)
    proposal_execute(proposal_id=again.pk)
    assert Campaign.objects.get(external_id="brand-search").daily_budget == Decimal("440.00")

    page = page_of(login("auditor"), reference)

    states = page.context["states"]
    assert states.columns == [
        "Campaign",
        "Field",
        "When proposed",
        "Proposed",
        "Before execution",
        "After execution",
    ]
    assert states.rows == [
        ["brand-search", "daily budget", "1000.00", "720.00", "1000.00", "720.00"],
        ["generic-search", "daily budget", "500.00", "780.00", "500.00", "780.00"],
    ]
    assert "440.00" not in page.text and "1060.00" not in page.text
    # Its execution, as a person reads it, not as a Python dict.
    executions = page.text[page.text.index('id="proposal-executions"') :]
    assert "brand-search daily budget 1000.00; generic-search daily budget 500.00" in executions
    assert "brand-search daily budget 720.00; generic-search daily budget 780.00" in executions
    assert "{&#x27;" not in executions


def test_the_table_of_what_a_proposal_changes_is_headed_by_what_happened(operator, login):
    """A waiting proposal has changed nothing and may never: its table is what it would
    change; once executed, what it changed; once it never will run, what it would have
    changed. It was headed "Proposed, approved and done" over a proposal none had approved."""

    def heading(proposal: Proposal) -> str:
        page = page_of(login("auditor"), proposal).text
        return page.split('id="proposal-states-heading">')[1].split("</h3>")[0]

    waiting = evaluated(reallocation("280.00"))
    assert heading(waiting) == "What it would change"
    proposal_approve(proposal_id=waiting.pk, reviewer=operator)
    assert proposal_execute(proposal_id=waiting.pk).status == "executed"
    assert heading(waiting) == "What it changed"
    rejected = evaluated(reallocation("280.00"))
    proposal_reject(proposal_id=rejected.pk, reviewer=operator, reason_code="too_aggressive")
    assert heading(rejected) == "What it would have changed"


def test_a_failed_proposal_part_of_which_the_channel_carried_out_says_so_over_its_table(login):
    """A creative batch the channel took in part fails, not retried: "What it would change"
    alone read as if nothing had changed, with one creative live."""
    failed = failed_budget_raise()
    failed.executions.update(error=f"{PARTLY_CARRIED_OUT}creative 2 refused.")

    page = page_of(login("auditor"), failed).text

    heading = page.split('id="proposal-states-heading">')[1].split("</h3>")[0]
    assert heading == (
        "What it would change (part of it was carried out on the channel: see its executions)"
    )


def test_an_edit_shows_what_was_proposed_beside_what_was_approved(operator, login):
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=operator,
        edited_payload={**proposal.payload, "amount": "200.00"},
    )

    page = page_of(login("operator"), proposal)

    assert page.context["states"].rows[0][:5] == [
        "brand-search",
        "daily budget",
        "1000.00",
        "720.00",  # what the agent proposed
        "800.00",  # what was approved
    ]
    assert "As edited" in page.context["states"].columns
    # The heading is the agent's proposal; the approved action is said beside it.
    assert "move 280.00 USD/day from brand-search to generic-search (28.0%)" in page.text
    assert "move 200.00 USD/day from brand-search to generic-search (20.0%)" in page.text


def test_an_edit_made_after_the_ledger_moved_does_not_claim_the_moved_figure_as_its_own(
    operator, login
):
    """A reallocation of 280.00 a day from brand-search (1000.00 when proposed). The budget
    moved to 1100.00 before an operator edited the amount to 250.00: the column of what was
    approved says it is the action as edited and re-assessed, not that the edit alone made
    brand-search's budget 850.00."""
    moved = evaluated(reallocation("280.00"))
    Campaign.objects.filter(external_id="brand-search").update(daily_budget="1100.00")
    proposal_approve(
        proposal_id=moved.pk, reviewer=operator, edited_payload={**moved.payload, "amount": "250"}
    )

    states = page_of(login("operator"), moved).context["states"]

    assert states.columns[2:5] == ["When proposed", "Proposed", "As edited and re-assessed"]
    assert [row[:5] for row in states.rows] == [
        ["brand-search", "daily budget", "1000.00", "720.00", "850.00"],
        ["generic-search", "daily budget", "500.00", "780.00", "750.00"],
    ]


def failed_budget_raise(
    campaign: str = "generic-search", budget: str = "525.00", cap: str = "510.00"
) -> Proposal:
    """A 5% raise of a campaign's budget its policy approved with no person, failed by the
    ledger's executor: the campaign's cap was set below it before it ran."""
    raise_ = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": campaign, "new_daily_budget": budget}}
    )
    assert raise_.status == "approved"
    Campaign.objects.filter(external_id=campaign).update(max_daily_budget=cap)
    assert proposal_execute(proposal_id=raise_.pk).status == "failed"
    raise_.refresh_from_db()
    return raise_


def test_a_move_ahead_that_failed_since_is_not_said_to_be_about_to_execute(login):
    """A budget change routed to a person because an approved raise of the same budget was
    about to execute: once that raise failed, the waiting one's page does not go on saying
    it "is superseded once that one executes" (an operator would reject what nothing
    supersedes now); it says the other one was about to execute then and failed since."""
    raise_ = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "525.00"}}
    )
    assert raise_.status == "approved"
    waiting = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "700.00"}}
    )
    assert waiting.status == "pending_review"
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="510.00")
    assert proposal_execute(proposal_id=raise_.pk).status == "failed"
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)

    page = html.unescape(page_of(login("operator"), waiting).text)

    assert "is superseded once that one executes" not in page
    assert (
        f"#{raise_.pk} was approved and about to execute when this one was routed, changing "
        "generic-search's daily budget first; it has failed since, and supersedes this one "
        "only if a person sends it to run again."
    ) in page


def test_retrying_a_failed_execution_says_it_is_sent_again_not_that_it_is_approved(login):
    """A retry decides nothing: the operator is told the execution is sent again, not that
    the proposal (one policy approved with no person, here) "is approved"."""
    raise_ = failed_budget_raise()  # one policy approved with no person
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)

    operator = login("operator")
    answer = operator.post(reverse("admin:approvals_proposal_retry", args=[raise_.pk]), follow=True)

    said = [str(message) for message in get_messages(answer.wsgi_request)]
    assert said == [f"Proposal #{raise_.pk} is sent to run again."]
    assert not raise_.decisions.exists()


def test_a_retry_a_guardrail_still_refuses_is_said_to_fail_again_before_it_is_sent(login):
    """Failed by a campaign's cap, retried with the cap still set: it was sent, failed again
    at once, and nothing on its page had said so (its approval, waiting, was warned of the
    same guardrail). Said in its failure's words, the retry not offered (refused as its
    approval is: tests/test_guardrail_refuses_retry.py); once the cap is lifted, not said."""
    raise_ = failed_budget_raise()  # generic-search capped at 510.00 below its 525.00
    operator = login("operator")

    page = page_of(operator, raise_).text

    [note] = re.findall(r'<p class="errornote" id="retry-refused-by-guardrail">(.*?)</p>', page)
    [attempt] = raise_.executions.all()
    assert as_read(note) == (
        f"{attempt.error} A retry would fail again: its execution would refuse it."
    )
    assert as_read(note).startswith(
        "A guardrail refuses it now: generic-search's daily budget would be 525.00 USD, "
        "above its cap of 510.00 USD."
    )
    assert 'id="retry-form"' not in page
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    assert 'id="retry-refused-by-guardrail"' not in page_of(operator, raise_).text


def test_an_edited_proposal_still_says_why_it_came_to_a_person(operator, login):
    """An edit is re-assessed and its reasons replace the verdict's ("a 15.0% change ... is
    within the 15.0% auto-execute ceiling"): the page still says why the proposal, as the
    agent made it, waited for a person, which is what "Why it is here" asks."""
    raise_ = evaluated(bid_adjustment("1.20", campaign="display-retarget"))  # +50.0%
    proposal_approve(
        proposal_id=raise_.pk,
        reviewer=operator,
        edited_payload={**raise_.payload, "new_bid": "0.92"},  # +15.0%
    )

    page = page_of(login("auditor"), raise_)

    routed = page.text[page.text.index('id="routed-as-proposed"') :]
    assert (
        "A 50.0% change to display-retarget&#x27;s bid exceeds the 15.0% auto-execute ceiling"
        in routed.split("</ul>")[0]
    )
    reasons = page.text[page.text.index('id="verdict-reasons"') :].split("</ul>")[0]
    assert "is within the 15.0% auto-execute ceiling" in reasons


def test_an_executed_creative_batch_shows_the_creatives_the_ledger_holds_not_the_proposal(
    operator, login
):
    proposal = evaluated(creative_batch(creative(headline="Guaranteed savings", body="Save.")))
    waiting_page = page_of(login("operator"), proposal).content.decode()
    assert "None is deployed yet: they are once it is executed." in waiting_page
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=operator,
        edited_payload={
            **proposal.payload,
            "creatives": [creative(headline="Savings", body="Save.")],
        },
    )
    assert proposal_execute(proposal_id=proposal.pk).status == "executed"
    [deployed] = Creative.objects.filter(deployed_by_proposal=proposal)

    page = page_of(login("auditor"), proposal).content.decode()

    shown = page[page.index('id="deployed-creatives"') :]
    shown = shown[: shown.index("</table>")]
    assert "Deployed to display-retarget" in page
    assert reverse("admin:ledger_creative_change", args=[deployed.pk]) in shown
    assert "Creative 1<br>" in shown and f"ledger record #{deployed.pk}" in shown
    assert "<strong>Savings</strong>" in shown
    assert "Guaranteed" not in shown  # what ran, not what the agent proposed
    assert "None is deployed" not in page


def test_nobody_deletes_a_deployed_creative_from_the_console(operator, client, django_user_model):
    proposal = evaluated(creative_batch(creative(body="Save.")))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    proposal_execute(proposal_id=proposal.pk)
    [deployed] = Creative.objects.filter(deployed_by_proposal=proposal)
    client.force_login(django_user_model.objects.create_superuser("root", password="x"))

    delete = reverse("admin:ledger_creative_delete", args=[deployed.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403

    assert Creative.objects.filter(pk=deployed.pk).exists()


def test_a_rejected_creative_batch_says_none_was_deployed(operator, login):
    proposal = evaluated(creative_batch())
    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="off_brand")

    page = page_of(login("operator"), proposal).content.decode()

    assert "None was deployed." in page
    assert 'id="deployed-creatives"' not in page
    assert not Creative.objects.filter(deployed_by_proposal=proposal).exists()


def test_a_proposals_page_names_its_action_type_in_words(login):
    proposal = evaluated(creative_batch())

    page = page_of(login("auditor"), proposal).content.decode()

    field = page.split('class="form-row field-action_type_display"')[1].split("</div>\n</div>")[0]
    assert "creative deployment" in field
    assert "creative_deployment" not in field


def test_pages_show_the_policy_version_that_routed_a_proposal(operator, login):
    reference = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=reference.pk, reviewer=operator)
    proposal_execute(proposal_id=reference.pk)
    policy = Policy.objects.get(action_type="budget_reallocation", is_draft=False)
    policy.auto_execute_max_magnitude = Decimal("0.30")
    policy._change_reason = "Raise the ceiling to 30%."
    policy.save()
    auditor = login("auditor")

    page = page_of(auditor, reference)
    assert "runs without a person up to 10.0%" in page.text
    assert "it has changed since" in page.text
    assert "28.0% / 10.0%" in page.text
    listed = auditor.get(f"{CHANGELIST}?status=all")
    assert "28.0% / 10.0%" in listed.text and "28.0% / 30.0%" not in listed.text
    # The history version of the executed proposal says what held then, too.
    version = Proposal.history.filter(id=reference.pk, status="executed").get()
    history_page = auditor.get(
        reverse("admin:approvals_proposal_simple_history", args=[reference.pk, version.history_id])
    )
    assert history_page.status_code == 200
    assert "28.0% / 10.0%" in history_page.text


def test_a_count_reads_with_what_it_counts_in_the_queue_and_on_the_page(login):
    """A strategy change's size is the number of fields it changes, a creative batch's the
    number of creatives: the queue and the page said a bare "2" for either."""
    strategy = evaluated(target_cpa_strategy())
    batch = evaluated(creative_batch(creative(), creative(headline="Search faster")))
    client = login("operator")

    cells = re.findall(
        r'<td [^>]*class="field-magnitude_display"[^>]*>(.*?)</td>', client.get(CHANGELIST).text
    )
    assert "2 fields" in cells and "2 creatives" in cells
    for proposal, said in [(strategy, "2 fields"), (batch, "2 creatives")]:
        page = page_of(client, proposal).text
        assert re.search(rf'field-magnitude_display">.*?{said}', page, re.S), said


def approvals_listed(client) -> dict[int, str]:
    """Every proposal's Approvals cell in the proposal list of every status, by id."""
    page = client.get(CHANGELIST, {"status": "all"}).text
    rows = re.findall(
        r'<th [^>]*class="field-id"><a [^>]*>(\d+)</a></th>.*?'
        r'<td [^>]*class="field-approvals_display">(.*?)</td>',
        page,
        re.S,
    )
    return {int(pk): html.unescape(said) for pk, said in rows}


def test_the_approvals_column_says_what_a_decided_proposal_had_not_a_dash(operators, login):
    """Under a two-person rule, a reallocation two operators approved executed: the queue's
    Approvals column read "—" for it, filled only while a proposal waits, as if nobody had
    approved it. It reads the approvals its round counted of those it needed, and one that
    no person was asked about says why."""
    first, second = operators
    let_run = evaluated(reallocation("50.00"))  # within the ceiling: nobody was asked
    assert let_run.status == "approved"
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    approved = evaluated(reallocation("280.00"))
    for reviewer in (first, second):
        proposal_approve(proposal_id=approved.pk, reviewer=reviewer)
    assert proposal_execute(proposal_id=approved.pk).status == "executed"
    rejected = evaluated(reallocation("250.00"))
    proposal_approve(proposal_id=rejected.pk, reviewer=first)
    proposal_reject(proposal_id=rejected.pk, reviewer=second, reason_code="too_aggressive")
    waiting = evaluated(reallocation("300.00"))

    listed = approvals_listed(login("auditor"))

    assert listed[approved.pk] == "2 of 2"
    assert listed[rejected.pk] == "1 of 2"
    assert listed[waiting.pk] == "0 of 2"
    assert listed[let_run.pk] == "none needed: auto-approved"


def test_the_decisions_list_shows_what_each_reviewer_decided(operator, login):
    proposal = evaluated(reallocation("90.00"))  # runs without a person
    assert proposal.status == "approved"
    big = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=big.pk, reviewer=operator)
    decided_as = big.summary
    # The move's source changed before it ran: it is re-assessed on the figures it runs on.
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("900.00"))
    proposal_execute(proposal_id=big.pk)
    big.refresh_from_db()
    assert big.summary != decided_as

    listed = login("auditor").get(reverse("admin:approvals_decision_changelist"))

    assert decided_as in listed.text
    assert big.summary not in listed.text


def test_the_decisions_list_says_an_edit_was_decided_and_finds_one_persons_decisions(
    operator, login
):
    """An edit read "Approve · bid of brand-search 2.00 → 2.25 USD" in the decisions list, as
    though the agent had proposed 2.25 (it proposed 2.50; the proposal's page says "as
    edited"); and an auditor reading one person's decisions had no way to list them but the
    export."""
    edited = evaluated(bid_adjustment("2.50"))
    proposal_approve(
        proposal_id=edited.pk,
        reviewer=operator,
        edited_payload={"campaign": "brand-search", "new_bid": "2.25"},
    )
    as_proposed = evaluated(bid_adjustment("1.90", campaign="generic-search"))
    proposal_approve(proposal_id=as_proposed.pk, reviewer=operator)
    colleague = get_user_model().objects.create_user("colleague", is_staff=True)
    colleague.groups.set(operator.groups.all())
    other = evaluated(bid_adjustment("1.00", campaign="display-retarget"))
    proposal_reject(proposal_id=other.pk, reviewer=colleague, reason_code="too_aggressive")
    auditor = login("auditor")

    def rows(query: str = "") -> dict[str, str]:
        page = auditor.get(reverse("admin:approvals_decision_changelist") + query)
        assert page.status_code == 200
        body = page.text.split('id="result_list"')[1].split("</table>")[0]
        return {
            re.search(r"#(\d+)</a>", row).group(1): re.sub(r"\s+", " ", html.unescape(row))
            for row in re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1], re.S)
        }

    listed = rows()
    assert "bid of brand-search 2.00 → 2.25 USD (+12.5%) (as edited)" in re.sub(
        r"<[^>]+>", "", listed[str(edited.pk)]
    )
    assert "as edited" not in listed[str(as_proposed.pk)]
    by_operator = rows(f"?reviewer__id__exact={operator.pk}")
    assert set(by_operator) == {str(edited.pk), str(as_proposed.pk)}


def test_the_decisions_list_offers_to_filter_by_the_people_who_decided(operator, login):
    """ "By reviewer" offered the auditor and the policy owner, who decide no proposal, as
    if a list of their decisions could hold one. It offers those who decided; one person
    alone is still offered, and their list is theirs."""
    proposal_approve(proposal_id=evaluated(bid_adjustment("2.50")).pk, reviewer=operator)
    auditor = login("auditor")
    url = reverse("admin:approvals_decision_changelist")

    def offered(page) -> list[str]:
        by_reviewer = page.text.split('data-filter-title="reviewer"')[1].split("</details>")[0]
        return [html.unescape(a) for a in re.findall(r"<a [^>]*>(.*?)</a>", by_reviewer)]

    assert offered(auditor.get(url)) == ["All", "operator"]
    policy_owner = get_user_model().objects.get(username="policy-owner")
    theirs = auditor.get(f"{url}?reviewer__id__exact={policy_owner.pk}")
    assert list(theirs.context["cl"].result_list) == []  # a link to theirs lists none
    mine = auditor.get(f"{url}?reviewer__id__exact={operator.pk}")
    assert 'aria-current="true">operator</a>' in mine.text
    assert len(mine.context["cl"].result_list) == 1


def test_the_bulk_confirmation_says_which_would_execute_and_which_would_be_superseded(login):
    bids = [evaluated(bid_adjustment(new)) for new in ("2.50", "2.60")]
    other = evaluated(bid_adjustment("2.00", campaign="generic-search"))
    client = login("operator")
    selected = {"action": "approve_selected", "_selected_action": [p.pk for p in (*bids, other)]}

    confirm = client.post(CHANGELIST, selected)

    first, second = sorted(bids, key=lambda p: (-p.risk, p.created_at, p.pk))
    assert "1 of them clashes with one listed above it: both change the same campaign field" in (
        confirm.text
    )
    outcomes = {p.pk: p.bulk_outcome for p in confirm.context["proposals"]}
    assert outcomes[first.pk] == outcomes[other.pk] == "Approved: it executes."
    assert outcomes[second.pk] == (
        f"Proposal #{second.pk} is left waiting: #{first.pk}, approved with it, changes "
        f"brand-search's bid first, so it would be superseded once #{first.pk} executes."
    )

    done = client.post(
        CHANGELIST,
        {**selected, "confirm": "yes", "note": "", **seen_on_confirmation(confirm)},
        follow=True,
    )

    approved = ", ".join(f"#{pk}" for pk in sorted([first.pk, other.pk]))
    said = [str(message) for message in done.context["messages"]]
    assert said == [
        f"2 proposals approved and sent to be executed: {approved}.",
        outcomes[second.pk],
    ]
    assert Proposal.objects.get(pk=second.pk).status == "pending_review"
    proposal_execute(proposal_id=first.pk)
    assert Proposal.objects.get(pk=second.pk).status == "superseded"


def test_approving_a_proposal_whose_target_moved_says_it_was_superseded(login):
    proposal = evaluated(bid_adjustment("2.50"))
    Campaign.objects.filter(external_id="brand-search").update(bid=Decimal("2.71"))

    done = decided_from_page(login("operator"), "approve", proposal.pk, {"note": ""}, follow=True)

    [said] = [str(message) for message in done.context["messages"]]
    assert said.startswith(
        f"Proposal #{proposal.pk} was not approved. Superseded: brand-search's bid is 2.71, "
        "was 2.00"
    )


def test_a_bulk_approval_reports_every_proposal_confirmed_even_one_decided_meanwhile(
    login, operators
):
    _, colleague = operators
    rejected_meanwhile, still_waiting = (evaluated(reallocation(a)) for a in ("200.00", "210.00"))
    client = login("operator")
    selected = {
        "action": "approve_selected",
        "_selected_action": [rejected_meanwhile.pk, still_waiting.pk],
    }
    confirmation = client.post(CHANGELIST, selected)
    assert confirmation.status_code == 200
    proposal_reject(
        proposal_id=rejected_meanwhile.pk, reviewer=colleague, reason_code="too_aggressive"
    )
    decided = rejected_meanwhile.decisions.get().created_at

    done = client.post(
        CHANGELIST,
        {**selected, "confirm": "yes", "note": "", **seen_on_confirmation(confirmation)},
        follow=True,
    )

    # The one refused says who decided it first, how and when, as a single refusal does.
    said = [str(message) for message in done.context["messages"]]
    assert said == [
        f"1 proposal approved and sent to be executed: #{still_waiting.pk}.",
        f"Proposal #{rejected_meanwhile.pk} is rejected; it cannot become approved. "
        f"second-operator rejected it (too aggressive) at {decided:%Y-%m-%d %H:%M:%S} UTC.",
    ]


def test_a_bulk_rejection_names_who_approved_or_withdrew_each_one_first(
    login, operators, optimizer
):
    _, colleague = operators
    approved, withdrawn, still_waiting = (
        evaluated(reallocation(a)) for a in ("200.00", "210.00", "220.00")
    )
    client = login("operator")
    selected = {
        "action": "reject_selected",
        "_selected_action": [approved.pk, withdrawn.pk, still_waiting.pk],
    }
    confirmation = client.post(CHANGELIST, selected)
    assert confirmation.status_code == 200
    proposal_approve(proposal_id=approved.pk, reviewer=colleague)
    assert optimizer.post(f"/api/v1/proposals/{withdrawn.pk}/withdraw/").status_code == 200
    approved_at = approved.decisions.get().created_at
    withdrawn_at = withdrawal_seen(Proposal.objects.get(pk=withdrawn.pk)).at
    # Selected again from the queue as it was loaded, the confirmation lists each, and says
    # beside its status who ended its review, rather than leaving it out unsaid.
    again = re.sub(r"<[^>]+>", "", html.unescape(client.post(CHANGELIST, selected).text))
    assert "Reject 1 of the 3 proposals selected?" in again
    assert (
        "2 of them will be skipped: they are not pending review; beside their status, who "
        "ended their reviews and when."
    ) in again
    assert re.search(r'value="Yes, reject 1"', client.post(CHANGELIST, selected).text)
    assert f"Approved: second-operator approved it at {approved_at:%Y-%m-%d %H:%M:%S} UTC." in again
    assert f"Withdrawn: Its agent withdrew it at {withdrawn_at:%Y-%m-%d %H:%M:%S} UTC." in again

    done = client.post(
        CHANGELIST,
        {
            **selected,
            "confirm": "yes",
            "reason_code": "wrong_signal",
            "note": "",
            **seen_on_confirmation(confirmation),
        },
        follow=True,
    )

    said = [str(message) for message in done.context["messages"]]
    assert said[0] == f"Rejected 1 proposal: #{still_waiting.pk}."
    assert sorted(said[1:]) == sorted(
        [
            f"Proposal #{approved.pk} is approved; it cannot become rejected. second-operator "
            f"approved it at {approved_at:%Y-%m-%d %H:%M:%S} UTC.",
            f"Proposal #{withdrawn.pk} is withdrawn; it cannot become rejected. Its agent "
            f"withdrew it at {withdrawn_at:%Y-%m-%d %H:%M:%S} UTC.",
        ]
    )


def test_an_approval_refused_as_a_colleague_rejected_first_says_who_and_when(login, operators):
    """Approving from a page loaded before a colleague rejected the proposal is refused, and
    the refusal names the colleague, their reason and the time, as the Decisions table below
    records them, rather than only that the proposal is rejected."""
    _, colleague = operators
    proposal = evaluated(reallocation("280.00"))
    proposal_reject(proposal_id=proposal.pk, reviewer=colleague, reason_code="too_aggressive")
    decided = proposal.decisions.get().created_at

    client = login("operator")
    refused = decided_from_page(client, "approve", proposal.pk, {"note": "Fine."})

    # The answer is a redirect to the proposal's page, which says it once: reloading that page
    # reads it again, and offers to send nothing (as the refused POST's own page did).
    change_url = reverse("admin:approvals_proposal_change", args=[proposal.pk])
    assert (refused.status_code, refused["Location"]) == (302, change_url)
    page = client.get(change_url)
    [said] = [str(message) for message in page.context["messages"]]
    assert said == (
        f"Proposal #{proposal.pk} is rejected; it cannot become approved. second-operator "
        f"rejected it (too aggressive) at {decided:%Y-%m-%d %H:%M:%S} UTC."
    )
    assert said in html.unescape(page.text)
    assert list(client.get(change_url).context["messages"]) == []


def test_a_rejection_refused_as_colleagues_approved_first_names_each_approver(login, operators):
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    operator, colleague = operators
    third = get_user_model().objects.create_user("third-operator", is_staff=True)
    third.groups.set(operator.groups.all())
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=colleague)
    proposal_approve(proposal_id=proposal.pk, reviewer=third)
    last = proposal.decisions.get(reviewer=third).created_at

    refused = decided_from_page(
        login("operator"),
        "reject",
        proposal.pk,
        {"reason_code": "other", "note": ""},
    )

    [said] = [str(message) for message in get_messages(refused.wsgi_request)]
    assert said.endswith(
        "; it cannot become rejected. second-operator and third-operator approved it, the "
        f"last at {last:%Y-%m-%d %H:%M:%S} UTC."
    ), said


def test_a_bulk_confirmation_with_nothing_to_approve_offers_no_approve_button(login, operators):
    operator, _ = operators
    proposal = evaluated(reallocation("200.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator, note="")  # approved already

    confirm = login("operator").post(
        f"{CHANGELIST}?status=all",
        {"action": "approve_selected", "_selected_action": [proposal.pk]},
    )

    assert "Nothing will be approved: it cannot be approved by you now" in confirm.text
    assert "Yes, approve" not in confirm.text


def test_opening_an_acts_address_as_a_page_leads_to_the_proposal(login):
    proposal = evaluated(reallocation("280.00"))
    client = login("operator")
    for act in ("approve", "edit-approve", "reject", "retry", "withdraw", "outcome"):
        opened = client.get(reverse(f"admin:approvals_proposal_{act}", args=[proposal.pk]))
        assert opened.status_code == 302
        assert opened["Location"] == reverse("admin:approvals_proposal_change", args=[proposal.pk])
    assert Proposal.objects.get(pk=proposal.pk).status == "pending_review"


def test_a_guardrail_set_since_is_said_before_the_operator_approves(login):
    proposal = evaluated(reallocation("280.00"))
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=Decimal("750"))

    page = page_of(login("operator"), proposal)

    note = page.text[page.text.index('id="refused-as-proposed"') :].split("</p>")[0]
    assert "A guardrail refuses it now, as proposed" in note
    assert "above its cap of 750.00 USD" in note
    # Without the cap, nothing is said.
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    assert 'id="refused-as-proposed"' not in page_of(login("operator"), proposal).text


def budget_change(campaign: str, new: str) -> dict:
    return bid_adjustment(action_type="budget_change") | {
        "payload": {"campaign": campaign, "new_daily_budget": new}
    }


def test_a_cap_whose_headroom_the_ledger_used_is_said_as_refusing_now_not_as_set_since(
    operator, login
):
    # The cap is there before either proposal: each fits under it alone, not both.
    Account.objects.filter(external_id="demo").update(max_total_daily_budget=Decimal("1870.00"))
    first = evaluated(budget_change("display-retarget", "340.00"))
    second = evaluated(budget_change("generic-search", "560.00"))
    assert (first.status, second.status) == ("pending_review", "pending_review")
    proposal_approve(proposal_id=first.pk, reviewer=operator)
    assert proposal_execute(proposal_id=first.pk).status == "executed"

    client = login("operator")
    page = page_of(client, second)
    note = html.unescape(page.text[page.text.index('id="refused-as-proposed"') :].split("</p>")[0])
    refused = decided_from_page(client, "approve", second.pk, {"note": ""}, follow=True)

    over_cap = (
        "Account demo's active campaigns would spend 1,900.00 USD a day, above its cap of "
        "1,870.00 USD."
    )
    assert f"A guardrail refuses it now, as proposed: {over_cap}" in note
    said = [str(message) for message in refused.context["messages"]]
    assert said == [f"A guardrail refuses proposal #{second.pk} now: {over_cap}"]
    assert "set since" not in page.text + refused.text
    assert Proposal.objects.get(pk=second.pk).status == "pending_review"


def test_a_huge_move_reads_as_large_as_it_is_on_the_api_and_in_the_queue(optimizer, login):
    response = optimizer.post("/api/v1/proposals/", bid_adjustment("5000.00"), format="json")

    assert response.status_code == 201, response.content
    reasons = " ".join(response.json()["verdict"]["reasons"])
    assert "A 249900.0% change to brand-search's bid" in reasons
    assert "100000.0%" not in reasons.replace("at least 100000.0%", "")
    queue = login("operator").get(CHANGELIST)
    assert "at least 100000.0% / 15.0%" in queue.text


def test_the_api_names_the_policy_as_it_was_in_the_version_that_decided(optimizer):
    proposal = evaluated(reallocation("280.00"))
    policy = Policy.objects.get(pk=proposal.verdict_policy_id)
    decided_by = policy.name
    policy.name = "Reallocations (tightened in May)"
    policy.save()

    answer = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
    assert answer["verdict"]["policy"] == {
        "id": policy.pk,
        "name": decided_by,
        "version": proposal.verdict_policy_version,
        "number": 1,  # as the console counts its versions: the one before the rename
    }
    listed = optimizer.get("/api/v1/proposals/").json()["results"]
    assert [item["verdict"]["policy"]["name"] for item in listed] == [decided_by]
    # Decided again under the renamed policy (a new proposal), it reads the new name.
    later = optimizer.post("/api/v1/proposals/", reallocation("290.00"), format="json").json()
    assert later["verdict"]["policy"]["name"] == "Reallocations (tightened in May)"
    assert later["verdict"]["policy"]["version"] > proposal.verdict_policy_version
    assert later["verdict"]["policy"]["number"] == 2


def test_an_edited_proposal_shows_the_move_that_routed_it_beside_the_edits(operator, login):
    """An edit is re-assessed and its magnitude replaces the proposal's: under "magnitude /
    ceiling that routed it" the queue and the page said "15.0%, within 15.0%", as if its size
    had let it through, when the 50.0% its agent proposed is what sent it to a person."""
    raise_ = evaluated(bid_adjustment("1.20", campaign="display-retarget"))  # +50.0%
    proposal_approve(
        proposal_id=raise_.pk,
        reviewer=operator,
        edited_payload={**raise_.payload, "new_bid": "0.92"},  # +15.0%
    )
    auditor = login("auditor")

    listed = auditor.get(CHANGELIST, {"status": "all"}).text
    page = page_of(auditor, raise_).text
    edited = Proposal.history.filter(id=raise_.pk).latest("history_id")
    version = auditor.get(
        reverse("admin:approvals_proposal_simple_history", args=[raise_.pk, edited.history_id])
    ).text

    for shown in (listed, page, version):
        # The edit's magnitude says what judged it: no ceiling routed it.
        assert (
            "15.0% as edited, re-assessed then by the policies in force (why it is here says "
            "what they found); 50.0% / 15.0% as proposed"
        ) in shown
        assert "15.0%, within 15.0%" not in shown


def test_a_proposal_held_by_the_cumulative_ceiling_shows_that_figure_not_its_own_move(login):
    for new_bid in ("2.18", "2.38"):  # +9.0%, then +9.2%: each runs on its own
        proposal_execute(proposal_id=evaluated(bid_adjustment(new_bid)).pk)
    held = evaluated(bid_adjustment("2.59"))  # +8.8% alone, within 15%; +29.5% in 1 day
    assert held.status == "pending_review"
    # The verdict recorded the figure it compared, not only words about it.
    (hold,) = [h for h in held.verdict_held_by if h["rule"] == "cumulative_ceiling"]
    assert hold["moved"] == "59/200"  # 2.59 / 2.00 - 1, the executed moves netted out exactly
    assert Decimal(hold["ceiling"]) == Decimal("0.25")
    operator = login("operator")

    listed = operator.get(CHANGELIST).text
    page = page_of(operator, held).text

    for shown in (listed, page):
        assert "+29.5% in 1 day / 25.0% cumulative" in shown
        assert "8.8% / 15.0%" not in shown
    # A move held by its own size still reads against the auto-execute ceiling.
    big = evaluated(reallocation("280.00"))
    assert "28.0% / 10.0%" in page_of(operator, big).text


def test_a_move_within_the_auto_execute_ceiling_held_by_another_rule_says_it_is_within(login):
    first, behind = (
        evaluated(bid) for bid in (bid_adjustment("2.10"), bid_adjustment("2.12"))
    )  # the second waits behind the first, which changes the bid first
    assert (first.status, behind.status) == ("approved", "pending_review")

    listed = login("operator").get(CHANGELIST).text

    assert "6.0%, within 15.0%" in listed
    assert "6.0% / 15.0%" not in listed


def test_the_console_reads_the_cumulative_figure_from_the_verdicts_record_not_its_words(login):
    for new_bid in ("2.18", "2.38"):
        proposal_execute(proposal_id=evaluated(bid_adjustment(new_bid)).pk)
    held = evaluated(bid_adjustment("2.59"))
    # Reworded reasons (a translation, a new phrasing) do not lose the figure.
    held.verdict_reasons = ["The cumulative ceiling held it."]
    held.save(update_fields=["verdict_reasons"])
    operator = login("operator")

    assert "+29.5% in 1 day / 25.0% cumulative" in page_of(operator, held).text


def test_a_proposal_recorded_before_verdicts_kept_their_holds_still_shows_its_figure(login):
    for new_bid in ("2.18", "2.38"):
        proposal_execute(proposal_id=evaluated(bid_adjustment(new_bid)).pk)
    held = evaluated(bid_adjustment("2.59"))
    held.verdict_held_by = None  # as every proposal evaluated before the field was added
    held.save(update_fields=["verdict_held_by"])
    operator = login("operator")

    for shown in (operator.get(CHANGELIST).text, page_of(operator, held).text):
        assert "+29.5% in 1 day / 25.0% cumulative" in shown


def history_text(client, model, pk: int) -> str:
    page = client.get(
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_history", args=[pk])
    )
    assert page.status_code == 200
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.content.decode())).split())


def test_the_history_reads_statuses_and_times_as_the_console_writes_them(operator, login):
    """An auditor reads a proposal's history in the console's words: a status or a verdict
    as the proposal's page names it (not its stored code), each move of its lifecycle so
    too, its magnitude as the queue writes it, a time as the console writes one (to the
    second, in the console's time zone), in the changes as in the Date/time column."""
    proposal = evaluated(reallocation("200.00"))
    waiting = evaluated(reallocation("150.00"))  # re-assessed once the first moves the money
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert proposal_execute(proposal_id=proposal.pk).status == "executed"
    proposal.refresh_from_db()

    reassessed = history_text(login("auditor"), Proposal, waiting.pk)
    assert "Magnitude: 15.0% → 18.8%" in reassessed
    assert (
        "Effects: brand-search's daily budget -15.0%, generic-search's daily budget +30.0% → "
        "brand-search's daily budget -18.8%, generic-search's daily budget +21.4%"
    ) in reassessed
    text = history_text(login("auditor"), Proposal, proposal.pk)
    assert "Status: Submitted → Pending review" in text
    assert "Status: Pending review → Approved" in text
    assert "Approved → Executing" in text and "Executing → Executed" in text
    assert "Verdict outcome: — → Human review" in text
    approved_at = timezone.localtime(proposal.approved_at).strftime("%Y-%m-%d %H:%M:%S")
    assert f"Approved to run at: — → {approved_at}" in text
    recorded = Proposal.history.filter(id=proposal.pk).latest("history_id").history_date
    assert timezone.localtime(recorded).strftime("%Y-%m-%d %H:%M:%S") in text
    for code in ("pending_review", "executing →", "+00:00", "p.m.", "a.m."):
        assert code not in text.split("Changes", 1)[1], code


def test_a_policys_history_reads_as_its_page_does(login):
    """A policy owner's change reads in its history as the policy's page and form write it: a
    ceiling in percent, a window in words, a yes or a no, an agent kind by its name; not the
    fraction, the Python duration, True or the stored code."""
    policy = Policy.objects.get(name="Budget reallocations")
    policy.auto_execute_max_magnitude = Decimal("0.125")
    policy.auto_execute_max_amount = Decimal("250.00")
    policy.cumulative_window = timedelta(days=2)
    policy.always_review = True
    policy.agent_kind = "optimization"
    policy._change_reason = "Tighter, for the optimizer."
    policy.save()

    text = history_text(login("auditor"), Policy, policy.pk)
    assert "Auto-execute ceiling: 10% → 12.5%" in text
    assert "Cumulative window: 1 day → 2 days" in text
    assert "Auto-execute amount ceiling: — → 250.00" in text
    assert "max magnitude" not in text and "max amount" not in text  # by its form's name
    assert "Always review: no → yes" in text
    assert "Agent kind: — → Optimization" in text
    for code in ("0.125000", "0:00:00", "True", "False", "optimization"):
        assert code not in text.split("Changes", 1)[1], code


def test_a_policys_form_names_its_amount_ceilings_as_its_list_does(login):
    page = login("policy-owner").get(reverse("admin:policies_policy_add")).content.decode()
    for label in (
        "Auto-execute amount ceiling",
        "Hard amount ceiling",
        "More approvals above this amount",
    ):
        assert f">{label}:</label>" in page, label
    assert "Auto execute max amount" not in page and "Block above amount" not in page


def test_a_setting_not_set_reads_as_a_dash_on_a_read_only_policy(login):
    policy = Policy.objects.get(name="Budget reallocations")
    assert policy.more_approvals_above_amount is None
    page = login("auditor").get(reverse("admin:policies_policy_change", args=[policy.pk]))
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.content.decode())).split())

    assert "More approvals above this amount: —" in text
    assert "More approvals above this amount: - " not in text
    assert "Agent: —" in text and "Is draft: no: it decides live" in text
    assert "Replaces, when promoted" not in text and "Draft of" not in text  # a draft's only
    assert "Cumulative ceiling: 25%" in text


def test_the_first_of_two_approvals_says_it_is_counted_and_waits_for_another(login):
    """Under a two-person rule, the first approval is said as what it did: counted, one of
    two, the proposal waiting for another person; not "now pending review", as if nothing had
    happened."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = evaluated(reallocation("210.00"))

    answer = decided_from_page(login("operator"), "approve", proposal.pk, {"note": ""})

    said = [str(message) for message in get_messages(answer.wsgi_request)]
    assert said == [
        f"Your approval is counted: proposal #{proposal.pk} has 1 of 2 approvals and waits "
        "for another person's."
    ]
    submitted_at = proposal.updated_at
    proposal.refresh_from_db()
    assert (proposal.status, proposal.approvals_this_round) == ("pending_review", 1)
    # An agent reading it sees that it changed.
    assert proposal.updated_at > submitted_at


def test_one_who_approved_reads_why_the_buttons_are_gone_while_it_waits_for_another(login):
    """Under a two-person rule, the page of a proposal the reader has approved says so where
    the buttons were, and how many more approvals it waits for: they were gone without a word,
    and an operator coming back to it could not tell whether their approval had counted."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = evaluated(reallocation("210.00"))
    operator = login("operator")
    decided_from_page(operator, "approve", proposal.pk, {"note": ""})
    approved_at = proposal.decisions.get().created_at

    page = operator.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.content.decode())).split())

    assert 'id="approve-form"' not in page.content.decode()
    assert (
        f"You approved it at {approved_at:%Y-%m-%d %H:%M:%S} UTC; it waits for 1 more "
        "approval, from someone else: nobody decides a proposal twice." in text
    )
    auditor_page = login("auditor").get(
        reverse("admin:approvals_proposal_change", args=[proposal.pk])
    )
    assert "You approved it" not in auditor_page.content.decode()


def test_the_feedback_list_names_reasons_and_writes_times_as_the_console_does(operator, login):
    """The feedback an agent received, as an auditor lists it: a rejection's reason by its
    name, in the list and its filter, and its time as every console page writes one."""
    proposal = evaluated(reallocation("280.00"))
    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="too_aggressive")

    page = login("auditor").get(reverse("admin:feedback_feedback_changelist"))

    assert page.status_code == 200
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.content.decode())).split())
    results = text.split("Filter", 1)
    assert "Too aggressive" in results[0] and "Too aggressive" in results[1]
    assert "too_aggressive" not in text
    created = proposal.feedback.get().created_at
    assert timezone.localtime(created).strftime("%Y-%m-%d %H:%M:%S") in text
    assert "p.m." not in text and "a.m." not in text


def reallocations_policy_changed(reason: str, **changes) -> int:
    """The reallocations' policy changed by its owner, saying why: its version's number now
    (the demo's policy as seeded is version 1)."""
    policy = Policy.objects.get(action_type="budget_reallocation", is_draft=False)
    for name, value in changes.items():
        setattr(policy, name, value)
    policy._change_reason = reason
    policy.save()
    return Policy.history.filter(id=policy.pk).count()


def test_a_policy_changed_and_changed_back_since_routing_reads_as_the_same_terms(login):
    """Changed by mistake and put back: the page said "it has changed since, to version 3"
    and then "Its terms now: …" repeating the terms above word for word, as if they differed."""
    proposal = evaluated(reallocation("280.00"))
    reallocations_policy_changed("Typo.", auto_execute_max_magnitude=Decimal("0.5"))
    reallocations_policy_changed("Typo undone.", auto_execute_max_magnitude=Decimal("0.10"))

    page = html.unescape(page_of(login("operator"), proposal).text)

    routed_by = re.sub(r"\s+", " ", page.split('id="routed-by"')[1].split("</p>")[0])
    assert "UTC (it has changed since, to version 3):" in routed_by
    assert routed_by.count("runs without a person up to 10.0%") == 1
    assert '<span id="policy-terms-now">Its terms now are the same.</span>' in routed_by


def test_a_review_window_and_deadline_changed_since_routing_are_not_the_same_terms(login):
    """A proposal routed with a one-minute window expired; the window was put back to three
    days. Its page said "Its terms now are the same.", the terms it listed naming neither
    the window it expired under nor the deadline it had."""
    reallocations_policy_changed(
        "Try a short window.", review_window=timedelta(minutes=1), decide_within=None
    )
    proposal = evaluated(reallocation("280.00"))
    reallocations_policy_changed(
        "Back to three days, due in four hours.",
        review_window=timedelta(days=3),
        decide_within=timedelta(hours=4),
    )

    page = html.unescape(page_of(login("auditor"), proposal).text)

    routed_by = re.sub(r"\s+", " ", page.split('id="routed-by"')[1].split("</p>")[0])
    terms_then, terms_now = routed_by.split(' <span id="policy-terms-now">')
    assert terms_then.endswith("1 approval; expires after 1 minute undecided.")
    assert terms_now.endswith(
        "1 approval; a decision due within 4 hours; expires after 3 days undecided.</span>"
    )
    assert "are the same" not in routed_by


def edit_approved(operator, proposal: Proposal, amount: str) -> Proposal:
    """The operator edits the reallocation's amount and approves it, in the console."""
    edited = decided_from_page(
        operator,
        "edit-approve",
        proposal.pk,
        {"edit-amount": amount, "edit-note": ""},
    )
    assert edited.status_code == 302
    proposal.refresh_from_db()
    return proposal


def test_approvals_a_policy_asks_for_since_routing_are_said_beside_the_version_that_routed(
    login,
):
    """The page names the policy version that routed a proposal, with its terms; an edit
    re-assesses it under the policies in force, which may ask for more approvals now. The
    page then says so, with the version asking, rather than "1 approval" above "1 of 2"."""
    proposal = evaluated(reallocation("280.00"))
    now_version = reallocations_policy_changed(
        "Two people for every reallocation.", required_approvals=2
    )
    operator = login("operator")

    proposal = edit_approved(operator, proposal, "260.00")

    assert (proposal.status, proposal.approvals_this_round, proposal.required_approvals) == (
        "pending_review",
        1,
        2,
    )
    page = html.unescape(page_of(operator, proposal).text)
    routed_by = re.sub(r"\s+", " ", page.split('id="routed-by"')[1].split("</p>")[0])
    # Versions as its owner counts them: the demo's policy as seeded, then changed once.
    assert now_version == 2
    saved_on = Policy.history.get(history_id=proposal.verdict_policy_version).history_date
    assert f"in its version 1, as saved on {saved_on:%Y-%m-%d %H:%M:%S} UTC (it has" in routed_by
    assert "UTC (it has changed since, to version 2):" in routed_by
    terms_then, terms_now = routed_by.split(' <span id="policy-terms-now">')
    assert terms_then.endswith("1 approval; expires after 3 days undecided.")
    assert terms_now.startswith("Its terms now: runs without a person up to 10.0%;")
    assert terms_now.endswith("2 approvals; expires after 3 days undecided.</span>")
    reasons = page.split('id="verdict-reasons"')[1].split("</ul>")[0]
    assert (
        "It now needs 2 distinct approvals: policy “Budget reallocations” asks for 2 as it "
        f"stands (version {now_version})."
    ) in reasons
    assert "1 of 2 approvals" in re.sub(r"\s+", " ", page)

    # Edited again by another person, it is re-assessed again: the reason stays.
    colleague = get_user_model().objects.create_user("second-operator", is_staff=True)
    colleague.groups.set(get_user_model().objects.get(username="operator").groups.all())
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=colleague,
        edited_payload={**proposal.payload, "amount": "250.00"},
    )
    proposal.refresh_from_db()
    assert (proposal.status, proposal.approvals_this_round) == ("pending_review", 1)
    assert any(
        reason.startswith("It now needs 2 distinct approvals")
        for reason in proposal.verdict_reasons
    )
    # The policy lowered again: approvals needed do not fall, and the reason says whose they
    # are, not that the policy asks for 2.
    lowered = reallocations_policy_changed("Back to one.", required_approvals=1)
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=get_user_model().objects.get(username="operator"),
        edited_payload={**proposal.payload, "amount": "240.00"},
    )
    proposal.refresh_from_db()
    assert (proposal.status, proposal.required_approvals) == ("pending_review", 2)
    assert (
        "It still needs 2 distinct approvals, as asked when it was re-assessed or edited "
        f"before; policy “Budget reallocations” asks for 1 as it stands (version {lowered})."
    ) in proposal.verdict_reasons


def test_a_two_person_rule_added_since_routing_is_said_with_the_version_asking(login):
    """The routing version asked for one approval; the policy now has a two-person rule the
    edited proposal falls under. Its reason names the rule, and another the version asking,
    since the page names the version that routed it, which had no such rule."""
    proposal = evaluated(reallocation("280.00"))
    now_version = reallocations_policy_changed(
        "Two people above 12%.",
        more_approvals_above_magnitude=Decimal("0.12"),
        approvals_above_threshold=2,
    )

    proposal = edit_approved(login("operator"), proposal, "260.00")

    assert (proposal.status, proposal.required_approvals) == ("pending_review", 2)
    assert any("two-person rule" in reason for reason in proposal.verdict_reasons)
    assert (
        "It now needs 2 distinct approvals: policy “Budget reallocations” asks for 2 as it "
        f"stands (version {now_version})."
    ) in proposal.verdict_reasons
    assert now_version == 2  # the page names version 1, which routed it


def test_a_two_person_rule_that_routed_it_is_not_said_as_asked_since_on_re_assessment(
    operator, operators, login
):
    """Routed under the two-person rule (22% of brand-search, above 20%), it needed two
    approvals from the start; when another reallocation from brand-search ran first and it
    was re-assessed, its page said "It now needs 2 distinct approvals: … asks for 2 as it
    stands (version 2)", naming the very version that routed it, as if it had needed one
    before (the version's own required approvals, 1, were read as what it asked of it)."""
    now_version = reallocations_policy_changed(
        "Two people above 20%.",
        more_approvals_above_magnitude=Decimal("0.20"),
        approvals_above_threshold=2,
    )
    waiting = evaluated(reallocation("220.00"))
    assert waiting.required_approvals == 2
    first = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=first.pk, reviewer=operator)
    proposal_approve(proposal_id=first.pk, reviewer=operators[1])
    assert proposal_execute(proposal_id=first.pk).status == "executed"

    waiting.refresh_from_db()
    assert waiting.required_approvals == 2
    assert waiting.verdict_reasons[0].startswith("Re-assessed after #")
    page = html.unescape(page_of(login("operator"), waiting).text)
    routed_by = re.sub(r"\s+", " ", page.split('id="routed-by"')[1].split("</p>")[0])
    saved_on = Policy.history.get(history_id=waiting.verdict_policy_version).history_date
    assert (
        f"in its version {now_version}, as saved on {saved_on:%Y-%m-%d %H:%M:%S} UTC:" in routed_by
    )
    assert "1 approval, 2 above 20.0%" in routed_by
    reasons = page.split('id="verdict-reasons"')[1].split("</ul>")[0]
    assert "two-person rule: 2 distinct approvals are needed" in reasons
    assert "It now needs" not in reasons
    assert not any("It now needs" in reason for reason in waiting.verdict_reasons)


@pytest.mark.parametrize(
    "required, above, said",
    [
        (1, 2, "1 approval, 2 above 20.0% or 250.00 a day; expires after 3 days undecided."),
        (2, 3, "2 approvals, 3 above 20.0% or 250.00 a day; expires after 3 days undecided."),
        (2, 1, "2 approvals; expires after 3 days undecided."),  # the more of the two: 2
    ],
)
def test_the_policy_terms_on_a_proposals_page_name_its_two_person_rule(
    login, required, above, said
):
    policy = Policy.objects.get(action_type="budget_reallocation", is_draft=False)
    policy.more_approvals_above_magnitude = Decimal("0.20")
    policy.more_approvals_above_amount = Decimal("250.00")
    policy.required_approvals, policy.approvals_above_threshold = required, above
    policy._change_reason = "Two people for the large ones."
    policy.save()
    proposal = evaluated(reallocation("280.00"))

    page = html.unescape(page_of(login("auditor"), proposal).text)

    routed_by = re.sub(r"\s+", " ", page.split('id="routed-by"')[1].split("</p>")[0])
    assert routed_by.endswith(said)
    needed = max(required, above)
    assert f"0 of {needed} approvals" in re.sub(r"\s+", " ", page)


def test_a_proposal_no_policy_routed_says_so_once(login):
    # It read "Routed by no policy: No policy matched: a person decides.." (a platform's
    # policy change, say, which no policy routes).
    policy = Policy.objects.get(action_type="bid_adjustment", is_draft=False)
    policy.is_active = False
    policy._change_reason = "Bids go to a person while the new rules are written."
    policy.save()
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal.verdict_policy is None

    page = html.unescape(page_of(login("auditor"), proposal).text)

    routed_by = re.sub(r"<[^>]+>", "", page.split('id="routed-by">')[1].split("</p>")[0])
    assert (
        " ".join(routed_by.split()) == "Routed by no policy: none matched it, so a person decides."
    )


def test_a_creative_policys_terms_count_creatives_as_a_batch(login):
    policy = Policy.objects.get(action_type="creative_deployment", is_draft=False)
    policy.always_review, policy.auto_execute_max_magnitude = False, Decimal("3")
    policy.more_approvals_above_magnitude, policy.approvals_above_threshold = Decimal("1"), 2
    policy._change_reason = "Small batches run; two people for more than one creative."
    policy.save()
    proposal = evaluated(creative_batch(creative(body="Save."), creative(body="Save more.")))

    page = html.unescape(page_of(login("auditor"), proposal).text)

    routed_by = re.sub(r"\s+", " ", page.split('id="routed-by"')[1].split("</p>")[0])
    assert "runs without a person up to a batch of 3" in routed_by
    assert routed_by.endswith("1 approval, 2 above a batch of 1; expires after 3 days undecided.")


def test_a_value_never_set_reads_as_nothing_set_not_as_the_text_none(operator, login, optimizer):
    """generic-search has no target CPA; a strategy change sets one. Its snapshot, its
    execution's state before, the API and the page say nothing was set (null, "not set", one
    way in the table of what was proposed and done as in the executions'), not the text
    "None"."""
    answer = optimizer.post(
        "/api/v1/proposals/",
        target_cpa_strategy(),
        format="json",
    )
    assert answer.status_code == 201, answer.content
    proposal = Proposal.objects.get(pk=answer.json()["id"])
    assert proposal.target_snapshot["generic-search"]["target_cpa"] is None
    # Its summary (the queue's line, its page's heading) says so, in the edit form's words.
    assert proposal.summary == (
        "generic-search: bidding strategy Manual CPC → Target CPA; target CPA not set → 25.00 USD"
    )
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert proposal_execute(proposal_id=proposal.pk).status == "executed"

    read = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
    assert read["execution"]["before_state"]["generic-search"]["target_cpa"] is None
    assert read["execution"]["after_state"]["generic-search"]["target_cpa"] == "25.00"
    page = html.unescape(page_of(login("operator"), proposal).text)
    states = re.sub(r"\s+", " ", page.split('id="proposal-states"')[1].split("</table>")[0])
    states = re.sub(r' data-label="[^"]*"', "", states)  # each cell's heading, for a phone
    assert "None" not in states
    # When proposed: not set; proposed and after execution: 25.00; before execution: not set.
    assert "<td>target CPA</td><td>not set</td><td>25.00</td><td>not set</td><td>25.00</td>" in (
        states
    )
    executions = page.split("<h2>Executions</h2>")[1].split("</table>")[0]
    assert "generic-search target CPA not set" in executions and "None" not in executions
    # The campaign's own history says it in the same words.
    campaign = Campaign.objects.get(external_id="generic-search")
    history = history_text(login("auditor"), Campaign, campaign.pk)
    assert "Target CPA: not set → 25.00 USD" in history


def test_a_campaign_field_and_its_choice_read_in_the_edit_forms_words_on_every_page(
    operator, login, optimizer
):
    """A strategy change's fields and values read as its edit form offers them ("Bidding
    strategy", "Manual CPC", "target CPA"), not as codes ("bidding_strategy", "manual_cpc",
    "target cpa"): in the table of what was proposed and done, the executions' states on the
    proposal's page and on the execution's own, and the campaign's history. The API keeps
    the codes, its contract."""
    answer = optimizer.post(
        "/api/v1/proposals/",
        {
            "action_type": "strategy_change",
            "account": "demo",
            "payload": {"campaign": "generic-search",
                        "changes": {"bidding_strategy": "target_cpa", "target_cpa": "25.00"}},
            "rationale": "Enough conversions to bid for them.",
            "confidence": 0.8,
        },
        format="json",
    )  # fmt: skip
    assert answer.status_code == 201, answer.content
    proposal = Proposal.objects.get(pk=answer.json()["id"])
    auditor = login("auditor")
    waiting = page_of(auditor, proposal)
    strategy, target = ["generic-search", "bidding strategy"], ["generic-search", "target CPA"]
    # (Rows in the snapshot's order, which PostgreSQL's jsonb keeps its own way.)
    assert sorted(waiting.context["states"].rows) == [
        [*strategy, "Manual CPC", "Target CPA", "Manual CPC"],
        [*target, "not set", "25.00", "not set"],
    ]
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert proposal_execute(proposal_id=proposal.pk).status == "executed"

    page = page_of(auditor, proposal)
    assert page.context["states"].columns == [
        "Campaign",
        "Field",
        "When proposed",
        "Proposed",
        "Before execution",
        "After execution",
    ]
    assert sorted(page.context["states"].rows) == [
        [*strategy, "Manual CPC", "Target CPA", "Manual CPC", "Target CPA"],
        [*target, "not set", "25.00", "not set", "25.00"],
    ]
    states = [
        "generic-search bidding strategy Manual CPC",
        "generic-search target CPA not set",
        "generic-search bidding strategy Target CPA",
        "generic-search target CPA 25.00",
    ]
    text = html.unescape(page.content.decode())
    executions = text.split("<h2>Executions</h2>")[1].split("</table>")[0]
    assert all(state in executions for state in states)
    for code in ("bidding_strategy", "manual_cpc", "target_cpa", "target cpa"):
        assert code not in executions
    execution = proposal.executions.get()
    execution_page = auditor.get(reverse("admin:approvals_execution_change", args=[execution.pk]))
    execution_text = html.unescape(execution_page.content.decode())
    assert all(state in execution_text for state in states)
    assert "manual_cpc" not in execution_text
    history = history_text(auditor, Campaign, Campaign.objects.get(external_id="generic-search").pk)
    assert "Bidding strategy: Manual CPC → Target CPA" in history
    assert "Target CPA: not set → 25.00 USD" in history
    # The API answers in codes, as before.
    read = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
    assert read["execution"]["before_state"] == {
        "generic-search": {"bidding_strategy": "manual_cpc", "target_cpa": None}
    }
    assert read["execution"]["after_state"] == {
        "generic-search": {"bidding_strategy": "target_cpa", "target_cpa": "25.00"}
    }


def test_the_decisions_table_says_none_yet_only_while_a_person_may_still_decide(login):
    """A waiting proposal's Decisions table reads "None yet."; one superseded before anyone
    decided it, or run on policy's word alone, reads "No person decided it.", not a
    decision still to come."""
    waiting = evaluated(bid_adjustment("2.50"))  # +25%: to a person
    superseded = evaluated(bid_adjustment("2.60"))
    auto = evaluated(bid_adjustment("1.55", campaign="generic-search"))  # +3.3%: policy runs it
    proposal_approve(
        proposal_id=waiting.pk, reviewer=get_user_model().objects.get(username="operator")
    )
    proposal_execute(proposal_id=waiting.pk)
    proposal_execute(proposal_id=auto.pk)
    waits_still = evaluated(bid_adjustment("1.00", campaign="display-retarget"))
    client = login("auditor")

    def decisions(proposal: Proposal) -> str:
        page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])).text
        table = page.split('id="proposal-decisions"')[1].split("</table>")[0]
        return re.sub(r"<[^>]+>", "", table.split("<tbody>")[1]).strip()

    assert Proposal.objects.get(pk=superseded.pk).status == "superseded"
    assert decisions(waits_still) == "None yet."
    assert decisions(superseded) == "No person decided it."
    assert decisions(auto) == "No person decided it."


def test_a_proposal_a_released_kill_switch_sent_to_a_person_says_the_switch_is_released(login):
    """Its reasons keep what was so when it was routed ("The kill switch on account demo is engaged:
    …"); once the switch is released its page says no switch covers it now."""
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="Outage."
    )
    proposal = evaluated(bid_adjustment("2.06"))  # +3%: only the switch holds it
    client = login("operator")

    def released_note() -> str | None:
        page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])).text
        found = re.search(r'id="kill-switch-released">(.*?)</p>', page)
        return found and html.unescape(found.group(1))

    assert proposal.status == "pending_review"
    assert proposal.verdict_reasons[0] == "The kill switch on account demo is engaged: Outage."
    assert released_note() is None
    switch.engaged = False
    switch.save()
    assert released_note() == (
        "No kill switch covers it now: the one above has been released since. It still waits "
        "for a person's decision."
    )


def test_a_released_kill_switch_reads_as_engaged_then_wherever_the_console_says_why(
    operator, login
):
    """A 3% bid held only by the account's kill switch, the switch released, then the bid
    approved and executed: its page says why it is here as it stands (the switch was engaged
    when it was routed, released since), before and after it is decided, and so does the
    queue's mark on it in every status; never "is engaged" of a switch no longer engaged."""
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="Outage."
    )
    proposal = evaluated(bid_adjustment("2.06"))  # +3%: only the switch holds it
    client = login("operator")

    def why_it_is_here() -> list[str]:
        page = page_of(client, proposal).text
        listed = page.split('id="verdict-reasons">')[1].split("</ul>")[0]
        return [html.unescape(reason) for reason in re.findall(r"<li>(.*?)</li>", listed)]

    def queue_row() -> str:
        listed = client.get(f"{CHANGELIST}?status=all").text
        return html.unescape(listed.split(f'value="{proposal.pk}"')[1].split("</tr>")[0])

    assert why_it_is_here() == ["The kill switch on account demo is engaged: Outage."]  # it is
    switch.engaged = False
    switch.save()
    released = (
        "The kill switch on account demo was engaged when it was routed: Outage. Released since."
    )
    none_covers = "No kill switch covers it now: the one above has been released since."

    def below_it() -> str:
        page = html.unescape(page_of(client, proposal).text)
        assert page.lower().count("no kill switch covers it now") == 1  # once, not each line
        return page.split('id="kill-switch-released">')[1].split("</p>")[0]

    assert why_it_is_here() == [released]
    assert below_it() == f"{none_covers} It still waits for a person's decision."
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert proposal_execute(proposal_id=proposal.pk).status == "executed"

    assert why_it_is_here() == [released]
    assert below_it() == none_covers
    assert "guardrail-flag" not in queue_row()
    # The queue's mark says it as its page does: once, below the line naming the switch.
    assert f'title="{released}\n{none_covers}">kill switch released</span>' in queue_row()


def test_another_switch_engaged_still_leaves_the_released_one_said_released(operator, login):
    """Held by the account's switch and the channel's: the account's released, the channel's
    still engaged. The account's reads as released (not "no kill switch covers it now": one
    does), the channel's as engaged, on its page and in the queue's mark."""
    demo = Account.objects.get(external_id="demo")
    mine = KillSwitch.objects.create(scope="account", account=demo, reason="Outage.")
    KillSwitch.objects.create(scope="channel", channel=demo.channel, reason="API change.")
    proposal = evaluated(bid_adjustment("2.06"))
    mine.engaged = False
    mine.save()
    client = login("operator")

    page = html.unescape(page_of(client, proposal).text)
    listed = page.split('id="verdict-reasons">')[1].split("</ul>")[0]
    assert re.findall(r"<li>(.*?)</li>", listed) == [
        "The kill switch on account demo was engaged when it was routed: Outage. Released since.",
        "The kill switch on channel Google Ads is engaged: API change.",
    ]
    assert 'id="kill-switch-released"' not in page  # one still covers it
    row = html.unescape(client.get(CHANGELIST).text.split(f'value="{proposal.pk}"')[1])
    row = row.split("</tr>")[0]
    findings = re.findall(r"<li>(.*?)</li>", row.split('class="guardrail-findings">')[1])
    assert findings == ["The kill switch on channel Google Ads is engaged: API change."]


def test_kill_switch_reasons_recorded_in_their_former_words_are_still_their_switches(login):
    """Reasons recorded before a finding named its switch as the switch's title does read
    "The kill switch on demo is engaged: …" (the account alone) and "… on google_ads …" (the
    channel's code). Each is still its switch's: while both are engaged the proposal's page
    and the queue's mark say so, and the page tells no switch as engaged since it was routed;
    once one is released, its reason reads engaged then and released since, and once both
    are, no switch covers it now."""
    demo = Account.objects.get(external_id="demo")
    mine = KillSwitch.objects.create(scope="account", account=demo, reason="Outage.")
    channel = KillSwitch.objects.create(scope="channel", channel="google_ads", reason="API change.")
    proposal = evaluated(bid_adjustment("2.06"))
    recorded = [
        "The kill switch on demo is engaged: Outage.",
        "The kill switch on google_ads is engaged: API change.",
    ]
    Proposal.objects.filter(pk=proposal.pk).update(
        verdict_reasons=recorded, guardrail_findings={"block": [], "review": recorded}
    )
    client = login("operator")

    def page() -> str:
        return html.unescape(page_of(client, proposal).text)

    def why_it_is_here() -> list[str]:
        return re.findall(
            r"<li>(.*?)</li>", page().split('id="verdict-reasons">')[1].split("</ul>")[0]
        )

    def queue_mark() -> list[str]:
        row = html.unescape(client.get(CHANGELIST).text.split(f'value="{proposal.pk}"')[1])
        found = row.split("</tr>")[0].split('class="guardrail-findings">')
        return re.findall(r"<li>(.*?)</li>", found[1]) if len(found) > 1 else []

    assert why_it_is_here() == recorded
    assert queue_mark() == recorded
    assert 'id="kill-switch-engaged-since"' not in page()

    mine.engaged = False
    mine.save()
    assert why_it_is_here() == [
        "The kill switch on demo was engaged when it was routed: Outage. Released since.",
        "The kill switch on google_ads is engaged: API change.",
    ]
    assert queue_mark() == ["The kill switch on google_ads is engaged: API change."]

    channel.engaged = False
    channel.save()
    assert why_it_is_here() == [
        "The kill switch on demo was engaged when it was routed: Outage. Released since.",
        "The kill switch on google_ads was engaged when it was routed: API change. Released since.",
    ]
    assert queue_mark() == []
    assert (
        '<p id="kill-switch-released">No kill switch covers it now: those above have been '
        "released since. It still waits for a person's decision.</p>"
    ) in page()


def test_two_released_kill_switches_are_both_said_released(login):
    demo = Account.objects.get(external_id="demo")
    switches = [
        KillSwitch.objects.create(scope="account", account=demo, reason="Outage."),
        KillSwitch.objects.create(scope="channel", channel=demo.channel, reason="API change."),
    ]
    proposal = evaluated(bid_adjustment("2.06"))
    assert len(proposal.verdict_reasons) == 2  # each switch says it is engaged
    for switch in switches:
        switch.engaged = False
        switch.save()

    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))

    found = re.search(r'id="kill-switch-released">(.*?)</p>', page.text)
    assert html.unescape(found.group(1)) == (
        "No kill switch covers it now: those above have been released since. It still waits "
        "for a person's decision."
    )


def test_an_execution_reads_its_states_as_the_proposals_page_does(operator, login):
    bid = evaluated(bid_adjustment("2.10"))
    batch = evaluated(creative_batch(creative(headline="Savings", body="Save.")))
    proposal_approve(proposal_id=batch.pk, reviewer=operator)
    for proposal in (bid, batch):
        assert proposal_execute(proposal_id=proposal.pk).status == "executed"
    auditor = login("auditor")

    def shown(proposal) -> str:
        execution = proposal.executions.get()
        page = auditor.get(reverse("admin:approvals_execution_change", args=[execution.pk]))
        assert page.status_code == 200
        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.content.decode())).split())

    bid_page, batch_page = shown(bid), shown(batch)
    assert "Before: brand-search bid 2.00" in bid_page
    assert "After: brand-search bid 2.10" in bid_page
    assert "Creatives deployed: —" in bid_page
    [deployed] = Creative.objects.filter(deployed_by_proposal=batch)
    campaign = deployed.campaign.external_id
    assert (
        f"Creatives deployed: on {campaign}: ledger record #{deployed.pk} “Savings”" in batch_page
    )
    assert "{&quot;" not in batch_page and '{"' not in batch_page


def test_a_deployed_headline_with_a_right_to_left_override_stays_inside_its_quotes(operator, login):
    """An execution lists the creatives it deployed one after another: a headline carrying a
    right-to-left override (flagged, still approvable) reversed the records listed after it,
    so the auditor read another record's number beside it."""
    batch = evaluated(
        creative_batch(
            creative(headline="Spring \u202esale", body="Save."),
            creative(headline="Summer", body="Save."),
        )
    )
    proposal_approve(proposal_id=batch.pk, reviewer=operator)
    assert proposal_execute(proposal_id=batch.pk).status == "executed"
    execution = batch.executions.get()

    page = login("auditor").get(reverse("admin:approvals_execution_change", args=[execution.pk]))

    first, second = Creative.objects.filter(deployed_by_proposal=batch).order_by("pk")
    listed = page.content.decode().split(f"ledger record #{first.pk}</a>")[1]
    assert listed.startswith(" <bdi>“Spring \u202esale”</bdi>, "), listed[:80]
    assert f"ledger record #{second.pk}</a> <bdi>“Summer”</bdi>" in listed


def test_approving_says_which_other_proposals_it_ends_once_it_executes(login, operators):
    """Two waiting raises of brand-search's bid: approving one ends the other once it runs,
    the other's approvals notwithstanding. Its page and the bulk confirmation say so before the
    person approves; a proposal on another campaign is not named."""
    first = evaluated(bid_adjustment("2.50"))
    second = evaluated(bid_adjustment("2.60"))
    elsewhere = evaluated(bid_adjustment("2.00", campaign="generic-search"))
    assert {p.status for p in (first, second, elsewhere)} == {"pending_review"}
    client = login("operator")

    page = html.unescape(
        client.get(reverse("admin:approvals_proposal_change", args=[second.pk])).text
    )

    said = re.sub(r"\s+", " ", page.split('id="ends-when-executed">')[1].split("</div>")[0])
    assert "Approving it ends 1 other proposal once it executes" in said
    assert (
        f"#{first.pk}, {first.summary} (optimizer, pending review): made against brand-search's "
        "bid 2.00, which this one sets to 2.60."
    ) in said
    assert f"#{elsewhere.pk}" not in said
    # Under the two-person rule this person's approval alone does not run it.
    Proposal.objects.filter(pk=second.pk).update(required_approvals=2)
    page = html.unescape(
        client.get(reverse("admin:approvals_proposal_change", args=[second.pk])).text
    )
    said = re.sub(r"\s+", " ", page.split('id="ends-when-executed">')[1].split("</div>")[0])
    assert "Once it has the 1 more approval it needs after yours and executes, it ends 1 other" in (
        said
    )
    Proposal.objects.filter(pk=second.pk).update(required_approvals=1)

    selected = {"action": "approve_selected", "_selected_action": [second.pk, elsewhere.pk]}
    confirm = html.unescape(client.post(CHANGELIST, selected).text)
    rows = {
        row.split("</td>")[0].split(">")[-1]: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row))
        for row in confirm.split('id="bulk-proposals"')[1].split("</table>")[0].split("<tr>")[2:]
    }
    assert f"Approved: it executes. Once it has, it ends #{first.pk}," in rows[str(second.pk)]
    assert "Once it has" not in rows[str(elsewhere.pk)]
    # Selected with it, the one it ends is said on its own row, not again on this one's.
    with_first = {**selected, "_selected_action": [first.pk, second.pk]}
    confirm = html.unescape(client.post(CHANGELIST, with_first).text)
    assert "Once it has" not in confirm.split('id="bulk-proposals"')[1]

    proposal_approve(proposal_id=second.pk, reviewer=operators[0])
    proposal_execute(proposal_id=second.pk)
    assert Proposal.objects.get(pk=first.pk).status == "superseded"


def test_what_approving_an_edited_proposal_ends_is_said_of_the_edit_that_would_run(operators):
    """A raise of generic-search's daily budget to 650.00 its reviewer edited to 540.00 (the
    first of two approvals), beside another waiting raise to 600.00: each page says what
    approving it ends by the figure that would run, the edit's, never the agent's 650.00."""
    edited = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "650.00"}}
    )
    other = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "600.00"}}
    )
    Proposal.objects.filter(pk__in=[edited.pk, other.pk]).update(required_approvals=2)
    proposal_approve(
        proposal_id=edited.pk,
        reviewer=operators[0],
        edited_payload={"campaign": "generic-search", "new_daily_budget": "540.00"},
    )
    edited.refresh_from_db()
    assert (edited.status, edited.approvals_this_round) == ("pending_review", 1)
    second = Client()
    second.force_login(operators[1])

    def ends(proposal) -> str:
        page = second.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])).text
        return as_read(page.split('id="ends-when-executed">')[1].split("</div>")[0])

    assert (
        f"#{other.pk}, {other.summary} (optimizer, pending review): made against "
        "generic-search's daily budget 500.00, which this one sets to 540.00."
    ) in ends(edited)
    assert (
        f"#{edited.pk}, daily budget of generic-search 500.00 → 540.00 USD (+8.0%) (optimizer, "
        "pending review, 1 of 2 approvals given): made against generic-search's daily budget "
        "500.00, which this one sets to 600.00."
    ) in ends(other)
    assert "650.00" not in ends(edited) + ends(other)


def test_the_proposals_approving_one_would_end_are_counted_past_ten_and_a_gone_campaign_ends_none(
    login,
):
    """Twelve other raises of one bid waiting: the page lists ten and says how many more
    (an agent's thousands would make every approver's page megabytes). With the campaign gone
    from the ledger, the page and the bulk confirmation still answer, naming none."""
    others = [evaluated(bid_adjustment(f"2.{50 + n}")) for n in range(12)]
    proposal = evaluated(bid_adjustment("2.90"))
    client = login("operator")
    url = reverse("admin:approvals_proposal_change", args=[proposal.pk])

    said = html.unescape(client.get(url).text).split('id="ends-when-executed">')[1]
    said = said.split("</div>")[0]
    assert "Approving it ends 12 other proposals once it executes" in said
    assert len(re.findall(r"<li>#\d+, ", said)) == 10
    assert "<li>and 2 more.</li>" in said
    assert f"#{others[0].pk}, " in said

    Campaign.objects.filter(external_id="brand-search").update(external_id="brand-search-old")
    page = client.get(url)
    assert page.status_code == 200
    assert 'id="ends-when-executed"' not in page.text
    selected = {"action": "approve_selected", "_selected_action": [proposal.pk]}
    assert client.post(CHANGELIST, selected).status_code == 200


def test_a_routing_by_a_later_version_of_the_same_policy_reads_as_its_versions(login):
    """Re-routed before executing under the same policy, which its owner changed since, a
    proposal's history names the policy's two versions, as a change of policy reads; not
    two history records' ids."""
    proposal = evaluated(reallocation("90.00"))  # 9% of 1000.00: within the 10% ceiling
    assert proposal.verdict_outcome == "auto_approve"
    policy = Policy.objects.get(pk=proposal.verdict_policy_id)
    policy.name = "Reallocations (tightened)"
    policy.save()
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("800.00"))

    rerouted = proposal_execute(proposal_id=proposal.pk)

    assert rerouted.status == "pending_review"
    assert rerouted.verdict_policy_id == policy.pk
    text = history_text(login("auditor"), Proposal, proposal.pk)
    assert (
        f"Verdict policy version: “Budget reallocations” (policy #{policy.pk}, version 1) → "
        f"“Reallocations (tightened)” (policy #{policy.pk}, version 2)"
    ) in text, text[text.find("Verdict policy version") :][:300]


def test_a_reassessment_names_the_policy_version_it_was_reached_under_not_a_record_id(
    operator, login
):
    """An edit re-assesses a proposal under the policy in force: its history names that
    version as the proposal's page does ("in its version 1"), not by its history record's
    id, which reads as a version the policy never had ("Reassessed policy version: — → 2" of
    a policy saved once)."""
    proposal = evaluated(reallocation("280.00"))
    policy = Policy.objects.get(pk=proposal.verdict_policy_id)
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=operator,
        edited_payload={**proposal.payload, "amount": "90.00"},
    )
    proposal.refresh_from_db()
    assert proposal.reassessed_policy_version is not None

    text = history_text(login("auditor"), Proposal, proposal.pk)

    said = text[text.find("Reassessed policy version") :][:120]
    assert said.startswith(
        f"Reassessed policy version: — → “{policy.name}” (policy #{policy.pk}, version 1)"
    ), said


def test_a_failed_proposal_says_why_beside_its_status_and_its_retry(login):
    """An operator deciding whether to retry reads why it failed where the page says it
    failed, and before the button: the status said only "Failed", the channel's words were
    in the last table of a long page (a phone's screenfuls below the retry)."""
    raise_ = failed_budget_raise()
    attempt = raise_.executions.get()
    # The cap lifted since: a retry would run, and is offered (one the cap still refuses is
    # not: tests/test_guardrail_refuses_retry.py).
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)

    page = page_of(login("operator"), raise_).content.decode()

    status = re.search(r"<strong>Status:</strong>(.*?)</p>", page, re.S).group(1)
    said = " ".join(html.unescape(re.sub(r"<[^>]+>", "", status)).split())
    finished = timezone.localtime(attempt.finished_at).strftime("%Y-%m-%d %H:%M:%S")
    assert said == (
        f"Failed · attempt 1 by the ledger executor failed at {finished} UTC: {attempt.error}"
    )
    words = html.escape(attempt.error)
    assert attempt.error and page.index(words) < page.index('id="retry-form"')


def test_every_time_on_a_proposals_page_and_its_history_names_its_zone(operator, login):
    """Its status line said "expires … UTC" above a timeline, decisions, executions and a
    history that wrote "2026-12-05 00:41:38" with no zone: every time the console writes
    names it, as its sentences already did."""
    from notifications.services import proposal_claim

    earlier = evaluated(reallocation("100.00"))  # 10%: runs with nobody deciding
    assert proposal_execute(proposal_id=earlier.pk).status == "executed"
    reference = evaluated(reallocation("280.00"))
    proposal_claim(proposal_id=reference.pk, user=operator)
    proposal_approve(proposal_id=reference.pk, reviewer=operator, note="Fine.")
    proposal_execute(proposal_id=reference.pk)
    waiting = evaluated(reallocation("150.00"))
    proposal_claim(proposal_id=waiting.pk, user=operator)
    client = login("operator")

    pages = {
        "its page": page_of(client, reference),
        "its history": client.get(reverse("admin:approvals_proposal_history", args=[reference.pk])),
        "the queue": client.get(CHANGELIST),
        "the decisions": client.get(reverse("admin:approvals_decision_changelist")),
    }

    for name, page in pages.items():
        text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.content.decode())).split())
        times = re.findall(r"(?:\d{4}-\d\d-\d\d )?\d\d:\d\d(?::\d\d)?(?: [A-Z]{3})?", text)
        assert times, name
        assert all(time.endswith(" UTC") for time in times), (name, times)
    decisions = pages["its page"].content.decode().split('id="proposal-decisions"')[1]
    assert re.search(
        r'<td data-label="When">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td>'
        r'<td data-label="Reviewer">operator</td>',
        decisions,
    )
    assert "operator until" in pages["the queue"].content.decode()


def test_a_retry_that_would_end_superseded_says_so_before_it_is_pressed(login):
    """Retried, a failed value whose target moved since ends superseded and sets nothing:
    the operator read "Retry execution" alone, pressed it and was told "is sent to be
    executed again", then "is now superseded". It is said before the retry, which ends it
    superseded there and then."""
    raise_ = failed_budget_raise()
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    operator = login("operator")
    assert 'id="retry-ends-it"' not in page_of(operator, raise_).text  # nothing moved yet

    Campaign.objects.filter(external_id="generic-search").update(daily_budget="600.00")
    page = page_of(operator, raise_).text

    said = html.unescape(re.search(r'id="retry-ends-it">(.*?)</p>', page, re.S).group(1))
    assert said == (
        "It was made against a value that has changed since (generic-search's daily budget "
        "is 600.00, was 500.00): retried, it is superseded there and then, and nothing is "
        "sent to run; optimizer is told the value it saw and the value now."
    )
    assert page.index('id="retry-ends-it"') < page.index('id="retry-form"')
    operator.post(reverse("admin:approvals_proposal_retry", args=[raise_.pk]))
    raise_.refresh_from_db()
    assert raise_.status == "superseded"
    assert Campaign.objects.get(external_id="generic-search").daily_budget == Decimal("600.00")


def test_the_money_a_proposal_moves_is_shown_in_its_accounts_currency(login):
    """It read "Amount: 280.00", "in the account's currency" in small print beneath: the
    figure is said with its currency, as the proposal's summary says it."""
    moving = evaluated(reallocation("280.00"))
    strategy = evaluated(target_cpa_strategy())

    for proposal, shown in ((moving, "280.00 USD"), (strategy, "—")):
        page = page_of(login("operator"), proposal).content.decode()
        row = page.split("field-amount_display")[1]
        assert "Money moved per day:" in row.split("</label>")[0]
        assert row.split('<div class="readonly">')[1].split("</div>")[0].strip() == shown


def test_a_proposals_page_is_headed_once_by_what_was_proposed(operator, login):
    """A screen reader's list of headings read "View proposal", "#1 move 200.00 USD/day …
    (28.6%)", then "#1 · move 280.00 USD/day … (28.0%)": two headings for one proposal, with
    two different moves, the first unexplained. The page is headed by what was proposed, the
    action as it reads now said under it."""
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=operator,
        edited_payload={**proposal.payload, "amount": "200.00"},
    )
    proposal.refresh_from_db()

    page = page_of(login("operator"), proposal).content.decode()

    headings = [
        " ".join(html.unescape(re.sub(r"<[^>]+>", "", heading)).split())
        for heading in re.findall(r"<h[1-3][^>]*>(.*?)</h[1-3]>", page, re.S)
    ]
    assert headings[:2] == [
        "View proposal",
        f"#{proposal.pk} · move 280.00 USD/day from brand-search to generic-search (28.0%)",
    ]
    assert not any("move 200.00" in heading for heading in headings)
    assert f"As edited:</strong> {proposal.summary}" in page


def test_the_agents_figures_read_as_it_sent_them_not_rounded_to_other_numbers(login):
    """A conversion rate of 0.00012 read "0.0001" in the chart's caption, its range
    "0.0001 – 0.0002" (neither was sent), and a confidence of 0.999 read "1.00"."""
    proposal = evaluated(
        reallocation(
            confidence=0.999,
            supporting_data={
                "conversion_rate": [0.00019, 0.00015, 0.00012],
                "spend": [12500.5, 13010.25, 1234567.891],
                "clicks": [3, 2e-7],
            },
        )
    )
    page = page_of(login("auditor"), proposal)
    text = html.unescape(re.sub(r"<[^>]+>", " ", page.text))
    words = " ".join(text.split())
    assert "(confidence 0.999)" in words
    assert "conversion_rate (0.00012 – 0.00019)" in words
    assert "conversion_rate (last 0.00012)" in words
    assert "spend (12500.5 – 1234567.891)" in words
    assert "clicks (0.0000002 – 3)" in words
    for not_sent in ("1.00)", "0.0001 ", "0.0002)", "12500.5000", "0.0000 "):
        assert not_sent not in words


def status_line(page) -> str:
    """The proposal's status line, as its reader reads it (tags dropped, spaces as one)."""
    line = page.text.split("<strong>Status:</strong>")[1].split("</p>")[0]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", line))).strip()


def test_a_rejected_proposals_status_says_who_rejected_it_why_and_when(operator, login):
    """Its status line read only "Rejected": who, why and when were in the Decisions table
    further down."""
    proposal = evaluated(bid_adjustment("2.50"))
    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="too_aggressive")
    decided = proposal.decisions.get().created_at

    page = page_of(login("auditor"), proposal)

    assert status_line(page) == (
        f"Rejected · operator rejected it (too aggressive) at {decided:%Y-%m-%d %H:%M:%S} UTC."
    )


def test_a_superseded_proposals_status_links_the_proposal_that_executed_first_and_when(
    operator, login
):
    """Its page read "Superseded", "Decided at —", and a review expiry three days on: no word
    of what ended it, nor when. Its Slack message says it in the same words."""
    first, second = (evaluated(bid_adjustment(bid)) for bid in ("2.50", "2.60"))
    proposal_approve(proposal_id=second.pk, reviewer=operator)
    assert proposal_execute(proposal_id=second.pk).status == "executed"
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == "superseded"

    page = page_of(login("operator"), first)

    said = (
        f"#{second.pk} changed its target first, executed at "
        f"{second.executed_at:%Y-%m-%d %H:%M:%S} UTC: nothing was done."
    )
    assert status_line(page) == f"Superseded · {said}"
    link = reverse("admin:approvals_proposal_change", args=[second.pk])
    assert f'<a href="{link}">#{second.pk}</a> changed its target first' in page.text
    assert "Review expires at" not in page.text
    assert outcome_text(first) == f"Superseded. {said}"  # its Slack message's words


def test_a_retried_proposal_superseded_says_when_it_was_approved_and_when_retried(operator, login):
    """Operator approved a budget raise at 12:04:36; its execution failed; at 12:06:24 the
    operator retried it; another change moved the budget before it ran: superseded. Its
    status read "operator approved it at 12:06:24 UTC, then its target changed before it
    ran, at 12:06:24 UTC": the retry's time as the approval's, and the time the change was
    found as the time it was made."""
    raise_ = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "600.00"}}
    )
    assert raise_.status == "pending_review"
    proposal_approve(proposal_id=raise_.pk, reviewer=operator)
    approved_at = timezone.now() - timedelta(minutes=2)
    Decision.objects.filter(proposal=raise_).update(created_at=approved_at)
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="510.00")
    assert proposal_execute(proposal_id=raise_.pk).status == "failed"
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    proposal_retry(proposal_id=raise_.pk, reviewer=operator)
    Campaign.objects.filter(external_id="generic-search").update(daily_budget="550.00")
    assert proposal_execute(proposal_id=raise_.pk).status == "superseded"
    raise_.refresh_from_db()
    retried = raise_.history.filter(history_change_reason__startswith="sent to run again by ")
    retried_at = retried.get().history_date

    page = page_of(login("auditor"), raise_)

    assert status_line(page) == (
        f"Superseded · operator approved it at {approved_at:%Y-%m-%d %H:%M:%S} UTC, its "
        f"execution failed, and operator sent it to run again at "
        f"{retried_at:%Y-%m-%d %H:%M:%S} UTC, then its target "
        f"was found changed before it ran, at {raise_.updated_at:%Y-%m-%d %H:%M:%S} UTC: "
        "nothing was done."
    )
    assert outcome_text(raise_) == f"Superseded. {status_line(page).split(' · ', 1)[1]}"
    # A retry recorded before it was said so ("execution retried by operator") reads the same.
    raise_.history.filter(pk=retried.get().pk).update(
        history_change_reason="execution retried by operator"
    )
    assert status_line(page_of(login("auditor"), raise_)) == status_line(page)


def test_a_superseded_proposal_nobody_retried_is_said_without_reading_its_history(operator):
    """Approved, then superseded as it was to run, never retried: it reads as approved at its
    decision's time, its history not read for a retry that never was (a retry is told by its
    approval's time, after the decision's, as everywhere else: ``was_retried``)."""
    raise_ = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "600.00"}}
    )
    proposal_approve(proposal_id=raise_.pk, reviewer=operator)
    Campaign.objects.filter(external_id="generic-search").update(daily_budget="550.00")
    assert proposal_execute(proposal_id=raise_.pk).status == "superseded"
    # As its page reads it: with when it was superseded, as its history records the move.
    raise_ = with_ended_recorded(Proposal.objects.filter(pk=raise_.pk)).get()
    approvals = list(raise_.decisions.select_related("reviewer").order_by("created_at"))

    with CaptureQueriesContext(connection) as read:
        said = superseded_said(raise_, approvals)

    assert said == (
        f"operator approved it at {approvals[-1].created_at:%Y-%m-%d %H:%M:%S} UTC, then its "
        f"target was found changed before it ran, at {raise_.updated_at:%Y-%m-%d %H:%M:%S} "
        "UTC: nothing was done."
    )
    assert read.captured_queries == []


@pytest.mark.parametrize(
    "status, expiry_said",
    [
        ("pending_review", "Review expires at"),
        ("approved", None),
        ("executing", None),
        ("executed", None),
        ("failed", None),
        ("blocked", None),
        ("rejected", None),
        ("superseded", None),
        ("withdrawn", None),
        ("expired", "Review window closed at"),
    ],
)
def test_only_a_proposal_still_in_review_shows_when_its_review_expires(status, expiry_said, login):
    proposal = evaluated(bid_adjustment("2.50"))
    Proposal.objects.filter(pk=proposal.pk).update(status=status)

    page = page_of(login("auditor"), proposal)

    timeline = page.text.split("Timeline</h2>")[1].split("</fieldset>")[0]
    shown = [said for said in ("Review expires at", "Review window closed at") if said in timeline]
    assert shown == ([expiry_said] if expiry_said else [])
    if expiry_said:
        assert f"{proposal.review_expires_at:%Y-%m-%d %H:%M:%S} UTC" in timeline


def as_read(markup: str) -> str:
    """Markup as its reader reads it: tags dropped, spaces as one."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", markup))).strip()


def readonly_field(page, label: str) -> str:
    """A read-only field's value on an admin page, as its reader reads it."""
    row = page.text.split(f">{label}:</label>")[1].split('<div class="readonly">')[1]
    return as_read(row.split("</div>")[0])


def failures_told(optimizer, amounts: list[str]) -> list[Proposal]:
    """Small reallocations, each let run by its policy with no person, whose execution the
    channel refuses: the first failure is told at once, the others held to go together."""
    answer = optimizer.post(
        "/api/v1/proposals/batch/", [reallocation(amount) for amount in amounts], format="json"
    )
    assert answer.status_code in (200, 201), answer.content
    proposals = [Proposal.objects.get(pk=item["proposal"]["id"]) for item in answer.json()]
    for proposal in proposals:
        assert proposal.review_round == 0, proposal.status  # no person ever reviewed it
        assert proposal_execute(proposal_id=proposal.pk).status == "failed"
    Notification.objects.filter(status=NotificationStatus.HELD).update(
        next_attempt_at=timezone.now()
    )
    notifications_send_digests()
    return proposals


def notification_page(client, proposal: Proposal):
    [told] = Notification.objects.filter(proposal=proposal, kind=NotificationKind.FAILED)
    return told, client.get(reverse("admin:notifications_notification_change", args=[told.pk]))


def test_a_failure_told_on_its_own_reads_as_no_review_round_and_no_digest_of_one(
    optimizer, channel, login
):
    """Its page read "Review round: 0" for a proposal its policy let run (it never had a
    review round), "In digest ✓", and "in a digest of #13" in its log, for a message that
    told of that one proposal alone."""
    channel(400, says=b'{"error": "campaign ids unknown"}')
    first, second = failures_told(optimizer, ["5.00", "5.01"])

    told, page = notification_page(login("auditor"), second)

    assert told.status == NotificationStatus.SENT
    assert readonly_field(page, "Review round") == "none: its policy let it run without a person"
    assert readonly_field(page, "Sent with") == (
        "nothing else: it went on its own, nothing else being held for them"
    )
    assert "UTC: on its own (held to go with other failures, none was held for them): accepted" in (
        readonly_field(page, "Log")
    )
    assert "digest" not in as_read(page.text.split('id="content"')[1])
    # Its history says the same, not "In digest: no → yes".
    history = login("auditor").get(
        reverse("admin:notifications_notification_history", args=[told.pk])
    )
    assert "Sent with: — → nothing else: it went on its own, nothing else being held" in (
        as_read(history.text)
    )
    assert "In digest" not in history.text
    # The first, told at once, in a message of its own.
    [told_at_once] = Notification.objects.filter(proposal=first, kind=NotificationKind.FAILED)
    notifications_deliver(notification_ids=[told_at_once.pk])
    first_page = notification_page(login("auditor"), first)[1]
    assert readonly_field(first_page, "Sent with") == "nothing else: a message of its own"


def test_failures_told_together_name_each_other_as_one_message_not_a_digest(
    optimizer, channel, login
):
    channel(400, says=b'{"error": "campaign ids unknown"}')
    _, second, third = failures_told(optimizer, ["5.00", "5.01", "5.02"])

    _, page = notification_page(login("operator"), second)

    assert readonly_field(page, "Sent with") == (
        f"#{third.pk}, in one message telling of their failures"
    )
    assert (
        f"in one message telling of the failures of #{second.pk}, #{third.pk}: accepted"
        in readonly_field(page, "Log")
    )
    assert "digest" not in as_read(page.text.split('id="content"')[1])


def test_the_bulk_confirmation_says_why_a_failed_proposal_failed_not_how_it_came_to_run(login):
    """Its status column read "Failed: Its policy let it run without a person at …": how it
    came to run, where the proposal's page says why it failed."""
    raise_ = failed_budget_raise()
    attempt = raise_.executions.get()
    finished = timezone.localtime(attempt.finished_at).strftime("%Y-%m-%d %H:%M:%S")
    why = f"Failed: attempt 1 by the ledger executor failed at {finished} UTC: {attempt.error}"
    client = login("operator")

    for action in ("approve_selected", "reject_selected"):
        confirm = client.post(CHANGELIST, {"action": action, "_selected_action": [raise_.pk]})

        [status] = re.findall(r"<td[^>]*>(Failed.*?)</td>", confirm.text, re.S)
        said = as_read(status)
        assert said == why, action
        assert "let it run" not in said
    # As its page's status line says it.
    assert status_line(page_of(client, raise_)) == why.replace("Failed:", "Failed ·")


def test_the_bulk_confirmation_of_two_failed_proposals_says_why_each_failed(login):
    """Its banner said "(of one that failed, why it failed)" of two that had failed."""
    raises = [failed_budget_raise(), failed_budget_raise("brand-search", "1050.00", "1010.00")]

    confirm = login("operator").post(
        CHANGELIST,
        {"action": "reject_selected", "_selected_action": [raise_.pk for raise_ in raises]},
    )

    banner = as_read(confirm.text.split('id="bulk-skipped">')[1].split("</p>")[0])
    assert banner.endswith("(of those that failed, why each failed).")
    assert "of one that failed" not in banner


def test_an_edit_approved_after_a_colleague_approved_first_says_it_was_approved_already(
    login, operators
):
    """An operator edits and approves from a page loaded before a colleague approved the
    proposal (it has executed since): the console says it was approved already, by whom and
    when, not that it "cannot become approved", which reads as if it never will be."""
    _, colleague = operators
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=colleague)
    assert proposal_execute(proposal_id=proposal.pk).status == "executed"
    approved_at = proposal.decisions.get().created_at

    client = login("operator")
    change_url = reverse("admin:approvals_proposal_change", args=[proposal.pk])
    for act, form in (
        ("approve", {"note": "Fine."}),
        ("edit-approve", {"edit-amount": "200.00", "edit-note": "Smaller."}),
    ):
        decided_from_page(client, act, proposal.pk, form)
        [said] = [str(message) for message in client.get(change_url).context["messages"]]
        assert said.endswith(
            f"Proposal #{proposal.pk} is executed; it was approved already. second-operator "
            f"approved it at {approved_at:%Y-%m-%d %H:%M:%S} UTC."
        ), said
        assert "cannot become approved" not in said
    assert proposal.decisions.count() == 1


def test_a_retry_leaves_the_approval_time_in_the_history_and_reads_as_a_retry(operator, login):
    """A retry stamps the proposal's ``approved_at`` (its moves count from then): its history
    read "Approved at: 12:04:58 → 12:11:19", the approval moved though nobody approved it
    again; then "Sent to run again at: — → 12:11:19", as if the field had held nothing, and
    nowhere that the approval's time was written over (the export says it was). The one
    field changed reads as one change, each side as what it was, in the entry of the person
    who retried it; a second retry, from the first's time."""
    raise_ = failed_budget_raise()
    approved = timezone.now() - timedelta(minutes=7)
    backdated(raise_, created_at=approved, decided_at=approved)
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    proposal_retry(proposal_id=raise_.pk, reviewer=operator)
    raise_.refresh_from_db()
    assert raise_.approved_at > approved

    text = history_text(login("auditor"), Proposal, raise_.pk)

    approved_said = timezone.localtime(approved).strftime("%Y-%m-%d %H:%M:%S")
    retried_said = timezone.localtime(raise_.approved_at).strftime("%Y-%m-%d %H:%M:%S")
    assert f"Approved to run at: — → {approved_said} UTC" in text
    # Its own entry: who retried it, when, its move back to running, and what it wrote over.
    assert (
        f"{retried_said} UTC Changed operator (person) sent to run again by operator "
        f"Status: Failed → Approved Approved to run at: {approved_said} UTC → sent to run "
        f"again at {retried_said} UTC"
    ) in text
    assert "— → sent to run again" not in text and "Sent to run again at" not in text

    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="510.00")
    assert proposal_execute(proposal_id=raise_.pk).status == "failed"
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    proposal_retry(proposal_id=raise_.pk, reviewer=operator)
    again = timezone.localtime(Proposal.objects.get(pk=raise_.pk).approved_at)
    assert (
        f"Approved to run at: sent to run again at {retried_said} UTC → sent to run again at "
        f"{again:%Y-%m-%d %H:%M:%S} UTC"
    ) in history_text(login("auditor"), Proposal, raise_.pk)
