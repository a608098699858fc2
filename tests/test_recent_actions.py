"""The console's home page lists each person's own recent acts in the console, each saying
what was done and linking to what it was done to: the console's own views (a decision, a bulk
decision, a promotion) are logged as the admin logs a form it saves."""

import re
from html import unescape

from django.contrib.admin.models import LogEntry
from django.db import OperationalError
from django.test import Client
from django.urls import reverse

from approvals.models import Decision, Proposal
from policies.models import KillSwitch, Policy
from tests.conftest import (
    confirmed_from_page,
    creative,
    creative_batch,
    decided_from_page,
    reallocation,
)
from tests.factories import evaluated
from tests.test_policy_tuning import duplicate, form_data

INDEX = reverse("admin:index")


def recent_actions(client: Client) -> list[tuple[str, str, str]]:
    """The home page's "recent actions" box as read: each act's object (its text and link)
    and what was done to it."""
    page = client.get(INDEX)
    assert page.status_code == 200
    box = page.text.split('id="recent-actions-module"', 1)[1].split("</ul>", 1)[0]
    return [
        (unescape(text).strip(), unescape(href), unescape(said).strip())
        for href, text, said in re.findall(
            r'<a href="([^"]+)">([^<]+)</a>\s*<br><span class="recent-action-said">([^<]+)</span>',
            box,
        )
    ]


def test_the_home_page_lists_what_each_person_did_in_the_console(login):
    operator, owner = login("operator"), login("policy-owner")
    assert "None yet." in operator.get(INDEX).text

    single, rejected, *in_bulk = [evaluated(reallocation(f"{200 + n}.00")) for n in range(5)]
    edited = evaluated(creative_batch(creative()))
    proposal_page = "admin:approvals_proposal_{}"
    assert (decided_from_page(operator, "approve", single.pk, {"note": ""})).status_code == 302
    assert (
        decided_from_page(
            operator,
            "reject",
            rejected.pk,
            {"reason_code": "too_aggressive", "note": ""},
        )
    ).status_code == 302
    assert (
        decided_from_page(
            operator,
            "edit-approve",
            edited.pk,
            {
                "edit-creative-0-headline": "Search smarter",
                "edit-creative-0-body": "Results most customers see in a week.",
                "edit-creative-0-call_to_action": "Try it",
                "edit-note": "",
            },
        )
    ).status_code == 302
    bulk = confirmed_from_page(
        operator,
        reverse(proposal_page.format("changelist")),
        {
            "action": "approve_selected",
            "_selected_action": [p.pk for p in in_bulk],
            "confirm": "yes",
            "note": "",
        },
    )
    assert bulk.status_code == 302

    policy = Policy.objects.get(action_type="budget_reallocation", is_draft=False)
    draft = duplicate(owner, policy, auto_execute_max_magnitude="30", change_reason="Try 30%.")
    promoted = owner.post(
        reverse("admin:policies_policy_promote", args=[draft.pk]), {"change_reason": "Agreed."}
    )
    assert promoted.status_code == 302
    engaged = owner.post(
        reverse("admin:policies_killswitch_add"),
        {
            "scope": "global",
            "engaged": "on",
            "reason": "Conversion tracking is down.",
            "change_reason": "Stop everything until tracking is back.",
        },
    )
    assert engaged.status_code == 302
    switch = KillSwitch.objects.get()
    # One added and not engaged was released by nobody.
    ready = owner.post(
        reverse("admin:policies_killswitch_add"),
        {
            "scope": "channel",
            "channel": "meta",
            "reason": "Ready for the next Meta outage.",
            "change_reason": "Set up ahead of time.",
        },
    )
    assert ready.status_code == 302
    spare = KillSwitch.objects.get(scope="channel")

    def shown(proposal: Proposal, said: str) -> tuple[str, str, str]:
        proposal.refresh_from_db()
        return (str(proposal), reverse(proposal_page.format("change"), args=[proposal.pk]), said)

    # Newest first, each with what was done: the operator's six decisions, and only those.
    assert recent_actions(operator) == [
        *[shown(p, "Approved, in bulk") for p in sorted(in_bulk, key=lambda p: -p.pk)],
        shown(edited, "Approved (as edited)"),
        shown(rejected, "Rejected (too aggressive)"),
        shown(single, "Approved"),
    ]
    policy.refresh_from_db()
    assert recent_actions(owner) == [
        (
            str(spare),
            reverse("admin:policies_killswitch_change", args=[spare.pk]),
            "Added, not engaged",
        ),
        (str(switch), reverse("admin:policies_killswitch_change", args=[switch.pk]), "Engaged"),
        (
            str(policy),
            reverse("admin:policies_policy_change", args=[policy.pk]),
            f"Promoted from draft #{draft.pk}",
        ),
        (str(draft), reverse("admin:policies_policy_change", args=[draft.pk]), "Added."),
    ]
    # Each link leads to the page of what was acted on, for the person who acted.
    for client in (operator, owner):
        for _, link, _ in recent_actions(client):
            assert client.get(link).status_code == 200

    # The box says what it lists: acts here, not the decisions taken from Slack.
    page = operator.get(INDEX).text
    assert "Your recent actions in this console" in page
    assert "Decisions you took from Slack are not among them" in page
    decisions = reverse("admin:approvals_decision_changelist")
    link = re.search(r'href="([^"]+)" id="my-decisions-link"', page)[1]
    assert link.startswith(decisions)
    mine = operator.get(unescape(link))
    assert mine.status_code == 200 and mine.context["cl"].result_count == 6
    # Newest first, as the other records of what happened are listed.
    taken = [decision.created_at for decision in mine.context["cl"].result_list]
    assert taken == sorted(taken, reverse=True) and taken[0] > taken[-1]


