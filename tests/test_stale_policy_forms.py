"""A policy's page (or a guardrail's) opened before someone else changed it does not put the
old settings back when saved: the save is refused, saying who changed what and when, and
the form comes back with the person's own edits over the settings as they are now."""

import html
from decimal import Decimal

import pytest
from django.contrib.admin import site
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.urls import reverse

from audit.actors import Actor
from ledger.models import Account
from notifications.models import Route
from policies.drafts import policy_promote
from policies.models import BrandGuidelines, KillSwitch, Policy


@pytest.fixture
def owners(login, demo_world) -> tuple[Client, Client]:
    """Two policy owners: the demo's and a colleague in the same groups."""
    owner = login("policy-owner")
    user = get_user_model().objects.get(username="policy-owner")
    colleague = get_user_model().objects.create_user("colleague", is_staff=True)
    colleague.groups.set(user.groups.all())
    other = Client()
    other.force_login(colleague)
    return owner, other


def reallocations() -> Policy:
    return Policy.objects.get(action_type="budget_reallocation", is_draft=False)


def change_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def as_shown(page, **typed) -> dict:
    """What a page's form posts as it is shown (with its hidden fields), ``typed`` typed in."""
    form = page.context["adminform"].form
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is False or value is None:
            continue
        data[name] = value
    data |= typed
    return {name: value for name, value in data.items() if value is not False}


def saved_by(client, obj, **changes):
    """``obj``'s page opened and saved at once by ``client``, with ``changes``."""
    return client.post(change_url(obj), as_shown(client.get(change_url(obj)), **changes))


def errors_said(page) -> str:
    return html.unescape(" ".join(page.context["adminform"].form.non_field_errors()))


def test_a_policy_page_opened_before_a_colleagues_change_does_not_put_the_old_settings_back(
    owners,
):
    owner, colleague = owners
    policy = reallocations()
    opened = owner.get(change_url(policy))  # the owner's page: cumulative ceiling 25%

    changed = colleague.post(
        change_url(policy),
        as_shown(
            colleague.get(change_url(policy)),
            cumulative_max_magnitude="40",
            change_reason="Reallocations settle over days",
        ),
    )
    assert changed.status_code == 302

    # The owner, on the page as opened, raises the auto-execute ceiling.
    refused = owner.post(
        change_url(policy),
        as_shown(opened, auto_execute_max_magnitude="12", change_reason="Small moves are safe"),
    )

    assert refused.status_code == 200
    policy.refresh_from_db()
    assert policy.cumulative_max_magnitude == Decimal("0.4")  # the colleague's, kept
    assert policy.auto_execute_max_magnitude == Decimal("0.1")  # nothing of the owner's saved
    said = errors_said(refused)
    assert "was changed after you opened this page, so nothing was saved" in said
    assert "colleague (person) at " in said
    assert "Cumulative ceiling: 25% → 40%" in said
    assert "Reallocations settle over days" in said
    # The form comes back with the colleague's change and the owner's own edit and reason.
    form = refused.context["adminform"].form
    assert form["cumulative_max_magnitude"].value() == "40"
    assert form["auto_execute_max_magnitude"].value() == "12"
    assert form["change_reason"].value() == "Small moves are safe"

    # Saved again from that form, it changes only what the owner changed.
    again = owner.post(change_url(policy), as_shown(refused))
    assert again.status_code == 302
    policy.refresh_from_db()
    assert policy.cumulative_max_magnitude == Decimal("0.4")
    assert policy.auto_execute_max_magnitude == Decimal("0.12")


def test_a_setting_both_changed_is_marked_and_keeps_what_was_typed(owners):
    owner, colleague = owners
    policy = reallocations()
    opened = owner.get(change_url(policy))
    saved_by(
        colleague,
        policy,
        auto_execute_max_magnitude="15",
        change_reason="Looser",
    )

    refused = owner.post(
        change_url(policy),
        as_shown(opened, auto_execute_max_magnitude="8", change_reason="Tighter"),
    )

    policy.refresh_from_db()
    assert policy.auto_execute_max_magnitude == Decimal("0.15")
    form = refused.context["adminform"].form
    assert form["auto_execute_max_magnitude"].value() == "8"
    field_errors = html.unescape(" ".join(form.errors["auto_execute_max_magnitude"]))
    assert "Changed since you opened this page (to “15” now)" in field_errors


