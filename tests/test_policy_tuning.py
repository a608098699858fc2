"""Tuning a policy in the console: ceilings in percent, duplicate as draft, dry run and
simulate it, then promote it; every policy and guardrail change says why; the dry run names
the rule that held a proposal back and can try a ceiling for one run."""

import html
import json
import re
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from approvals.models import Agent
from audit.actors import Actor
from hitlproject.errors import DomainError
from hitlproject.formats import console_time
from ledger.models import Account
from policies import engine
from policies.drafts import policy_promote, replaced_policy
from policies.models import BrandGuidelines, KillSwitch, Policy
from tests.conftest import posted_from_page, reallocation
from tests.factories import evaluated

REFERENCE = {"from_campaign": "brand-search", "to_campaign": "generic-search", "amount": "280"}


@pytest.fixture
def owner(login) -> Client:
    return login("policy-owner")


def reallocations() -> Policy:
    return Policy.objects.get(action_type="budget_reallocation", is_draft=False)


def change_url(policy: Policy) -> str:
    return reverse("admin:policies_policy_change", args=[policy.pk])


def form_data(client: Client, url: str, **values) -> dict:
    """What the page's form would post as it is shown, with ``values`` typed in."""
    form = client.get(url).context["adminform"].form
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is False or value is None:
            continue  # an unchecked box, an empty field
        data[name] = value
    data |= values
    return {name: value for name, value in data.items() if value is not False}


def history_of(policy: Policy):
    return Policy.history.filter(id=policy.pk).order_by("-history_id")


def dry_run(client: Client, policy: Policy, payload: dict, **typed) -> object:
    return client.post(
        reverse("admin:policies_policy_dry_run", args=[policy.pk]),
        {
            "agent": Agent.objects.get(name="optimizer").pk,
            "account": Account.objects.get(external_id="demo").pk,
            "payload": json.dumps(payload),
            **typed,
        },
    )


# Percentages where people think in percentages.


def test_ceilings_are_typed_and_shown_in_percent_and_stored_as_the_exact_fraction(owner, login):
    policy = reallocations()
    page = owner.get(change_url(policy))
    form = page.context["adminform"].form
    assert form["auto_execute_max_magnitude"].value() == Decimal("10")
    assert form["cumulative_max_magnitude"].value() == Decimal("25")
    assert 'value="10"' in page.text and "0.100000" not in page.text

    posted = owner.post(
        change_url(policy),
        form_data(
            owner,
            change_url(policy),
            auto_execute_max_magnitude="12.5",
            cumulative_max_magnitude="33.3333",
            change_reason="Reallocations have gone well for a month.",
        ),
    )

    assert posted.status_code == 302, posted.text
    policy.refresh_from_db()
    assert policy.auto_execute_max_magnitude == Decimal("0.125")
    assert policy.cumulative_max_magnitude == Decimal("0.333333")
    listed = owner.get(reverse("admin:policies_policy_changelist")).text
    assert "12.5%" in listed and "33.3333%" in listed and "15%" in listed  # bids, untouched
    assert "0.125000" not in listed
    read_only = login("auditor").get(change_url(policy)).text  # an auditor's page
    assert "12.5%" in read_only and "0.125000" not in read_only


def test_the_policy_list_names_action_types_as_the_queue_does_and_filters_by_them(owner):
    listed = owner.get(reverse("admin:policies_policy_changelist"))
    rows = listed.context["cl"].result_list
    assert 'class="field-action_type_display">budget reallocation</td>' in listed.text
    assert ">budget_reallocation<" not in listed.text
    # What auto-executes, in one column: its ceiling, with an amount a day where one is set.
    assert 'class="field-auto_executes">up to 10%</td>' in listed.text
    Policy.objects.filter(action_type="budget_reallocation").update(
        auto_execute_max_amount=Decimal("250"), account=Account.objects.get(external_id="demo")
    )
    listed = owner.get(reverse("admin:policies_policy_changelist"))
    assert 'class="field-auto_executes">up to 10% and 250.00 USD a day</td>' in listed.text
    assert 'class="field-auto_executes">never: always review</td>' in listed.text

    filtered = owner.get(
        reverse("admin:policies_policy_changelist"), {"action_type": "budget_reallocation"}
    )
    assert {p.action_type for p in filtered.context["cl"].result_list} == {"budget_reallocation"}
    assert len(filtered.context["cl"].result_list) < len(rows)
    assert ">bid adjustment</a>" in filtered.text  # the filter's choices, in words


@pytest.mark.parametrize(
    "typed, message",
    [
        ("12.34567", "no more than 4 decimal places"),
        ("-5", "greater than or equal to 0"),
        ("ten", "Enter a number in the digits 0–9, with a point for decimals (such as 12.5)."),
    ],
)
def test_a_ceiling_that_is_no_percentage_is_refused_and_changes_nothing(owner, typed, message):
    policy = reallocations()
    page = owner.post(
        change_url(policy),
        form_data(owner, change_url(policy), auto_execute_max_magnitude=typed,
                  change_reason="Trying."),
    )  # fmt: skip
    assert page.status_code == 200
    assert message in page.text
    assert Policy.objects.get(pk=policy.pk).auto_execute_max_magnitude == Decimal("0.1")
    assert history_of(policy).count() == 1  # only its creation


@pytest.mark.parametrize("typed", ["-1", "0"])
def test_required_approvals_below_one_say_at_least_one(owner, typed):
    # -1 was answered "Ensure this value is greater than or equal to 0.", as if 0 were
    # allowed; 0 is refused too.
    policy = reallocations()
    page = owner.post(
        change_url(policy),
        form_data(owner, change_url(policy), required_approvals=typed, change_reason="Trying."),
    )
    assert page.status_code == 200
    assert page.context["adminform"].form.errors["required_approvals"] == [
        "Ensure this value is greater than or equal to 1."
    ]
    assert Policy.objects.get(pk=policy.pk).required_approvals == 1
    assert history_of(policy).count() == 1  # only its creation


# A change reason on every policy and guardrail change.


def test_a_policy_change_without_a_reason_is_refused_and_changes_nothing(owner):
    policy = reallocations()
    page = owner.post(
        change_url(policy), form_data(owner, change_url(policy), auto_execute_max_magnitude="30")
    )
    assert page.status_code == 200
    assert "This field is required." in page.text
    assert Policy.objects.get(pk=policy.pk).auto_execute_max_magnitude == Decimal("0.1")


def test_a_policy_change_records_who_made_it_and_why(owner):
    policy = reallocations()
    owner.post(
        change_url(policy),
        form_data(owner, change_url(policy), auto_execute_max_magnitude="30",
                  change_reason="Q3 plan: larger moves between search campaigns."),
    )  # fmt: skip
    latest = history_of(policy).first()
    assert latest.auto_execute_max_magnitude == Decimal("0.3")
    assert latest.history_change_reason == "Q3 plan: larger moves between search campaigns."
    assert (latest.history_user.username, latest.history_actor) == ("policy-owner", "policy-owner")
    history = owner.get(reverse("admin:policies_policy_history", args=[policy.pk])).text
    assert "Q3 plan: larger moves between search campaigns." in history
    version = owner.get(
        reverse("admin:policies_policy_simple_history", args=[policy.pk, latest.history_id])
    ).text
    assert "30%" in version and "0.300000" not in version


