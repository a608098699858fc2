"""Saving a kill switch or a brand guideline in the console ends with what the save changed,
not Django's "… was changed successfully": a switch engaged (with its reason), released, or
still engaged with a new reason; guidelines that now ban or require a line, or no longer do.
Promoting a policy's draft says what it changed as a policy's save does."""

from decimal import Decimal

from django.urls import reverse

from approvals.models import Agent
from ledger.models import Account, Campaign
from policies.models import BrandGuidelines, KillSwitch, Policy
from tests.conftest import posted_from_page
from tests.test_policy_tuning import duplicate, reallocations

ADD_SWITCH = "/admin/policies/killswitch/add/"


def said(response) -> list[str]:
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def switch_form(**values) -> dict:
    return {
        "scope": "account",
        "account": Account.objects.get(external_id="demo").pk,
        "engaged": "on",
        "reason": "Tracking outage.",
        "change_reason": "Incident 7.",
        **values,
    }


def test_a_kill_switch_saved_says_it_was_engaged_released_or_given_a_new_reason(login):
    owner = login("policy-owner")

    engaged = said(owner.post(ADD_SWITCH, switch_form(), follow=True))
    switch = KillSwitch.objects.get()
    url = reverse("admin:policies_killswitch_change", args=[switch.pk])
    reworded = said(
        posted_from_page(owner, url, switch_form(reason="Tracking outage, still."), follow=True)
    )
    released = said(
        posted_from_page(
            owner, url, {**switch_form(change_reason="Fixed."), "engaged": ""}, follow=True
        )
    )

    assert "Kill switch on account demo engaged: Tracking outage." in engaged
    assert (
        "Kill switch on account demo stays engaged; its reason now reads: Tracking "
        "outage, still." in reworded
    )
    assert "Kill switch on account demo released." in released
    for messages in (engaged, reworded, released):
        assert not any("changed successfully" in m or "added successfully" in m for m in messages)


def test_a_kill_switch_s_reason_written_without_a_full_stop_is_said_with_one(login):
    """A policy owner types "Tracking outage" (no full stop): the message after the save
    still ends as a sentence, whichever of its sentences carries the reason."""
    owner = login("policy-owner")

    engaged = said(owner.post(ADD_SWITCH, switch_form(reason="Tracking outage"), follow=True))
    switch = KillSwitch.objects.get()
    url = reverse("admin:policies_killswitch_change", args=[switch.pk])
    reworded = said(
        posted_from_page(owner, url, switch_form(reason="Tracking outage, still"), follow=True)
    )
    everything = switch_form(scope="global", account="", reason="Tracking outage, still")
    moved = said(posted_from_page(owner, url, everything, follow=True))
    released = said(posted_from_page(owner, url, {**everything, "engaged": ""}, follow=True))
    reworded_released = said(
        posted_from_page(
            owner, url, {**everything, "reason": "Next outage", "engaged": ""}, follow=True
        )
    )

    assert "Kill switch on account demo engaged: Tracking outage." in engaged
    assert (
        "Kill switch on account demo stays engaged; its reason now reads: Tracking "
        "outage, still." in reworded
    )
    assert (
        "Kill switch on everything (until now on account demo) stays engaged: Tracking "
        "outage, still." in moved
    )
    assert "Kill switch on everything released." in released
    assert "Kill switch on everything stays released; its reason now reads: Next outage." in (
        reworded_released
    )


def test_a_kill_switch_moved_to_another_scope_says_what_it_covered_before(login):
    owner = login("policy-owner")
    owner.post(ADD_SWITCH, switch_form())
    switch = KillSwitch.objects.get()

    moved = said(
        posted_from_page(
            owner,
            reverse("admin:policies_killswitch_change", args=[switch.pk]),
            switch_form(scope="global", account=""),
            follow=True,
        )
    )

    assert (
        "Kill switch on everything (until now on account demo) stays engaged: Tracking outage."
        in moved
    )