def test_a_policy_page_opened_before_a_drafts_promotion_does_not_undo_it(owners):
    owner, _ = owners
    policy = reallocations()
    draft = Policy.objects.create(
        name="Budget reallocations (draft)",
        action_type="budget_reallocation",
        is_draft=True,
        draft_of=policy,
        auto_execute_max_magnitude=Decimal("0.2"),
        cumulative_max_magnitude=policy.cumulative_max_magnitude,
        cumulative_window=policy.cumulative_window,
    )
    opened = owner.get(change_url(policy))
    promoter = get_user_model().objects.get(username="colleague")
    policy_promote(draft_id=draft.pk, actor=Actor.for_user(promoter), reason="Tried for a week")

    refused = owner.post(
        change_url(policy), as_shown(opened, review_window="2 days", change_reason="Faster")
    )

    policy.refresh_from_db()
    assert policy.auto_execute_max_magnitude == Decimal("0.2")  # the promotion's, kept
    said = errors_said(refused)
    assert "colleague (person) at " in said
    assert "Auto-execute ceiling: 10% → 20%" in said
    form = refused.context["adminform"].form
    assert form["auto_execute_max_magnitude"].value() == "20"


def test_a_brand_guidelines_page_opened_before_a_colleagues_change_does_not_undo_it(owners):
    owner, colleague = owners
    guidelines = BrandGuidelines.objects.get(account__external_id="demo")
    opened = owner.get(change_url(guidelines))
    saved_by(
        colleague,
        guidelines,
        banned_terms="guaranteed\nrisk-free\nfree money",
        change_reason="Legal asked",
    )

    refused = owner.post(
        change_url(guidelines),
        as_shown(opened, required_disclaimers="Terms apply.", change_reason="Disclaimer"),
    )

    guidelines.refresh_from_db()
    assert "free money" in guidelines.banned_terms
    assert guidelines.required_disclaimers == ""
    assert "colleague (person)" in errors_said(refused)


def test_an_unchanged_policy_saves_as_before(owners):
    owner, _ = owners
    policy = reallocations()
    saved = owner.post(
        change_url(policy),
        as_shown(owner.get(change_url(policy)), auto_execute_max_magnitude="11", change_reason="x"),
    )
    assert saved.status_code == 302
    policy.refresh_from_db()
    assert policy.auto_execute_max_magnitude == Decimal("0.11")


def test_a_page_naming_a_version_not_of_its_record_saves_nothing(owners):
    """A version the record never had (another record's, or one not made yet) is refused, not
    taken as "nothing changed since": the save had gone through unchecked."""
    owner, colleague = owners
    policy = reallocations()
    opened = owner.get(change_url(policy))
    colleague.post(
        change_url(policy),
        as_shown(
            colleague.get(change_url(policy)), cumulative_max_magnitude="40", change_reason="x"
        ),
    )
    for forged in (str(2**31 - 1), str(Policy.history.order_by("-history_id")[0].history_id + 1)):
        refused = owner.post(
            change_url(policy),
            as_shown(
                opened, seen_version=forged, auto_execute_max_magnitude="12", change_reason="y"
            ),
        )
        assert refused.status_code == 200
        assert f"named a version (#{forged}) that is not one of this policy's" in errors_said(
            refused
        )
    policy.refresh_from_db()
    assert policy.cumulative_max_magnitude == Decimal("0.4")  # the colleague's, kept
    assert policy.auto_execute_max_magnitude == Decimal("0.1")


@pytest.mark.parametrize("forged", ["x", "-1", "99999999999"])
def test_a_page_whose_version_is_no_version_says_so_where_it_is_seen(owners, forged):
    """The version is hidden: its own error ("Enter a whole number.") was shown nowhere, under
    "Please correct the error below."."""
    owner, _ = owners
    policy = reallocations()
    refused = owner.post(
        change_url(policy),
        as_shown(
            owner.get(change_url(policy)),
            seen_version=forged,
            auto_execute_max_magnitude="12",
            change_reason="y",
        ),
    )
    assert refused.status_code == 200
    assert "This page did not say which version it showed, so nothing was saved" in errors_said(
        refused
    )
    assert "seen_version" not in refused.context["adminform"].form.errors
    policy.refresh_from_db()
    assert policy.auto_execute_max_magnitude == Decimal("0.1")


def without_version(page, **typed) -> dict:
    """What a page's form posts with ``typed`` typed in, its version left out: as a script,
    or a page from before pages named their version, sends it."""
    data = as_shown(page, **typed)
    del data["seen_version"]
    return data