def test_guardrail_changes_need_a_reason_and_record_it(owner):
    add = reverse("admin:policies_killswitch_add")
    engage = {"scope": "global", "engaged": "on", "reason": "Agency audit in progress"}

    refused = owner.post(add, engage)
    assert refused.status_code == 200 and "This field is required." in refused.text
    assert not KillSwitch.objects.exists()

    owner.post(add, engage | {"change_reason": "The auditors asked for a freeze."})
    switch = KillSwitch.objects.get()
    assert switch.history.get().history_change_reason == "The auditors asked for a freeze."

    guidelines = BrandGuidelines.objects.get(account__external_id="demo")
    url = reverse("admin:policies_brandguidelines_change", args=[guidelines.pk])
    posted_from_page(
        owner,
        url,
        {
            "account": guidelines.account_id,
            "banned_terms": "guaranteed\nrisk-free\nfree money",
            "change_reason": "Legal added “free money”.",
        },
    )
    latest = guidelines.history.order_by("-history_id").first()
    assert "free money" in latest.banned_terms
    assert latest.history_change_reason == "Legal added “free money”."


@pytest.mark.parametrize(
    "typed, field, message",
    [
        ({"scope": "account"}, "account", "A switch on one account names it: pick the account."),
        ({"scope": "channel"}, "channel", "A switch on one channel names it: pick the channel."),
        (
            {"scope": "account", "account": "ACCOUNT", "channel": "google_ads"},
            "channel",
            "A switch on one account covers all its channels: leave the channel empty.",
        ),
        (
            {"scope": "channel", "account": "ACCOUNT", "channel": "google_ads"},
            "account",
            "A switch on one channel covers it on every account: leave the account empty.",
        ),
        (
            {"scope": "global", "account": "ACCOUNT"},
            "account",
            "A switch on everything names no account: leave it empty.",
        ),
    ],
)
def test_a_kill_switch_whose_scope_does_not_match_is_refused_in_words(owner, typed, field, message):
    # Before, the database's check refused it by its name: "Constraint
    # “kill_switch_scope_matches” is violated."
    account = Account.objects.get(external_id="demo")
    typed = {name: account.pk if value == "ACCOUNT" else value for name, value in typed.items()}
    refused = owner.post(
        reverse("admin:policies_killswitch_add"),
        typed | {"engaged": "on", "reason": "Spend anomaly", "change_reason": "Incident 42."},
    )
    assert refused.status_code == 200
    form = refused.context["adminform"].form
    assert form.errors == {field: [message]}
    assert "kill_switch_scope_matches" not in refused.text
    assert not KillSwitch.objects.exists()


def test_guidelines_saved_as_shown_are_not_recorded_as_changed(owner):
    # A browser sends a textarea's lines back joined by CRLF: the seeded banned terms, saved
    # as shown with only a disclaimer added, were recorded as changed, and the history read
    # "Banned terms: guaranteed risk-free → guaranteed risk-free".
    guidelines = BrandGuidelines.objects.get(account__external_id="demo")
    assert guidelines.banned_terms == "guaranteed\nrisk-free"
    url = reverse("admin:policies_brandguidelines_change", args=[guidelines.pk])
    posted_from_page(
        owner,
        url,
        {
            "account": guidelines.account_id,
            "banned_terms": "guaranteed\r\nrisk-free",
            "required_disclaimers": "Terms apply.\r\nSee site.",
            "change_reason": "Legal asked for a disclaimer.",
        },
    )
    guidelines.refresh_from_db()
    assert guidelines.banned_terms == "guaranteed\nrisk-free"
    assert guidelines.required_disclaimers == "Terms apply.\nSee site."
    history = owner.get(
        reverse("admin:policies_brandguidelines_history", args=[guidelines.pk])
    ).text
    # The newest entry, this save's (the oldest shows what the guidelines were made with).
    saved = history.split('data-label="Changes"')[1].split("</td>")[0]
    assert "Required disclaimers" in saved and "Banned terms" not in saved


def said_after(page) -> list[str]:
    """The messages a page shows, as read (without their links' markup)."""
    return [re.sub(r"<[^>]+>", "", str(message)) for message in page.context["messages"]]


def test_a_saved_change_says_what_it_changed_and_a_save_that_changes_nothing_is_no_version(
    owner,
):
    # The message after a save said "The policy “Budget reallocations” was changed
    # successfully." whatever changed, and a save with only a reason wrote a new version of
    # the policy (its proposals' pages then read "it has changed since, to version 2").
    policy = reallocations()
    url = change_url(policy)
    saved = owner.post(
        url,
        form_data(owner, url, auto_execute_max_magnitude="30", review_window="36 hours",
                  change_reason="Q3 plan: larger moves between search campaigns."),
        follow=True,
    )  # fmt: skip
    assert said_after(saved) == [
        "The policy “Budget reallocations” was changed successfully. What changed: "
        "Auto-execute ceiling: 10% → 30%; Review window: 3 days → 36 hours."
    ]
    assert history_of(policy).count() == 2

    unchanged = owner.post(url, form_data(owner, url, change_reason="Saved again."), follow=True)
    assert said_after(unchanged) == [
        "Nothing was changed in the policy “Budget reallocations”: no setting differs from "
        "what was saved, so no new version was recorded."
    ]
    assert history_of(policy).count() == 2
    assert history_of(policy).first().history_change_reason.startswith("Q3 plan")

    # Guidelines sent back as a browser sends them (CRLF) are unchanged too; a switch
    # released says so in its own words, not followed by the history's diff a second time.
    guidelines = BrandGuidelines.objects.get(account__external_id="demo")
    as_shown = {"account": guidelines.account_id, "banned_terms": "guaranteed\r\nrisk-free"}
    page = posted_from_page(
        owner,
        reverse("admin:policies_brandguidelines_change", args=[guidelines.pk]),
        as_shown | {"change_reason": "Looked at them."},
        follow=True,
    )
    assert said_after(page)[0].startswith("Nothing was changed in the brand guidelines")
    assert guidelines.history.count() == 1
    switch = {"scope": "global", "reason": "Agency audit in progress"}
    owner.post(
        reverse("admin:policies_killswitch_add"),
        switch | {"engaged": "on", "change_reason": "The auditors asked for a freeze."},
    )
    released = posted_from_page(
        owner,
        reverse("admin:policies_killswitch_change", args=[KillSwitch.objects.get().pk]),
        switch | {"change_reason": "Audit over."},
        follow=True,
    )
    assert said_after(released)[-1] == "Kill switch on everything released."