def test_who_decides_nothing_is_not_offered_their_decisions(login):
    """An auditor (and a policy owner, who decides no proposal) was told "Decisions you took
    from Slack are not among them: all your decisions", of decisions they may never take."""
    for role in ("auditor", "policy-owner"):
        page = login(role).get(INDEX).text
        assert "Your recent actions in this console" in page
        assert "Decisions you took" not in page and 'id="my-decisions-link"' not in page
    assert 'id="my-decisions-link"' in login("operator").get(INDEX).text


def test_a_claim_and_an_approval_that_waits_for_another_say_so(login, operators):
    _, colleague = operators
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = evaluated(reallocation())
    operator = login("operator")
    for act in ("claim", "release", "approve"):
        done = decided_from_page(operator, act, proposal.pk, {"note": ""})
        assert done.status_code == 302

    proposal.refresh_from_db()
    page = reverse("admin:approvals_proposal_change", args=[proposal.pk])
    # When, as the proposal's page says it: to the second, with its zone and its year ("7 Dec,
    # 14:05 UTC" dropped the seconds, and the three acts of one minute read as simultaneous).
    box = operator.get(INDEX).text.split('id="recent-actions-module"', 1)[1].split("</ul>")[0]
    times = [
        f"{entry.action_time:%Y-%m-%d %H:%M:%S} UTC"
        for entry in LogEntry.objects.filter(user__username="operator").order_by("-action_time")
    ]
    assert re.findall(r"<time [^>]*>([^<]+)</time>", box) == times
    assert recent_actions(operator) == [
        (str(proposal), page, "Approved, 1 of 2 approvals"),
        (str(proposal), page, "Given back"),
        (str(proposal), page, "Claimed"),
    ]
    other = Client()
    other.force_login(colleague)
    assert recent_actions(other) == []
    # Their "all your decisions" lists none, though the operator is the only one who decided.
    link = re.search(r'href="([^"]+)" id="my-decisions-link"', other.get(INDEX).text)[1]
    assert other.get(unescape(link)).context["cl"].result_count == 0
    assert Decision.objects.filter(reviewer__username="operator").count() == 1


def test_a_decision_whose_log_cannot_be_written_is_answered_as_made(login, monkeypatch):
    """The log is written once the decision is done: a database too busy to write it (the
    embedded default's, say) is logged as an error, not shown as an error page over a
    decision that was made."""

    def busy(*args, **kwargs):
        raise OperationalError("database is locked")

    proposal = evaluated(reallocation("210.00"))
    monkeypatch.setattr(LogEntry.objects, "log_actions", busy)
    operator = login("operator")
    answer = decided_from_page(operator, "approve", proposal.pk, {"note": ""})
    assert answer.status_code == 302
    proposal.refresh_from_db()
    assert proposal.decisions.get().outcome == "approve"
    assert "None yet." in operator.get(INDEX).text


def test_a_save_refused_for_changing_nothing_is_not_listed_as_a_change(login):
    """A policy saved as it was is refused ("Nothing was changed …"), and no version is
    written: the home page's recent actions did list it all the same, a change of the policy
    that changed nothing, beside the changes that were made."""
    owner = login("policy-owner")
    policy = Policy.objects.get(action_type="budget_reallocation", is_draft=False)
    url = reverse("admin:policies_policy_change", args=[policy.pk])
    refused = owner.post(url, form_data(owner, url, change_reason="Saved again."), follow=True)
    said = [str(m) for m in refused.context["messages"]]
    assert len(said) == 1 and said[0].startswith("Nothing was changed"), said

    assert recent_actions(owner) == []
    assert not LogEntry.objects.filter(object_id=str(policy.pk)).exists()