def test_a_policy_change_naming_no_version_is_refused_and_shows_the_policy_as_it_is(owners):
    """A change sent without the version its page showed had been saved unchecked, putting
    back whatever it carried over a colleague's change made since."""
    owner, colleague = owners
    policy = reallocations()
    opened = owner.get(change_url(policy))  # cumulative ceiling 25%
    saved_by(colleague, policy, cumulative_max_magnitude="40", change_reason="Settles slowly")

    refused = owner.post(
        change_url(policy),
        without_version(opened, auto_execute_max_magnitude="12", change_reason="Small is safe"),
    )

    assert refused.status_code == 200
    policy.refresh_from_db()
    assert policy.cumulative_max_magnitude == Decimal("0.4")  # the colleague's, kept
    assert policy.auto_execute_max_magnitude == Decimal("0.1")  # nothing of the owner's saved
    said = errors_said(refused)
    assert said.startswith("This page did not say which version it showed, so nothing was saved")
    assert "The form below now shows this policy as it is" in said
    # The form shows the policy as it is, each setting sent otherwise marked with what was sent.
    form = refused.context["adminform"].form
    assert form["cumulative_max_magnitude"].value() == "40"
    assert form["auto_execute_max_magnitude"].value() == "10"
    assert form["change_reason"].value() == "Small is safe"
    marks = {name: html.unescape(" ".join(errors)) for name, errors in form.errors.items()}
    assert "Not saved: you sent “25”" in marks["cumulative_max_magnitude"]
    assert "Not saved: you sent “12”" in marks["auto_execute_max_magnitude"]
    # Saved again from that form (the owner's change typed again), it is a change of the
    # policy as it is.
    again = owner.post(change_url(policy), as_shown(refused, auto_execute_max_magnitude="12"))
    assert again.status_code == 302
    policy.refresh_from_db()
    assert policy.cumulative_max_magnitude == Decimal("0.4")
    assert policy.auto_execute_max_magnitude == Decimal("0.12")


def test_a_kill_switch_change_naming_no_version_releases_nothing(owners):
    """An addition names no version (there is none to have seen); a change must."""
    owner, _ = owners
    added = owner.post(
        reverse("admin:policies_killswitch_add"),
        {
            "scope": "account",
            "account": Account.objects.get(external_id="demo").pk,
            "engaged": "on",
            "reason": "Tracking outage",
            "change_reason": "Outage",
        },
    )
    assert added.status_code == 302
    switch = KillSwitch.objects.get(reason="Tracking outage")
    versions = KillSwitch.history.filter(id=switch.pk).count()

    refused = owner.post(
        change_url(switch),
        without_version(owner.get(change_url(switch)), engaged=False, change_reason="Fixed"),
    )

    assert refused.status_code == 200
    switch.refresh_from_db()
    assert switch.engaged  # still holding
    assert KillSwitch.history.filter(id=switch.pk).count() == versions
    assert errors_said(refused).startswith(
        "This page did not say which version it showed, so nothing was saved"
    )
    form = refused.context["adminform"].form
    assert form["engaged"].value() is True
    assert "Not saved: you sent “no”" in html.unescape(" ".join(form.errors["engaged"]))


def test_a_record_with_no_version_recorded_is_saved_from_its_page_and_checked(owners):
    """A record whose history holds no version yet (one written before its history was
    kept) names "none yet" on its page: the page still saves, and one opened before a
    colleague's save is refused."""
    owner, colleague = owners
    switch = KillSwitch.objects.create(
        scope="account",
        account=Account.objects.get(external_id="demo"),
        engaged=False,
        reason="Ready",
    )
    KillSwitch.history.filter(id=switch.pk).delete()
    opened = owner.get(change_url(switch))
    assert as_shown(opened)["seen_version"] == 0

    saved_by(colleague, switch, engaged=True, change_reason="Outage")
    refused = owner.post(
        change_url(switch), as_shown(opened, reason="Ready, still", change_reason="Reword")
    )

    assert refused.status_code == 200
    switch.refresh_from_db()
    assert (switch.engaged, switch.reason) == (True, "Ready")
    said = errors_said(refused)
    assert said.startswith("This kill switch was changed after you opened this page")
    assert "colleague (person) at " in said and "Outage" in said