def test_a_deletion_without_a_reason_deletes_nothing(demo_world):
    admin = get_user_model().objects.create_superuser("root", password="unused-1")
    client = Client()
    client.force_login(admin)
    policy = Policy.objects.get(action_type="status_change")
    url = reverse("admin:policies_policy_delete", args=[policy.pk])

    client.post(url, {"post": "yes"})
    assert Policy.objects.filter(pk=policy.pk).exists()

    client.post(url, {"post": "yes", "change_reason": "Status changes go to the channel team."})
    assert not Policy.objects.filter(pk=policy.pk).exists()
    assert history_of(policy).first().history_change_reason == (
        "Status changes go to the channel team."
    )


def test_a_deleted_policys_page_leads_to_its_history_saying_who_deleted_it(demo_world, login):
    """Its page said "Policy with ID “7” doesn't exist. Perhaps it was deleted?" on the home
    page, to an auditor following a link from a proposal it had routed."""
    admin = get_user_model().objects.create_superuser("root", password="unused-1")
    client = Client()
    client.force_login(admin)
    policy = Policy.objects.get(action_type="status_change")
    client.post(
        reverse("admin:policies_policy_delete", args=[policy.pk]),
        {"post": "yes", "change_reason": "Status changes go to the channel team."},
    )
    deleted_at = history_of(policy).first().history_date

    page = login("auditor").get(change_url(policy), follow=True)

    assert page.redirect_chain[-1][0] == reverse("admin:policies_policy_history", args=[policy.pk])
    assert (
        f"Policy #{policy.pk} was deleted at {deleted_at:%Y-%m-%d %H:%M:%S} UTC by root "
        "(person); this is its history. The reason given: “Status changes go to the channel "
        "team.”"
    ) in html.unescape(page.text)
    assert "Perhaps it was deleted" not in page.text


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        ("Status changes\x00 go to the channel team.", "Null characters are not allowed."),
        ("x" * 1001, "at most 1000 characters"),
    ],
)
def test_a_deletion_whose_reason_a_change_form_would_refuse_deletes_nothing(
    demo_world, reason, said
):
    """A reason with a NUL (PostgreSQL stores none: it had been a server error) or longer
    than a change form's is refused as the change form refuses it; nothing is deleted."""
    admin = get_user_model().objects.create_superuser("root", password="unused-1")
    client = Client()
    client.force_login(admin)
    policy = Policy.objects.get(action_type="status_change")
    url = reverse("admin:policies_policy_delete", args=[policy.pk])

    page = client.post(url, {"post": "yes", "change_reason": reason}, follow=True)

    assert page.status_code == 200
    assert said in page.text
    assert Policy.objects.filter(pk=policy.pk).exists()


# Duplicate as draft, dry run and simulate it, promote it.


def duplicate(client: Client, policy: Policy, **typed) -> Policy:
    url = reverse("admin:policies_policy_add") + f"?duplicate={policy.pk}"
    page = client.post(url, form_data(client, url, **typed))
    assert page.status_code == 302, page.text
    return Policy.objects.get(draft_of=policy, is_draft=True, is_active=True)


def test_duplicate_as_draft_dry_run_simulate_and_promote(owner):
    policy = reallocations()
    evaluated(reallocation("280.00"))  # the reference proposal, waiting for an operator
    page = owner.get(change_url(policy))
    assert "Duplicate as draft" in page.text

    add = reverse("admin:policies_policy_add") + f"?duplicate={policy.pk}"
    form = owner.get(add).context["adminform"].form
    assert form["name"].value() == policy.name
    assert form["is_draft"].value() is True
    assert form["draft_of"].value() == policy.pk
    assert form["auto_execute_max_magnitude"].value() == Decimal("10")
    draft = duplicate(
        owner, policy, auto_execute_max_magnitude="30", change_reason="Try 30% for reallocations."
    )
    assert draft.auto_execute_max_magnitude == Decimal("0.3")
    assert draft.cumulative_max_magnitude == Decimal("0.25")  # as the policy has it
    assert history_of(draft).get().history_change_reason == "Try 30% for reallocations."
    assert Policy.objects.get(pk=policy.pk).auto_execute_max_magnitude == Decimal("0.1")
    # Duplicating again leads to the draft there is.
    again = owner.get(add)
    assert again.status_code == 302 and again.url == change_url(draft)

    # The dry run: 28% is within 30%, but the cumulative ceiling holds it.
    verdict = dry_run(owner, draft, REFERENCE).context["verdict"]
    assert verdict.outcome == "review"
    assert [hold.rule for hold in verdict.held_by] == ["cumulative_ceiling", "cumulative_ceiling"]
    assert verdict.held_by[0].text == (
        "cumulative ceiling 25% per 1 day (with this move, brand-search's daily budget would "
        "move -28.0% within 1 day, with no other move changing it)"
    )

    # The simulation over the recorded proposals says the same.
    links = owner.get(change_url(draft)).text
    assert "Simulate" in links and "Promote" in links
    today = timezone.localdate()
    simulated = owner.get(
        reverse("admin:policies_policy_simulate"),
        {"drafts": draft.pk, "since": today, "until": today + timedelta(days=1)},
    )
    report = simulated.context["report"]
    assert (report.proposals, report.changed, dict(report.held_by)) == (
        1,
        0,
        {"cumulative_ceiling": 1},
    )
    assert "The cumulative ceiling: 1" in simulated.text

    # Promote: what changes is shown, a reason is required, and the policy keeps its id.
    promote = reverse("admin:policies_policy_promote", args=[draft.pk])
    shown = owner.get(promote)
    # Each setting named as the policy's form names it, not by its field.
    assert ("Auto-execute ceiling", "10%", "30%") in shown.context["changes"]
    assert "Auto execute max magnitude" not in shown.text
    refused = owner.post(promote, {"change_reason": "  "})
    assert refused.status_code == 200 and "This field is required." in refused.text
    assert Policy.objects.get(pk=policy.pk).auto_execute_max_magnitude == Decimal("0.1")

    done = owner.post(promote, {"change_reason": "Dry run and simulation agree."})

    assert done.status_code == 302 and done.url == change_url(policy)
    policy.refresh_from_db()
    draft.refresh_from_db()
    assert policy.auto_execute_max_magnitude == Decimal("0.3") and not policy.is_draft
    assert (draft.is_draft, draft.is_active) == (True, False)  # retired
    # The retired draft's pages offer no simulation, which would refuse it, nor a promotion.
    for retired_page in (
        change_url(draft),
        reverse("admin:policies_policy_dry_run", args=[draft.pk]),
    ):
        page = owner.get(retired_page)
        assert page.status_code == 200
        assert 'id="simulate-link"' not in page.text and 'id="promote-link"' not in page.text
    latest = history_of(policy).first()
    assert latest.history_change_reason == (
        f"promoted from draft #{draft.pk}: Dry run and simulation agree."
    )
    assert latest.history_user.username == "policy-owner"
    # Live at once: a 20% move from generic-search now runs on its own.
    moved = evaluated(
        reallocation("100.00")
        | {"payload": {"from_campaign": "generic-search", "to_campaign": "brand-search",
                       "amount": "100.00"}}
    )  # fmt: skip
    assert (moved.status, moved.verdict_policy_id) == ("approved", policy.pk)