def test_brand_guidelines_saved_say_what_they_now_ban_and_require_and_no_longer(login):
    guidelines = BrandGuidelines.objects.get(account__external_id="demo")
    assert guidelines.banned_terms.split() == ["guaranteed", "risk-free"]  # as seeded
    url = reverse("admin:policies_brandguidelines_change", args=[guidelines.pk])
    owner = login("policy-owner")
    form = {
        "account": guidelines.account_id,
        "banned_terms": "guaranteed\nfree money\n",
        "banned_patterns": "",
        "required_disclaimers": "Terms apply.",
        "change_reason": "Legal's review.",
    }

    changed = said(posted_from_page(owner, url, form, follow=True))
    # Sent again re-spaced, with a blank line: the same entries, so no version either.
    respaced = {"banned_terms": "  guaranteed\n\nfree money  \n", "change_reason": "Again."}
    unchanged = said(posted_from_page(owner, url, {**form, **respaced}, follow=True))

    assert (
        "Brand guidelines for demo now ban “free money”; no longer ban “risk-free”; "
        "now require “Terms apply.”."
    ) in changed
    assert unchanged == [
        "Nothing was changed in the brand guidelines “Brand guidelines for demo”: no setting "
        "differs from what was saved, so no new version was recorded."
    ]
    assert not any("changed successfully" in m for m in changed + unchanged)
    assert guidelines.history.count() == 2  # as seeded, and Legal's review
    guidelines.refresh_from_db()
    assert guidelines.banned_terms == "guaranteed\nfree money"  # its entries, as checked

    # Its history reads the terms line by line: joined with spaces, "guaranteed free money"
    # did not say whether "free money" was one term or two.
    history = owner.get(reverse("admin:policies_brandguidelines_history", args=[guidelines.pk]))
    changes = " ".join(history.text.split('data-label="Changes"')[1].split("</td>")[0].split())
    assert (
        "<strong>Banned terms:</strong> “guaranteed” · “risk-free” "
        "&nbsp;&rarr;&nbsp;&nbsp;“guaranteed” · “free money”"
    ) in changes


def test_a_kill_switchs_history_starts_with_what_it_was_engaged_with(login):
    """The auditor reads, on the history list, the reason a switch was engaged with: its
    "Created" entry showed nothing, the reason only on the version's own page."""
    owner = login("policy-owner")
    owner.post(ADD_SWITCH, switch_form(), follow=True)
    switch = KillSwitch.objects.get()

    history = login("auditor").get(reverse("admin:policies_killswitch_history", args=[switch.pk]))

    created = " ".join(history.text.split('data-label="Changes"')[-1].split("</td>")[0].split())
    assert "<strong>Reason:</strong> — &nbsp;&rarr;&nbsp;&nbsp;Tracking outage." in created
    assert "<strong>Engaged:</strong> — &nbsp;&rarr;&nbsp;&nbsp;yes" in created


def test_a_released_switch_given_a_new_reason_says_so(login):
    """A released switch's reason reworded said only "… stays released.": the save changed
    the reason (its history says so), and the message did not."""
    owner = login("policy-owner")
    owner.post(ADD_SWITCH, switch_form(), follow=True)
    switch = KillSwitch.objects.get()
    url = reverse("admin:policies_killswitch_change", args=[switch.pk])
    posted_from_page(
        owner, url, {**switch_form(change_reason="Fixed."), "engaged": ""}, follow=True
    )

    reworded = said(
        posted_from_page(
            owner,
            url,
            {**switch_form(reason="Ready for the next outage.", change_reason="Runbook."),
             "engaged": ""},
            follow=True,
        )
    )  # fmt: skip
    moved = said(
        posted_from_page(
            owner,
            url,
            {**switch_form(scope="global", account="", reason="Ready for the next outage."),
             "engaged": ""},
            follow=True,
        )
    )  # fmt: skip

    assert reworded == [
        "Kill switch on account demo stays released; its reason now reads: Ready for the "
        "next outage."
    ]
    assert moved == ["Kill switch on everything (until now on account demo) stays released."]


def test_engaging_a_switch_names_it_in_both_its_messages_alike(login):
    """Engaging said "Kill switch on demo (engaged) holds back …" and, beside it, "Kill switch
    on account demo engaged: …": one switch, named two ways in one page. With nothing to hold
    back it said so as a count, in a warning: "holds back 0 approved proposals"."""
    page = login("policy-owner").post(ADD_SWITCH, switch_form(), follow=True)

    assert [(m.level_tag, str(m)) for m in page.context["messages"]] == [
        (
            "info",
            "Kill switch on account demo holds nothing back: no approved proposal it covers "
            "was waiting to be carried out. While it is engaged, what a person approves (or "
            "sends to run again) runs: the switch holds back nothing a person approved since "
            "it was engaged.",
        ),
        ("success", "Kill switch on account demo engaged: Tracking outage."),
    ]