def test_a_record_deleted_while_its_form_is_saved_is_not_made_again(rf, demo_world):
    """Deleted after the admin read it for a save and before the save held its row: the save
    had written it again (an UPDATE of no row, then an INSERT), as if created anew."""
    owner = get_user_model().objects.get(username="policy-owner")
    policy = Policy.objects.create(
        name="Short-lived", action_type="bid_adjustment", priority=7, is_draft=True
    )
    request = rf.post("/")
    request.user = owner
    admin = site._registry[Policy]
    opened = admin.get_object(request, str(policy.pk))
    form_class = admin.get_form(request, opened, change=True)
    page = form_class(instance=opened)
    data = {name: page[name].value() for name in page.fields if page[name].value() is not None}
    data |= {"review_window": "3 days", "change_reason": "Tidy"}
    form = form_class(data, instance=opened)
    policy._change_reason = "Not needed"
    policy.delete()

    with transaction.atomic():
        assert not form.is_valid()
    said = html.unescape(" ".join(form.non_field_errors()))
    assert said.startswith(
        "This policy was deleted after you opened this page, so nothing was saved"
    )
    assert not Policy.objects.filter(pk=policy.pk).exists()


def test_a_switch_engaged_since_its_page_was_opened_is_not_released_by_saving_it_again(owners):
    """An unticked box is sent as nothing at all: a colleague's engaging was not put in the
    form shown again, and saving that form again released the switch."""
    owner, colleague = owners
    switch = KillSwitch.objects.create(
        scope="account",
        account=Account.objects.get(external_id="demo"),
        engaged=False,
        reason="Tracking outgae",
    )
    opened = owner.get(change_url(switch))
    engaged = colleague.post(
        change_url(switch),
        as_shown(colleague.get(change_url(switch)), engaged=True, change_reason="Outage"),
    )
    assert engaged.status_code == 302

    refused = owner.post(
        change_url(switch), as_shown(opened, reason="Tracking outage", change_reason="Say why")
    )
    assert refused.status_code == 200
    form = refused.context["adminform"].form
    assert form["engaged"].value() is True
    assert form["reason"].value() == "Tracking outage"
    assert owner.post(change_url(switch), as_shown(refused)).status_code == 302
    switch.refresh_from_db()
    assert switch.engaged
    assert switch.reason == "Tracking outage"


def test_people_a_colleague_added_to_a_route_since_its_page_was_opened_stay_on_it(demo_world):
    """A list with nothing chosen is sent as nothing at all, and the form of an old version
    read the people on the route now: a colleague's addition was not put in the form shown
    again, and saving it again took them off."""
    first, second = (
        get_user_model().objects.create_superuser(name, f"{name}@example.com", "x")
        for name in ("first", "second")
    )
    owner, colleague = Client(), Client()
    owner.force_login(first)
    colleague.force_login(second)
    route = Route.objects.filter(users=None).exclude(groups=None).first()
    opened = owner.get(change_url(route))
    added = colleague.post(
        change_url(route),
        as_shown(colleague.get(change_url(route)), users=[second.pk], change_reason="On call"),
    )
    assert added.status_code == 302

    refused = owner.post(
        change_url(route), as_shown(opened, name="Everything waiting", change_reason="Rename")
    )
    assert refused.status_code == 200
    assert refused.context["adminform"].form["users"].value() == [str(second.pk)]
    assert owner.post(change_url(route), as_shown(refused)).status_code == 302
    route.refresh_from_db()
    assert list(route.users.all()) == [second]
    assert route.name == "Everything waiting"


def test_a_list_left_as_it_was_shown_is_not_taken_for_an_edit_of_it(owners):
    """A browser sends a textarea's lines back with CRLF breaks: banned terms the owner did
    not touch were taken for their edit, marked as both changed and kept as the page had
    shown them, so that saving again, as the refusal asks, took the colleague's term out."""
    owner, colleague = owners
    guidelines = BrandGuidelines.objects.get(account__external_id="demo")
    opened = owner.get(change_url(guidelines))
    saved_by(
        colleague,
        guidelines,
        banned_terms="guaranteed\r\nrisk-free\r\nfree money",
        change_reason="Legal asked",
    )
    shown = opened.context["adminform"].form["banned_terms"].value()
    assert shown == "guaranteed\nrisk-free"

    refused = owner.post(
        change_url(guidelines),
        as_shown(
            opened,
            banned_terms=shown.replace("\n", "\r\n"),  # as the browser sends it back
            required_disclaimers="Terms apply.",
            change_reason="Disclaimer",
        ),
    )

    form = refused.context["adminform"].form
    assert "banned_terms" not in form.errors  # not marked as changed by both
    assert "free money" in form["banned_terms"].value()
    said = errors_said(refused)
    assert said.startswith("These brand guidelines were changed after you opened this page")
    assert "The form below now shows those changes (Banned terms)" in said
    again = owner.post(change_url(guidelines), as_shown(refused))
    assert again.status_code == 302
    guidelines.refresh_from_db()
    assert guidelines.banned_terms.split("\n") == ["guaranteed", "risk-free", "free money"]
    assert guidelines.required_disclaimers == "Terms apply."