def test_a_draft_that_replaces_no_policy_goes_live_itself(owner, demo_world):
    optimizer = Agent.objects.get(name="optimizer")
    draft = Policy.objects.create(
        name="Optimizer's reallocations",
        action_type="budget_reallocation",
        agent=optimizer,
        is_draft=True,
        auto_execute_max_magnitude=Decimal("0.2"),
    )
    live = policy_promote(
        draft_id=draft.pk,
        actor=Actor.for_user(get_user_model().objects.get(username="policy-owner")),
        reason="The optimizer earned it.",
    )
    assert live.pk == draft.pk and not live.is_draft and live.is_active
    assert history_of(live).first().history_change_reason == (
        "promoted from a draft: The optimizer earned it."
    )


def test_the_owner_of_an_agent_may_not_promote_its_policy(demo_world):
    owner = get_user_model().objects.get(username="policy-owner")
    Agent.objects.filter(name="optimizer").update(owner=owner)
    draft = Policy.objects.create(
        name="Optimizer runs free",
        action_type="budget_reallocation",
        agent=Agent.objects.get(name="optimizer"),
        is_draft=True,
        auto_execute_max_magnitude=Decimal("1"),
    )
    with pytest.raises(DomainError, match="You own agent optimizer"):
        policy_promote(draft_id=draft.pk, actor=Actor.for_user(owner), reason="Mine.")
    draft.refresh_from_db()
    assert draft.is_draft and not Policy.objects.filter(agent__name="optimizer", is_draft=False)


# The dry run names what held the proposal, and tries a ceiling for one run.


def test_the_dry_run_names_the_rule_that_held_the_proposal(owner):
    page = dry_run(owner, reallocations(), REFERENCE)
    held = page.context["verdict"].held_by
    assert held[0] == engine.Hold(
        "auto_execute_ceiling", "auto-execute ceiling 10% (this is 28.0%)", reallocations().pk
    )
    assert {hold.rule for hold in held} == {"auto_execute_ceiling", "cumulative_ceiling"}
    assert 'id="held-by"' in page.text
    assert "Held by:" in page.text and "auto-execute ceiling 10% (this is 28.0%)" in page.text


def test_a_ceiling_typed_in_the_dry_run_is_tried_for_that_run_only(owner):
    policy = reallocations()
    page = dry_run(owner, policy, REFERENCE, try_auto_execute_ceiling="30")
    verdict = page.context["verdict"]
    assert verdict.outcome == "review"
    assert {hold.rule for hold in verdict.held_by} == {"cumulative_ceiling"}
    assert "Tried, for this run only: an auto-execute ceiling of 30%." in page.text

    both = dry_run(
        owner, policy, REFERENCE, try_auto_execute_ceiling="30", try_cumulative_ceiling="60"
    ).context["verdict"]
    assert (both.outcome, both.held_by) == ("auto_approve", ())
    policy.refresh_from_db()
    assert policy.auto_execute_max_magnitude == Decimal("0.1")  # nothing saved
    assert history_of(policy).count() == 1


def test_a_ceiling_tried_on_a_policy_that_does_not_decide_says_it_was_not_used(owner):
    # optimizer has a policy of its own on demo, more specific than "Budget reallocations":
    # a ceiling tried on the general one was never read, yet the page said "Tried, for this
    # run only: an auto-execute ceiling of 30%." above a verdict held by the 5% of its own.
    general = reallocations()
    own = Policy.objects.create(
        name="Budget reallocations: optimizer on demo",
        action_type="budget_reallocation",
        agent=Agent.objects.get(name="optimizer"),
        account=Account.objects.get(external_id="demo"),
        auto_execute_max_magnitude=Decimal("0.05"),
        cumulative_max_magnitude=Decimal("0.25"),
    )
    small = {**REFERENCE, "amount": "80"}  # 8% of brand-search's budget

    page = dry_run(owner, general, small, try_auto_execute_ceiling="30")

    verdict = page.context["verdict"]
    assert (verdict.outcome, verdict.policy_id) == ("review", own.pk)
    tried = page.text.split('id="dry-run-tried">')[1].split("</p>")[0]
    assert html.unescape(tried) == (
        "Tried, for this run only: nothing: policy “Budget reallocations: optimizer on demo” "
        "decides it, not “Budget reallocations”, so the ceiling typed was not used."
    )


def test_a_retired_drafts_dry_run_says_it_decides_nothing(owner):
    # Its page said "under … the policies in force with this draft in place of the policy it
    # would replace" above a verdict of the live policy: a promoted draft is retired.
    general = reallocations()
    draft = Policy.objects.create(
        name="Reallocations, looser",
        action_type="budget_reallocation",
        is_draft=True,
        draft_of=general,
        auto_execute_max_magnitude=Decimal("0.3"),
        cumulative_max_magnitude=Decimal("0.5"),
    )
    policy_promote(
        draft_id=draft.pk,
        actor=Actor.for_user(get_user_model().objects.get(username="policy-owner")),
        reason="Looser reallocations.",
    )
    draft.refresh_from_db()
    assert not draft.is_active

    page = dry_run(owner, draft, REFERENCE, try_auto_execute_ceiling="5")

    text = " ".join(html.unescape(page.text).split())
    assert (
        "under every guardrail and every policy in force, which this one is not: a draft "
        "retired or set aside, it decides nothing." in text
    )
    assert "with this draft in place" not in text
    assert (
        "Tried, for this run only: nothing: “Reallocations, looser (draft)” is not in force, "
        "so no ceiling of it decides." in text
    )


@pytest.mark.parametrize(
    "typed, field",
    [
        (
            {"auto_execute_max_magnitude": "20", "block_above_magnitude": "5"},
            "block_above_magnitude",
        ),
        ({"auto_execute_max_amount": "300", "block_above_amount": "100"}, "block_above_amount"),
    ],
)
def test_a_hard_ceiling_below_the_auto_execute_ceiling_is_refused(owner, typed, field):
    # "runs without a person up to 1000%" beside "refused above 5%" was saved: what lay
    # between was blocked, never run as the auto-execute ceiling said.
    policy = Policy.objects.get(action_type="budget_change", is_draft=False)
    url = change_url(policy)

    refused = owner.post(url, form_data(owner, url, **typed, change_reason="Try it."))

    assert refused.status_code == 200
    [message] = refused.context["adminform"].form.errors[field]
    assert message.startswith(f"The {'hard ceiling' if 'magnitude' in field else 'hard amount'}")
    assert "is below the auto-execute" in message
    assert history_of(policy).count() == 1
    at = {name: value.replace("5", "20").replace("100", "300") for name, value in typed.items()}
    saved = owner.post(url, form_data(owner, url, **at, change_reason="Equal is coherent."))
    assert saved.status_code == 302