def test_a_switchs_title_names_what_it_covers_as_its_messages_do(login):
    """Its page and the list titled a switch "Kill switch on demo (engaged)" and "Kill switch
    on google_ads (engaged)" (the channel's code) beside messages saying "Kill switch on
    account demo" and "channel Google Ads"."""
    owner = login("policy-owner")
    owner.post(ADD_SWITCH, switch_form(), follow=True)
    owner.post(ADD_SWITCH, switch_form(scope="channel", account="", channel="google_ads"))
    by_channel = KillSwitch.objects.get(scope="channel")

    listed = owner.get("/admin/policies/killswitch/").content.decode()
    page = owner.get(f"/admin/policies/killswitch/{by_channel.pk}/change/").content.decode()

    assert "Kill switch on account demo (engaged)" in listed
    assert "Kill switch on channel Google Ads (engaged)" in listed
    assert "Kill switch on channel Google Ads (engaged)" in page
    assert "on demo (" not in listed and "google_ads (" not in listed + page


def test_a_promotion_says_what_it_changed_as_the_policys_history_does(login):
    """A promotion said only "“Budget reallocations” is live, as the draft set it.", where a
    save of the policy says "What changed: …"."""
    owner = login("policy-owner")
    policy = reallocations()
    draft = duplicate(
        owner, policy, auto_execute_max_magnitude="30", review_window="2 days",
        change_reason="Try 30%.",
    )  # fmt: skip

    promoted = said(
        owner.post(
            reverse("admin:policies_policy_promote", args=[draft.pk]),
            {"change_reason": "Simulated."},
            follow=True,
        )
    )

    changes = "Auto-execute ceiling: 10% → 30%; Review window: 3 days → 2 days"
    # After the draft's own message, kept from its save.
    assert promoted[-1] == (
        f"“Budget reallocations” is live, as the draft set it. What changed: {changes}."
    )
    history = owner.get(reverse("admin:policies_policy_history", args=[policy.pk]))
    latest = " ".join(history.text.split('data-label="Changes"')[1].split("</td>")[0].split())
    for line in changes.split("; "):
        setting, change = line.split(": ")
        before, after = change.split(" → ")
        assert f"<strong>{setting}:</strong> {before} &nbsp;&rarr;&nbsp;&nbsp;{after}" in latest


def test_a_draft_that_changes_nothing_is_refused_and_writes_no_version(login):
    """A draft saying what the live policy says was promoted: a new version of the policy,
    changing nothing, and "is live, as the draft set it". A save that changes nothing is
    refused, writing no version (a proposal routed under the one before would read "it has
    changed since"); so is this promotion, and the draft stays as it was."""
    owner = login("policy-owner")
    policy = reallocations()
    draft = duplicate(owner, policy, change_reason="The same, to compare.")
    versions = policy.history.count()

    refused = owner.post(
        reverse("admin:policies_policy_promote", args=[draft.pk]), {"change_reason": "Same."}
    )

    assert refused.status_code == 200
    assert refused.context["form"].non_field_errors() == [
        "Nothing was changed in the policy “Budget reallocations”: the draft says what it says, "
        "so no new version was recorded. The draft stays as it is."
    ]
    assert policy.history.count() == versions
    draft.refresh_from_db()
    assert (draft.is_draft, draft.is_active) == (True, True)


def test_a_draft_replacing_no_policy_says_it_adds_one(login):
    owner = login("policy-owner")
    draft = Policy.objects.create(
        name="Optimizer's reallocations",
        action_type="budget_reallocation",
        agent=Agent.objects.get(name="optimizer"),
        is_draft=True,
        auto_execute_max_magnitude=Decimal("0.2"),
    )

    promoted = said(
        owner.post(
            reverse("admin:policies_policy_promote", args=[draft.pk]),
            {"change_reason": "Earned it."},
            follow=True,
        )
    )

    assert promoted == [
        "“Optimizer's reallocations” is live, as the draft set it: no live policy had its "
        "action type, scope and priority, so it adds to the policies in force."
    ]