def promote_url(draft: Policy) -> str:
    return reverse("admin:policies_policy_promote", args=[draft.pk])


def reallocations_draft(auto_execute: str) -> Policy:
    policy = reallocations()
    return Policy.objects.create(
        name="Budget reallocations",
        action_type="budget_reallocation",
        is_draft=True,
        draft_of=policy,
        auto_execute_max_magnitude=Decimal(auto_execute),
        cumulative_max_magnitude=policy.cumulative_max_magnitude,
        cumulative_window=policy.cumulative_window,
    )


def promotion_posted(page, reason: str) -> dict:
    """What the promotion page's form posts: the versions it showed (hidden), and a reason."""
    form = page.context["form"]
    seen = form.data.get("seen") if form.is_bound else form.initial.get("seen")
    return {"seen": seen or "", "change_reason": reason}


def changes_listed(page) -> list[tuple[str, str, str]]:
    return list(page.context["changes"])


def test_a_promotion_page_opened_before_a_colleague_edits_the_draft_promotes_nothing(owners):
    """The promotion page listed "Auto-execute ceiling 10% → 20%"; a colleague then raised
    the draft to 30%, and Promote put 30% live, which the page had never shown."""
    owner, colleague = owners
    draft = reallocations_draft("0.2")
    opened = owner.get(promote_url(draft))
    assert ("Auto-execute ceiling", "10%", "20%") in changes_listed(opened)
    edited = colleague.post(
        change_url(draft),
        as_shown(
            colleague.get(change_url(draft)),
            auto_execute_max_magnitude="30",
            change_reason="Bolder",
        ),
    )
    assert edited.status_code == 302

    refused = owner.post(promote_url(draft), promotion_posted(opened, "Simulated: fine"))

    assert refused.status_code == 200
    policy, draft = reallocations(), Policy.objects.get(pk=draft.pk)
    assert policy.auto_execute_max_magnitude == Decimal("0.1")  # nothing went live
    assert draft.is_active and draft.is_draft
    said = html.unescape(" ".join(refused.context["form"].non_field_errors()))
    assert said.startswith("Nothing was promoted: the draft or the policy it replaces changed")
    assert "the draft by colleague (person) at " in said
    assert "Auto-execute ceiling: 20% → 30% (why: “Bolder”)" in said
    assert refused.text.count("Nothing was promoted") == 1  # said once, above the form
    # The page lists what promoting does now, the owner's reason kept, and promotes it.
    assert ("Auto-execute ceiling", "10%", "30%") in changes_listed(refused)
    assert refused.context["form"]["change_reason"].value() == "Simulated: fine"
    promoted = owner.post(promote_url(draft), promotion_posted(refused, "Simulated: fine"))
    assert promoted.status_code == 302
    assert reallocations().auto_execute_max_magnitude == Decimal("0.3")


def test_a_promotion_page_opened_before_the_live_policy_changed_promotes_nothing(owners):
    owner, colleague = owners
    draft = reallocations_draft("0.2")
    policy = reallocations()
    opened = owner.get(promote_url(draft))
    assert ("Cumulative ceiling", "25%", "25%") not in changes_listed(opened)
    saved_by(
        colleague,
        policy,
        cumulative_max_magnitude="40",
        change_reason="Settles over days",
    )

    refused = owner.post(promote_url(draft), promotion_posted(opened, "Simulated"))

    policy.refresh_from_db()
    assert policy.cumulative_max_magnitude == Decimal("0.4")  # the colleague's, not undone
    assert policy.auto_execute_max_magnitude == Decimal("0.1")
    said = html.unescape(" ".join(refused.context["form"].non_field_errors()))
    assert "“Budget reallocations”, the policy it replaces, by colleague (person)" in said
    assert "Cumulative ceiling: 25% → 40%" in said
    # Promoted now, the draft would put the cumulative ceiling back: the page says so.
    assert ("Cumulative ceiling", "40%", "25%") in changes_listed(refused)


def test_a_promotion_page_still_as_shown_promotes(owners):
    owner, _ = owners
    draft = reallocations_draft("0.2")
    opened = owner.get(promote_url(draft))
    promoted = owner.post(promote_url(draft), promotion_posted(opened, "Simulated"))
    assert promoted.status_code == 302
    assert reallocations().auto_execute_max_magnitude == Decimal("0.2")