def test_every_rule_that_holds_is_named_with_its_figures():
    rule = engine.Rule(
        policy_id=1,
        name="Budgets",
        action_type="budget_change",
        auto_execute_max_magnitude=Decimal("0.10"),
        auto_execute_max_amount=Decimal("50"),
        block_above_magnitude=Decimal("0.9"),
        more_approvals_above_magnitude=Decimal("0.2"),
    )
    facts = engine.Facts(
        action_type="budget_change",
        action_label="budget change",
        magnitude=Decimal("0.3"),
        magnitude_unit="ratio",
        magnitude_label="A 30.0% change",
        risk_weight=20,
        account_id=1,
        amount=Decimal("150"),
        currency="USD",
        guardrail_reviews=("The kill switch on everything is engaged: incident.",),
    )
    held = engine.evaluate(facts, [rule]).held_by
    assert [(hold.rule, hold.text) for hold in held] == [
        ("guardrail", "guardrail: The kill switch on everything is engaged: incident."),
        ("auto_execute_ceiling", "auto-execute ceiling 10% (this is 30.0%)"),
        ("amount_ceiling",
         "auto-execute amount ceiling 50.00 USD a day (this moves 150.00 USD a day)"),
        ("two_person_rule", "two-person rule (2 distinct approvals, policy “Budgets”)"),
    ]  # fmt: skip
    blocked = engine.evaluate(replace(facts, magnitude=Decimal("0.95")), [rule])
    assert [h.text for h in blocked.held_by] == ["hard ceiling 90% (this is 95.0%)"]
    nothing = engine.evaluate(facts, [])
    assert [(h.rule, h.text) for h in nothing.held_by][-1] == (
        "no_policy",
        "no policy matched (budget change here)",
    )
    always = engine.evaluate(facts, [replace(rule, always_review=True)])
    assert "always review (policy “Budgets”)" in [h.text for h in always.held_by]


def test_a_dry_run_is_first_shown_for_the_agent_that_proposes_its_action_type(owner):
    """Once the autonomy advisor existed, a budget change's dry run opened for it (first by
    name), an agent that never proposes one: its verdict read as if for the agents that do."""
    Agent.objects.create(name="autonomy-advisor", kind="analysis", is_platform=True)
    url = reverse("admin:policies_policy_dry_run", args=[reallocations().pk])
    assert owner.get(url).context["form"]["agent"].value() != (
        Agent.objects.get(name="autonomy-advisor").pk
    )
    evaluated(reallocation())
    form = owner.get(url).context["form"]
    assert form["agent"].value() == Agent.objects.get(name="optimizer").pk


def policy_rows(client: Client, **query) -> dict[int, str]:
    """Each policy's row of the list, as text, by its id."""
    page = client.get(reverse("admin:policies_policy_changelist"), query)
    assert page.status_code == 200
    rows = page.text.split("<tbody>")[1].split("</tbody>")[0].split("<tr")[1:]
    by_id = {}
    for row in rows:
        pk = int(row.split("/admin/policies/policy/")[1].split("/")[0])
        by_id[pk] = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", "<tr" + row)).split())
    return by_id


def test_the_policy_list_says_in_words_which_row_is_live_a_draft_or_retired(owner):
    """After a draft is promoted, two rows are named "Budget reallocations" with the same
    ceilings: the list says which is live and which the retired draft, as it says which is a
    draft before, and which a person switched off."""
    policy = reallocations()
    draft = duplicate(owner, policy, auto_execute_max_magnitude="30", change_reason="Try 30%.")
    creatives = Policy.objects.get(action_type="creative_deployment")
    creatives.is_active = False
    creatives.save()
    rows = policy_rows(owner)
    assert rows[policy.pk].startswith("Budget reallocations budget reallocation everything 0 Live")
    assert rows[draft.pk].startswith(
        "Budget reallocations (draft) budget reallocation everything 0 Draft"
    )
    assert " Inactive " in rows[creatives.pk]

    promoted = owner.post(
        reverse("admin:policies_policy_promote", args=[draft.pk]), {"change_reason": "Agreed."}
    )
    assert promoted.status_code == 302
    rows = policy_rows(owner, state="all")
    assert " Live " in rows[policy.pk] and " Retired draft " in rows[draft.pk]
    assert " Draft " not in rows[draft.pk] and " Live " not in rows[draft.pk]


def latest_changes(client: Client, policy: Policy) -> list[str]:
    """The changes the history list shows for the latest version, as read ("field: a → b")."""
    page = client.get(reverse("admin:policies_policy_history", args=[policy.pk]))
    cell = page.text.split('data-label="Changes"')[1].split("</td>")[0]
    return [
        " ".join(re.sub(r"<[^>]+>|&nbsp;", " ", item).replace("&rarr;", "→").split())
        for item in re.findall(r"<li>(.*?)</li>", cell, re.S)
    ]


def test_what_changed_names_the_action_type_and_lists_the_settings_as_the_form_does(owner):
    """A save said "What changed: Action type: budget_reallocation → budget_change;
    Auto-execute ceiling: …; Description: …; Priority: …": the action type by its code, where
    the form and the list say "budget reallocation", and the settings A to Z, where the form
    lists the description first, then the scope, then the ceilings."""
    policy = reallocations()
    url = change_url(policy)

    saved = owner.post(
        url,
        form_data(owner, url, action_type="budget_change", priority="5",
                  description="Moves between campaigns, as changes.",
                  auto_execute_max_magnitude="30", change_reason="Regrouped."),
        follow=True,
    )  # fmt: skip

    changes = [
        "Action type: budget reallocation → budget change",
        "Description: — → Moves between campaigns, as changes.",
        "Priority: 0 → 5",
        "Auto-execute ceiling: 10% → 30%",
    ]
    budget_changes = Policy.objects.get(name="Budget changes")
    assert said_after(saved) == [
        "The policy “Budget reallocations” was changed successfully. What changed: "
        + "; ".join(changes)
        + ".",
        # Moved onto the budget changes' scope above their priority: they decide nothing now.
        f"It outranks “Budget changes” (#{budget_changes.pk}), which has its action type and "
        "scope at priority 0: that policy decides nothing while this one is live.",
    ]
    assert latest_changes(owner, policy) == changes