def test_an_empty_cap_reads_not_set_on_an_account_as_on_a_campaign(login):
    """Lifting an account's total cap said "Max total daily budget: 900.00 → —", where lifting a
    campaign's cap says "Max daily budget: 700.00 → not set": one empty cap, two words. Both
    now say "not set", in the message, the history and the ledger's own pages."""
    owner = login("policy-owner")
    account = Account.objects.get(external_id="demo")
    campaign = Campaign.objects.get(external_id="brand-search")
    account_url = reverse("admin:ledger_account_change", args=[account.pk])
    campaign_url = reverse("admin:ledger_campaign_change", args=[campaign.pk])

    posted_from_page(
        owner, account_url, {"max_total_daily_budget": "900", "change_reason": "Cap."}, follow=True
    )
    lifted = said(
        posted_from_page(
            owner, account_url, {"max_total_daily_budget": "", "change_reason": "Lift."},
            follow=True,
        )
    )  # fmt: skip
    posted_from_page(owner, campaign_url, {"max_daily_budget": "700", "change_reason": "Cap."})
    campaign_lifted = said(
        posted_from_page(
            owner, campaign_url, {"max_daily_budget": "", "change_reason": "Lift."}, follow=True
        )
    )

    assert lifted[-1].endswith("What changed: Max total daily budget: 900.00 USD → not set.")
    assert campaign_lifted[-1].endswith("What changed: Max daily budget: 700.00 USD → not set.")
    for history, cap in (
        (reverse("admin:ledger_account_history", args=[account.pk]), "900.00 USD"),
        (reverse("admin:ledger_campaign_history", args=[campaign.pk]), "700.00 USD"),
    ):
        latest = " ".join(
            owner.get(history).text.split('data-label="Changes"')[1].split("</td>")[0].split()
        )
        assert f"{cap} &nbsp;&rarr;&nbsp;&nbsp;not set" in latest, latest
    # The ledger's own pages show an empty cap in the same words: the campaigns' list, and
    # the account's page as an auditor reads it.
    campaigns = owner.get(reverse("admin:ledger_campaign_changelist")).text
    assert 'class="field-max_daily_budget">not set</td>' in campaigns
    page = " ".join(login("auditor").get(account_url).text.split())
    cap_shown = page.split("field-max_total_daily_budget")[1][:300]
    assert '<div class="readonly">not set</div>' in cap_shown, cap_shown


def test_a_ledger_records_creation_reads_its_fields_from_nothing_not_as_caps_not_set(login):
    """ "Not set" is what an empty cap reads; a record's creation said it of every field:
    "External id: not set → demo", "Name: not set → Demo advertiser"."""
    account = Account.objects.get(external_id="demo")

    page = login("auditor").get(reverse("admin:ledger_account_history", args=[account.pk]))
    text = " ".join(page.text.split())

    assert "— &nbsp;&rarr;&nbsp;&nbsp;demo" in text
    assert "not set &nbsp;&rarr;&nbsp;&nbsp;demo" not in text


def test_brand_guidelines_with_an_invisible_character_are_refused_naming_it_and_its_line(login):
    """A disclaimer holding a zero-width space was saved: its history read "Terms apply. →
    Terms apply.", its message "now require “Terms apply.”; no longer require “Terms apply.”",
    and a creative typed by a person never held it. It is refused, the character named."""
    guidelines = BrandGuidelines.objects.get(account__external_id="demo")
    url = reverse("admin:policies_brandguidelines_change", args=[guidelines.pk])
    owner = login("policy-owner")
    saved = guidelines.history.count()
    form = {
        "account": guidelines.account_id,
        "banned_terms": "guaranteed\nrisk-free",
        "banned_patterns": "",
        "required_disclaimers": "",
        "change_reason": "Legal's review.",
    }

    cases = {
        "required_disclaimers": (
            "\n\nPast results are no guarantee.\r\nTerms\u200b apply.",
            "Line 4 holds an invisible character (U+200B ZERO WIDTH SPACE): "
            "type it again without it.",
        ),
        "banned_terms": (
            "guaranteed\n\ufeffrisk-free",
            "Line 2 holds an invisible character (U+FEFF ZERO WIDTH NO-BREAK SPACE): "
            "type it again without it.",
        ),
        "banned_patterns": (
            "free\u202e money",
            "Line 1 holds an invisible character (U+202E RIGHT-TO-LEFT OVERRIDE): "
            "type it again without it.",
        ),
    }
    for field, (text, error) in cases.items():
        response = posted_from_page(owner, url, {**form, field: text})
        assert response.status_code == 200
        assert response.context["adminform"].form.errors[field] == [error]

    guidelines.refresh_from_db()
    assert guidelines.required_disclaimers == ""  # as seeded
    assert guidelines.history.count() == saved
    # An emoji drawn in its colour form (a presentation selector after it) is seen: kept.
    kept = posted_from_page(
        owner, url, {**form, "required_disclaimers": "Terms apply \u2764\ufe0f"}
    )
    assert kept.status_code == 302