def test_a_promotion_lists_its_changes_in_the_forms_order_each_in_its_own_unit(owner):
    """The promotion page listed the settings in the model's order, the action type by its
    code, and the live policy's ceiling in the draft's unit: a draft making the reallocations
    policy one for strategy changes (a count of fields) read "Auto-execute ceiling: 0.1 → 2",
    the live 10% read as a count."""
    policy = reallocations()
    draft = duplicate(
        owner, policy, priority="2", auto_execute_max_magnitude="2",
        action_type="strategy_change", change_reason="Try it on strategy changes.",
    )  # fmt: skip
    promote = reverse("admin:policies_policy_promote", args=[draft.pk])

    shown = owner.get(promote)
    promoted = owner.post(promote, {"change_reason": "As tried."}, follow=True)

    assert shown.context["changes"] == [
        ("Action type", "budget reallocation", "strategy change"),
        ("Priority", "0", "2"),
        ("Auto-execute ceiling", "10%", "2"),
    ]
    assert said_after(promoted)[-1] == (
        "“Budget reallocations” is live, as the draft set it. What changed: Action type: "
        "budget reallocation → strategy change; Priority: 0 → 2; Auto-execute ceiling: 10% → 2."
    )
    assert latest_changes(owner, policy) == [
        "Action type: budget reallocation → strategy change",
        "Priority: 0 → 2",
        "Auto-execute ceiling: 10% → 2",
    ]


def test_a_draft_goes_live_only_by_its_promotion_not_by_unticking_is_draft(owner):
    """Unticking "Is draft" on a draft's page, with another priority (as the refusal of the
    same one asked), made it a second live policy beside the one it drafts, outranking it,
    without a promotion's account of what it changes. A draft's page shows it read only,
    pointing to Promote, and a form sent without it leaves the draft a draft."""
    policy = reallocations()
    draft = duplicate(owner, policy, auto_execute_max_magnitude="30", change_reason="Try 30%.")
    url = change_url(draft)

    page = owner.get(url)
    assert "is_draft" not in page.context["adminform"].form.fields
    shown = " ".join(re.sub(r"<[^>]+>", "", page.text).split())
    assert (
        "Is draft: yes: it goes live only when promoted, which shows first what it changes in "
        "the policy it replaces"
    ) in shown
    promote = reverse("admin:policies_policy_promote", args=[draft.pk])
    assert f'<a href="{promote}" id="promote-field-link">promoted</a>' in page.text

    sent = form_data(owner, url, priority="1", change_reason="Make it live.")
    sent.pop("is_draft", None)
    saved = owner.post(url, sent, follow=True)

    assert saved.status_code == 200
    draft.refresh_from_db()
    assert (draft.is_draft, draft.is_active, draft.draft_of_id) == (True, True, policy.pk)
    assert draft.priority == 1  # its other settings are a draft's to change
    assert list(Policy.objects.filter(is_draft=False, action_type="budget_reallocation")) == [
        policy
    ]
    # The add page keeps the box: a new policy may be made a draft.
    add = owner.get(reverse("admin:policies_policy_add"))
    assert "is_draft" in add.context["adminform"].form.fields


def page_words(page) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page.text)).split())


def test_a_live_policy_becomes_a_draft_only_as_a_new_draft_of_it(owner):
    """Ticking "Is draft" on a live policy's page took it out of force at once, with "What
    changed: Is draft: no → yes" as all that was said: its proposals went to a person ("No
    policy covers budget reallocation here"), and its own draft was left replacing a draft.
    Its page shows the box read only, pointing to a draft of it; a form sent with it ticked
    leaves the policy live, routing, and its draft replacing it."""
    policy = reallocations()
    draft = duplicate(owner, policy, auto_execute_max_magnitude="30", change_reason="Try 30%.")
    url = change_url(policy)

    page = owner.get(url)
    fields = page.context["adminform"].form.fields
    assert "is_draft" not in fields and "draft_of" not in fields
    assert (
        "Is draft: no: it decides live. A policy becomes a draft only as a new one: duplicate "
        "it as a draft to try a change, and this policy decides as it is until the draft is "
        "promoted into it"
    ) in page_words(page)
    duplicating = reverse("admin:policies_policy_add") + f"?duplicate={policy.pk}"
    assert f'<a href="{duplicating}" id="duplicate-field-link">' in page.text
    assert "Replaces, when promoted" not in page.text  # only a draft replaces a policy

    sent = form_data(owner, url, is_draft="on", change_reason="Make it a draft.")
    owner.post(url, sent | {"auto_execute_max_magnitude": "12"})

    policy.refresh_from_db()
    draft.refresh_from_db()
    assert (policy.is_draft, policy.is_active, policy.state) == (False, True, "Live")
    assert policy.auto_execute_max_magnitude == Decimal("0.12")  # what the page offered
    assert [record.is_draft for record in history_of(policy)] == [False, False]
    assert replaced_policy(draft) == policy
    routed = evaluated(reallocation("100.00"))
    assert (routed.status, routed.verdict_policy_id) == ("approved", policy.pk)


def test_a_retired_draft_stays_retired_and_its_page_says_how_to_try_it_again(owner, login):
    """Ticking "Is active" on a promoted draft's page made it a draft again ("What changed:
    Is active: no → yes"), listed as waiting to be promoted; promoted again, it set the live
    policy back to what it was before the changes made since. A retired draft's page is
    read only, saying so; a form sent to it changes nothing."""
    policy = reallocations()
    draft = duplicate(owner, policy, auto_execute_max_magnitude="30", change_reason="Try 30%.")
    owner.post(
        reverse("admin:policies_policy_promote", args=[draft.pk]), {"change_reason": "Agreed."}
    )
    promoted_at = history_of(policy).first().history_date
    url = change_url(policy)
    owner.post(url, form_data(owner, url, auto_execute_max_magnitude="12", change_reason="12."))
    versions = (history_of(draft).count(), history_of(policy).count())

    for client in (owner, login("auditor")):
        page = client.get(change_url(draft))
        assert page.status_code == 200
        assert not page.context["has_change_permission"]  # shown, nothing to change
        assert 'name="_save"' not in page.text and 'name="is_active"' not in page.text
        words = page_words(page)
        assert (
            "Is draft: yes, retired: it decides nothing, is promoted no more and is kept as it "
            "is, read only; its history says when and why it was retired. To try its settings "
            "again, duplicate “Budget reallocations”, the live policy it was promoted into, as "
            "a new draft"
        ) in words
        assert f'<a href="{url}">“Budget reallocations”</a>' in page.text
        # Promoted, it replaces nothing any more: it says what it replaced, by whom and when.
        assert "Replaces, when promoted" not in words
        assert (
            f"What it replaced: “Budget reallocations” (#{policy.pk}): policy-owner (person) "
            f"promoted it into that policy at {console_time(promoted_at)}"
        ) in words

    sent = form_data(owner, change_url(policy), change_reason="Bring it back.")
    refused = owner.post(change_url(draft), sent | {"is_active": "on", "is_draft": "on"})

    assert refused.status_code == 403
    draft.refresh_from_db()
    policy.refresh_from_db()
    assert (draft.state, policy.auto_execute_max_magnitude) == ("Retired draft", Decimal("0.12"))
    assert (history_of(draft).count(), history_of(policy).count()) == versions
    promote = owner.get(reverse("admin:policies_policy_promote", args=[draft.pk]))
    assert promote.status_code == 404


def test_a_draft_retired_unpromoted_says_it_replaced_nothing(owner):
    """A draft set aside (retired without being promoted) said "Replaces, when promoted:
    Budget reallocations" once it could be promoted no more."""
    policy = reallocations()
    draft = duplicate(owner, policy, auto_execute_max_magnitude="30", change_reason="Try 30%.")
    url = change_url(draft)
    sent = form_data(owner, url, change_reason="Not worth it.")
    del sent["is_active"]  # unticked: set aside for good
    assert owner.post(url, sent).status_code == 302
    draft.refresh_from_db()
    assert draft.state == "Retired draft"

    words = page_words(owner.get(url))

    assert "Replaces, when promoted" not in words
    assert (
        "What it replaced: nothing: it was retired without being promoted; it was to replace "
        "“Budget reallocations”"
    ) in words
    assert "duplicate “Budget reallocations”, the live policy it would replace" in words


def test_a_policy_switched_back_on_where_another_took_its_place_names_that_one(owner):
    """A draft replacing no policy (its "Replaces, when promoted" emptied, the policy of its
    scope switched off) is promoted as a policy of its own; switching the first back on was
    refused naming the other by its name alone, the name of the policy on the page:
    "“Budget reallocations” already covers …"."""
    policy = reallocations()
    url = change_url(policy)
    draft = duplicate(owner, policy, auto_execute_max_magnitude="30", change_reason="Try 30%.")
    Policy.objects.filter(pk=draft.pk).update(draft_of=None)
    owner.post(url, form_data(owner, url, is_active=False, change_reason="Off for now."))
    owner.post(
        reverse("admin:policies_policy_promote", args=[draft.pk]), {"change_reason": "Agreed."}
    )
    assert Policy.objects.get(pk=draft.pk).state == "Live"

    refused = owner.post(url, form_data(owner, url, is_active="on", change_reason="Back on."))

    assert refused.status_code == 200
    assert refused.context["adminform"].form.non_field_errors() == [
        f"“Budget reallocations” (#{draft.pk}) already covers this action type and scope at "
        "priority 0; give one of them another priority or scope."
    ]
    assert Policy.objects.get(pk=policy.pk).state == "Inactive"


def test_a_draft_that_replaces_no_policy_says_its_promotion_adds_it(owner, demo_world):
    """Its page said "it goes live only when promoted, which shows first what it changes in
    the policy it replaces": it replaces none, and its promotion adds it."""
    draft = Policy.objects.create(
        name="Optimizer's reallocations",
        action_type="budget_reallocation",
        agent=Agent.objects.get(name="optimizer"),
        is_draft=True,
        auto_execute_max_magnitude=Decimal("0.2"),
    )

    page = owner.get(change_url(draft))

    shown = " ".join(re.sub(r"<[^>]+>", "", page.text).split())
    assert (
        "Is draft: yes: it goes live only when promoted, which adds it to the policies in "
        "force: no live policy has its action type, scope and priority"
    ) in shown
    assert "the policy it replaces" not in shown


def test_a_draft_of_a_policy_switched_off_since_is_promoted_into_it_which_stays_off(owner):
    """A draft made of a policy switched off since was promoted as a second policy beside it,
    the rule switched off back in force under another id, its page and the promotion's
    saying "no live policy has its action type, scope and priority", while its "Replaces,
    when promoted" named the policy. Promoted, its settings become that policy's, which
    stays switched off; every page says so first."""
    policy = reallocations()
    url = change_url(policy)
    draft = duplicate(owner, policy, auto_execute_max_magnitude="30", change_reason="Try 30%.")
    owner.post(url, form_data(owner, url, is_active=False, change_reason="Off for now."))
    assert Policy.objects.get(pk=policy.pk).state == "Inactive"

    assert (
        "Is draft: yes: promoted, its settings become those of “Budget reallocations”, the "
        "policy it replaces, which is switched off and stays so: they decide nothing until it "
        "is switched on again"
    ) in page_words(owner.get(change_url(draft)))
    promote = reverse("admin:policies_policy_promote", args=[draft.pk])
    shown = owner.get(promote)
    assert shown.context["replaces"] == policy
    assert shown.context["changes"] == [("Auto-execute ceiling", "10%", "30%")]
    words = page_words(shown)
    assert (
        "The draft's settings become those of “Budget reallocations”, the policy it replaces, "
        "which is switched off and stays so: it decides nothing until it is switched on again, "
        "then with these settings."
    ) in words
    assert "Now, switched off" in words and "No live policy" not in words
    today = timezone.localdate()
    simulated = owner.get(
        reverse("admin:policies_policy_simulate"),
        {"drafts": draft.pk, "since": today, "until": today + timedelta(days=1)},
    )
    assert (
        "“Budget reallocations”, the policy “Budget reallocations (draft)” would replace, is "
        "switched off: these figures are what the draft's settings would decide once it is "
        "switched on again. Promoted into it, they decide nothing until then."
    ) in page_words(simulated)
    dry = page_words(owner.get(reverse("admin:policies_policy_dry_run", args=[draft.pk])))
    assert (
        "the policies in force with this draft's settings among them, as “Budget "
        "reallocations”, the policy it would replace, would decide with them once switched on "
        "again: that one is switched off, and stays so when the draft is promoted into it."
    ) in dry

    promoted = owner.post(promote, {"change_reason": "Agreed."}, follow=True)

    assert promoted.redirect_chain[-1][0] == url
    assert said_after(promoted)[-1] == (
        "“Budget reallocations” has the draft's settings and stays switched off: it decides "
        "nothing until it is switched on again. What changed: Auto-execute ceiling: 10% → 30%."
    )
    policy.refresh_from_db()
    draft.refresh_from_db()
    assert (policy.state, policy.auto_execute_max_magnitude) == ("Inactive", Decimal("0.3"))
    assert draft.state == "Retired draft"
    assert not Policy.objects.filter(action_type="budget_reallocation", is_active=True)
    assert history_of(policy).first().history_change_reason == (
        f"promoted from draft #{draft.pk}: Agreed."
    )
    routed = evaluated(reallocation("100.00"))  # no policy decides: a person does
    assert (routed.status, routed.verdict_policy_id) == ("pending_review", None)


def test_the_policy_list_leaves_retired_drafts_out_unless_asked_for(owner, login):
    """A draft set aside was listed among the live policies by default, under its policy's
    name and with its own ceilings ("Budget reallocations … Retired draft 30%" above
    "Budget reallocations … Live 10%"), one more row for every draft ever tried, and no role
    but an administrator may delete one. The list shows the policies in use (live, switched
    off, drafts being tried); its *state* filter lists the retired drafts, or everything. The
    draft's page told a policy owner, who may delete no policy, "Delete it instead"."""
    policy = reallocations()
    draft = duplicate(owner, policy, auto_execute_max_magnitude="30", change_reason="Try 30%.")
    url = change_url(draft)
    assert "Delete it instead" not in owner.get(url).text
    admin = get_user_model().objects.create_superuser("root", password="unused-1")
    as_admin = Client()
    as_admin.force_login(admin)
    assert "Delete it instead if it is not worth keeping." in as_admin.get(url).text
    creatives = Policy.objects.get(action_type="creative_deployment")
    creatives.is_active = False
    creatives.save()
    sent = form_data(owner, url, change_reason="Not worth it.")
    del sent["is_active"]  # unticked: set aside for good
    assert owner.post(url, sent).status_code == 302

    listed = policy_rows(owner)
    assert draft.pk not in listed
    assert " Live " in listed[policy.pk] and " Inactive " in listed[creatives.pk]
    page = owner.get(reverse("admin:policies_policy_changelist"))
    assert "In use (all but retired drafts)" in page.text and "Retired draft" in page.text
    assert "total)" not in page.text  # not "6 results (7 total)", leading to the same six
    searched = owner.get(reverse("admin:policies_policy_changelist"), {"q": "reallocations"})
    assert "1 result (6 total)" in page_words(searched)  # the policies in use
    assert list(policy_rows(owner, state="retired")) == [draft.pk]
    assert list(policy_rows(owner, state="inactive")) == [creatives.pk]
    assert draft.pk in policy_rows(owner, state="all")
    assert draft.pk not in policy_rows(owner, state="live")
    refused = owner.get(reverse("admin:policies_policy_changelist"), {"state": "gone"})
    assert refused.status_code == 400


def test_a_reason_typed_as_a_promotion_s_record_does_not_pass_for_one(owner):
    """A draft set aside unpromoted, then its policy changed by a policy owner typing the
    reason "promoted from draft #<the draft>: …": the draft's page read "What it replaced:
    “Budget reallocations” (#…): policy-owner (person) promoted it into that policy at …",
    a promotion that never was. A reason typed cannot begin as the record a promotion writes
    does; the change is refused and changes nothing."""
    policy = reallocations()
    draft = duplicate(owner, policy, auto_execute_max_magnitude="25", change_reason="Try 25%.")
    url = change_url(draft)
    sent = form_data(owner, url, change_reason="Not worth it.")
    del sent["is_active"]  # unticked: set aside for good
    assert owner.post(url, sent).status_code == 302
    versions = history_of(policy).count()

    for forged in (f"promoted from draft #{draft.pk}: agreed", "Promoted from a draft: agreed"):
        url = change_url(policy)
        refused = owner.post(
            url, form_data(owner, url, auto_execute_max_magnitude="12", change_reason=forged)
        )
        assert refused.status_code == 200
        assert "only promoting a draft writes it" in html.unescape(refused.text)

    assert history_of(policy).count() == versions
    assert Policy.objects.get(pk=policy.pk).auto_execute_max_magnitude == Decimal("0.1")
    assert "What it replaced: nothing: it was retired without being promoted" in page_words(
        owner.get(change_url(draft))
    )


@pytest.mark.parametrize(
    ("query", "said", "total_link"),
    [
        # The filter's own "In use" and "Live" links, and an empty state, list the policies
        # in use: their total is of those, and its link leads to them.
        ({"state": "in_use", "q": "reallocations"}, "1 result (6 total)", "?"),
        ({"state": "live", "q": "reallocations"}, "1 result (6 total)", "?"),
        ({"state": "", "q": "reallocations"}, "1 result (6 total)", "?"),
        ({"state": "live", "action_type": "budget_reallocation"}, "1 result (6 total)", "?"),
        # Retired drafts asked for: the total is of every policy, its link leading to them all.
        ({"state": "retired"}, "1 result (7 total)", "?state=all"),
        ({"state": "all", "q": "reallocations"}, "2 results (7 total)", "?state=all"),
    ],
)
def test_the_policy_list_s_total_is_of_the_list_its_link_leads_to(owner, query, said, total_link):
    """ "6 results (7 total)" on the filter's own "In use" link, whose "7 total" led to the
    same six: the total counted the retired drafts whatever the state asked for, and its link
    leads to the list without them."""
    policy = reallocations()
    draft = duplicate(owner, policy, auto_execute_max_magnitude="30", change_reason="Try 30%.")
    url = change_url(draft)
    sent = form_data(owner, url, change_reason="Not worth it.")
    del sent["is_active"]  # unticked: set aside for good
    assert owner.post(url, sent).status_code == 302

    page = owner.get(reverse("admin:policies_policy_changelist"), query)

    assert page.status_code == 200
    counts = re.search(r'<span class="small quiet">(.*?)</span>', page.text, re.S).group(1)
    assert re.sub(r"<[^>]+>", "", counts) == said
    assert re.search(r'href="([^"]*)"', counts).group(1) == total_link
    listed = owner.get(reverse("admin:policies_policy_changelist") + total_link)
    assert len(listed.context["cl"].result_list) == int(said.split("(")[1].split()[0])


def test_show_counts_counts_the_policies_in_each_state(owner):
    """The list's "Show counts" counted each action type and account, and no state:
    "Retired draft" stood bare beside "bid adjustment (1)"."""
    policy = reallocations()
    draft = duplicate(owner, policy, auto_execute_max_magnitude="30", change_reason="Try 30%.")
    creatives = Policy.objects.get(action_type="creative_deployment")
    creatives.is_active = False
    creatives.save()
    owner.post(
        reverse("admin:policies_policy_promote", args=[draft.pk]), {"change_reason": "Agreed."}
    )
    page = owner.get(reverse("admin:policies_policy_changelist"), {"_facets": "True"})
    said = html.unescape(page.text)
    for choice in (
        "In use (all but retired drafts) (6)",
        "Live (5)",
        "Draft (0)",
        "Inactive (switched off) (1)",
        "Retired draft (1)",
        "All, retired drafts too (7)",
    ):
        assert choice in said, choice


def test_the_policy_list_names_a_draft_as_its_page_does(owner):
    # A draft and the live policy it was made of both read "Budget reallocations", told apart
    # only by the State column; the draft's page is titled "Budget reallocations (draft)".
    live = reallocations()
    draft = Policy.objects.create(
        name=live.name,
        action_type=live.action_type,
        is_draft=True,
        draft_of=live,
        auto_execute_max_magnitude=Decimal("0.2"),
    )

    listed = owner.get(reverse("admin:policies_policy_changelist"), {"state": "all"}).text
    names = {
        int(pk): html.unescape(name)
        for pk, name in re.findall(
            r'class="field-name_said"><a href="/admin/policies/policy/(\d+)/change/[^"]*">'
            r"(.*?)</a>",
            listed,
        )
    }
    assert names[draft.pk] == "Budget reallocations (draft)"
    assert names[live.pk] == "Budget reallocations"
    page = owner.get(change_url(draft)).text
    assert "Budget reallocations (draft)" in html.unescape(
        re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    )
