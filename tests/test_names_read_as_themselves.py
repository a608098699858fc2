"""A name is how operators and auditors tell one record from another: which policy routed a
proposal ("Routed by policy “Bid adjustments”"), which route told whom, which role a route
tells, which account and campaign a proposal is on. A name that would show as another one's
is refused; a name written in another script is a name like any other."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ledger.models import Account, Campaign
from notifications.models import Route
from policies.models import Policy
from tests.test_policy_ownership import form_data

LOOK_ALIKES = [
    "Bid adjustments\u200b",  # a zero-width space after the demo policy's name
    "Bid adjustm\u0435nts",  # a Cyrillic "е"
    "\u202estnemtsujda diB",  # reversed by a right-to-left override: reads "Bid adjustments"
    "Bid  adjustments",
]


def every_bid_move_run_by_a_policy_named(login, name: str):
    """A policy owner's add page posted: a policy named ``name`` auto-executing every bid
    move, at priority 7, beside the demo's own, which covers every bid adjustment."""
    client = login("policy-owner")
    url = reverse("admin:policies_policy_add")
    return client.post(
        url,
        form_data(
            client,
            url,
            name=name,
            action_type="bid_adjustment",
            is_active="on",
            auto_execute_max_magnitude="1000",
            always_review=False,
            priority="7",
        ),
    )


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_a_policy_named_as_it_would_show_as_another_is_refused(login, demo_world, name):
    """A policy owner added a policy scoped to one agent, auto-executing its every bid
    move, named "Bid adjustments" and a zero-width space: the proposals it let run said
    "Routed by policy “Bid adjustments”", the demo's vetted policy as far as any reader
    could tell. Refused, saying why; nothing saved."""
    before = Policy.objects.count()

    page = every_bid_move_run_by_a_policy_named(login, name)

    assert page.status_code == 200  # the form again, saying why
    assert "would show as another name" in page.text
    assert Policy.objects.count() == before


def test_a_policy_named_in_another_script_is_taken(login, demo_world):
    client = login("policy-owner")
    url = reverse("admin:policies_policy_add")

    page = client.post(
        url,
        form_data(
            client, url, name="Ρυθμίσεις προσφορών", action_type="bid_adjustment", priority="7"
        ),
    )

    assert page.status_code == 302, page.text
    assert Policy.objects.filter(name="Ρυθμίσεις προσφορών").exists()


def test_a_policy_named_so_before_the_check_still_has_its_other_settings_changed(login, demo_world):
    """A policy whose name was saved before the check (two spaces) could not have its
    ceiling changed until someone renamed it: every save was refused for the name. Its
    name unchanged, the save goes through; renamed to another look-alike, it is refused."""
    policy = Policy.objects.get(name="Bid adjustments")
    policy.name = "Bid  adjustments"
    policy.save()
    client = login("policy-owner")
    url = reverse("admin:policies_policy_change", args=[policy.pk])

    page = client.post(url, form_data(client, url, auto_execute_max_magnitude="5"))  # per cent

    assert page.status_code == 302, page.text
    policy.refresh_from_db()
    assert policy.auto_execute_max_magnitude == Decimal("0.05")
    page = client.post(url, form_data(client, url, name="Bid adjustments\u200b"))
    assert "would show as another name" in page.text
    assert Policy.objects.get(pk=policy.pk).name == "Bid  adjustments"


def administrator() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("admin", "admin@example.com"))
    return client


def route_values() -> dict:
    return {
        "is_active": "on",
        "action_type": "budget_reallocation",
        "groups": [Group.objects.get(name="operators").pk],
        "users": [],
        "delivery": "immediately",
    }


def account_values() -> dict:
    return {"external_id": "shop-2", "channel": "google_ads", "currency": "EUR"}


def campaign_values() -> dict:
    return {
        "account": Account.objects.get(external_id="demo").pk,
        "external_id": "spring-2",
        "daily_budget": "100",
        "bid": "1.20",
        "bidding_strategy": "manual_cpc",
        "status": "active",
    }


# Where each kind of name is typed, by whom, and what else its form needs.
NAMED_IN_CONSOLE = {
    "route": ("admin:notifications_route_add", Route, "policy-owner", route_values),
    "account": ("admin:ledger_account_add", Account, None, account_values),
    "campaign": ("admin:ledger_campaign_add", Campaign, None, campaign_values),
    "role": ("admin:auth_group_add", Group, None, lambda: {"permissions": []}),
}


def named_in_console(login, kind: str, name: str):
    """The add page of ``kind`` posted with ``name`` typed in, by whom may add one."""
    url_name, model, username, values = NAMED_IN_CONSOLE[kind]
    client = login(username) if username else administrator()
    url = reverse(url_name)
    return client.post(url, form_data(client, url, name=name, **values())), model


@pytest.mark.parametrize("kind", NAMED_IN_CONSOLE)
@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_a_route_account_campaign_or_role_named_as_it_would_show_as_another_is_refused(
    login, kind, name
):
    """A route named "Bid adjustments" and a zero-width space told the operators beside the
    one they knew by that name; a role named "operators" with a Cyrillic "о" read, on a
    route's page, as the operators. Refused, saying why; nothing saved."""
    model = NAMED_IN_CONSOLE[kind][1]
    before = model.objects.count()

    page, _ = named_in_console(login, kind, name)

    assert page.status_code == 200  # the form again, saying why
    assert "would show as another name" in page.text
    assert model.objects.count() == before


# Names as people write them, none reading as another's: accented Latin, Greek, Japanese,
# Arabic, Hebrew, a Cyrillic word, an emoji without joiners, a trade mark and a subscript.
ORDINARY_NAMES = [
    "Café Ads",
    "Zürich",
    "Ρυθμίσεις προσφορών",
    "コンバージョン",
    "حملة الربيع",
    "קמפיין אביב",
    "Ставки",
    "🚀 Launch",
    "Acme™ CO₂",
]


@pytest.mark.parametrize("kind", NAMED_IN_CONSOLE)
@pytest.mark.parametrize("name", ORDINARY_NAMES)
def test_a_route_account_campaign_or_role_named_in_another_script_is_taken(login, kind, name):
    page, model = named_in_console(login, kind, name)

    assert page.status_code == 302, page.context["adminform"].form.errors
    assert model.objects.filter(name=name).exists()


# Django's own check takes any script's letters, and refuses an invisible character already.
@pytest.mark.parametrize("username", ["operat\u043er", "\u03bfperator"])  # Cyrillic, Greek "о"
def test_a_person_named_as_they_would_show_as_another_is_refused(demo_world, username):
    """Records name a person by username ("Approved by operator"): one added as "operatоr",
    with a Cyrillic "о", approved as the operator to every reader of the history."""
    client = administrator()
    url = reverse("admin:auth_user_add")
    before = get_user_model().objects.count()

    page = client.post(url, person_values(client, url, username))

    assert page.status_code == 200  # the form again, saying why
    assert "would show as another name" in page.text
    assert get_user_model().objects.count() == before


def test_a_person_named_in_another_script_is_taken(demo_world):
    client = administrator()
    url = reverse("admin:auth_user_add")

    page = client.post(url, person_values(client, url, "σοφία"))

    assert page.status_code == 302, page.context["adminform"].form.errors
    assert get_user_model().objects.filter(username="σοφία").exists()


def person_values(client: Client, url: str, username: str) -> dict:
    password = "correct horse battery staple 7"
    return form_data(
        client,
        url,
        username=username,
        usable_password="true",
        password1=password,
        password2=password,
        groups=[],
        user_permissions=[],
    )


# Letters in another's dress, the name it shows as, and each letter as NFKC, or its name,
# says it shows.
DISGUISED = [
    ("\U0001d41cpc bids", "cpc bids", "“𝐜” (U+1D41C MATHEMATICAL BOLD SMALL C) shows as “c”"),
    ("\u24d2pc bids", "cpc bids", "“ⓒ” (U+24D2 CIRCLED LATIN SMALL LETTER C) shows as “c”"),
    ("\u1d04pc bids", "Cpc bids", "“ᴄ” (U+1D04 LATIN LETTER SMALL CAPITAL C) shows as “C”"),
]


@pytest.mark.parametrize(("name", "shown", "said"), DISGUISED)
def test_a_policy_named_with_a_letter_in_another_ones_dress_is_refused_naming_it(
    login, demo_world, name, shown, said
):
    """A policy owner added a policy named "𝐜pc bids", its "𝐜" a mathematical bold letter: it
    read as "cpc bids" to everyone, yet a search for "cpc" did not find it, and beside a
    policy named "cpc bids" no one could tell which routed what. Refused, saying what it
    shows as, which it is not (it said "would show as another name does", with none so
    named), and naming the letter; nothing saved."""
    client = login("policy-owner")
    url = reverse("admin:policies_policy_add")
    before = Policy.objects.count()

    page = client.post(
        url, form_data(client, url, name=name, action_type="bid_adjustment", priority="7")
    )

    assert page.status_code == 200  # the form again, saying why
    assert page.context["adminform"].form.errors["name"] == [
        f"This name would show as “{shown}”, which it is not: {said}. Write each as the "
        "letter or digit it shows as."
    ]
    assert Policy.objects.count() == before


# "Віԁ" is three Cyrillic letters (В, і, komi ԁ): each word is written in one script, so no
# word mixes scripts, yet the name reads as the demo's "Bid adjustments".
BID_IN_CYRILLIC = "\u0412\u0456\u0501 adjustments"


def test_a_policy_whose_name_reads_as_another_policys_is_refused_naming_it(login, demo_world):
    """A policy owner added a policy named "Віԁ adjustments" in Cyrillic letters, beside the
    vetted "Bid adjustments": every proposal it let run said "Routed by policy “Bid
    adjustments”" to its reader. Refused, naming the policy it reads as and the letters
    that make it so; nothing saved."""
    client = login("policy-owner")
    url = reverse("admin:policies_policy_add")
    vetted = Policy.objects.get(name="Bid adjustments")
    before = Policy.objects.count()

    page = client.post(
        url,
        form_data(client, url, name=BID_IN_CYRILLIC, action_type="bid_adjustment", priority="7"),
    )

    assert page.status_code == 200  # the form again, saying why
    assert page.context["adminform"].form.errors["name"] == [
        "This name would show as another name does: it reads as the policy “Bid adjustments” "
        f"(#{vetted.pk}): its “В” (U+0412 CYRILLIC CAPITAL LETTER VE) shows as “B”, “і” "
        "(U+0456 CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I) as “i”, “ԁ” (U+0501 "
        "CYRILLIC SMALL LETTER KOMI DE) as “d”. Name it so that it reads as itself."
    ]
    assert Policy.objects.count() == before


def test_a_policy_renamed_to_read_as_another_is_refused_and_one_keeping_its_name_is_saved(
    login, demo_world
):
    """Two policies whose names read alike, saved before the check: one keeps its name and
    has its ceiling changed, as before. Renamed to read as the vetted "Bid adjustments", it is
    refused; its name stays."""
    Policy.objects.create(name="\u0441\u043e\u0440", action_type="bid_adjustment")  # "сор"
    policy = Policy.objects.create(name="cop", action_type="bid_adjustment", priority=3)
    client = login("policy-owner")
    url = reverse("admin:policies_policy_change", args=[policy.pk])

    page = client.post(url, form_data(client, url, auto_execute_max_magnitude="5"))

    assert page.status_code == 302, page.context["adminform"].form.errors
    policy.refresh_from_db()
    assert policy.auto_execute_max_magnitude == Decimal("0.05")
    page = client.post(url, form_data(client, url, name=BID_IN_CYRILLIC))
    assert "it reads as the policy “Bid adjustments”" in page.text
    assert Policy.objects.get(pk=policy.pk).name == "cop"


def test_a_policy_named_with_an_accent_written_apart_is_kept_as_the_name_it_shows(
    login, demo_world
):
    """ "Café Ads" pasted with its "é" written as "e" and a combining acute accent (as macOS
    writes a file's name) shows as "Café Ads": it is taken, and kept as the "Café Ads" typed
    on any keyboard, so a search for that finds it and a policy of that name reads as it."""
    client = login("policy-owner")
    url = reverse("admin:policies_policy_add")

    page = client.post(
        url,
        form_data(client, url, name="Cafe\u0301 Ads", action_type="bid_adjustment", priority="7"),
    )

    assert page.status_code == 302, page.context["adminform"].form.errors
    assert Policy.objects.filter(name="Caf\u00e9 Ads").exists()


# Full- and half-width forms, as East Asian keyboards type them, and the plain text they show.
TYPED_AT_A_WIDTH = [
    ("\uff43pc bids", "cpc bids"),  # a full-width "ｃ"
    ("\uff12\uff10\uff12\uff16年キャンペーン", "2026年キャンペーン"),  # full-width digits
    ("\uff76\uff9d\uff8d\uff9f\uff70\uff9d", "カンペーン"),  # half-width katakana, "ﾍﾟ" as "ペ"
]


@pytest.mark.parametrize(("typed", "kept"), TYPED_AT_A_WIDTH)
def test_a_policy_named_in_full_or_half_width_letters_is_kept_as_the_plain_ones_it_shows(
    login, demo_world, typed, kept
):
    """A policy owner on a Japanese keyboard typed "２０２６年キャンペーン", its digits full-width
    as the keyboard types them beside kana: taken, and kept as "2026年キャンペーン", the name
    it shows, which a search for "2026" finds (it was refused, as a name in another's dress).
    "ｃpc bids" with a full-width "ｃ" is kept as "cpc bids", so it reads as what it is."""
    client = login("policy-owner")
    url = reverse("admin:policies_policy_add")

    page = client.post(
        url, form_data(client, url, name=typed, action_type="bid_adjustment", priority="7")
    )

    assert page.status_code == 302, page.context["adminform"].form.errors
    assert Policy.objects.filter(name=kept).exists()
    assert not Policy.objects.filter(name=typed).exists()


@pytest.mark.parametrize("kind", NAMED_IN_CONSOLE)
def test_a_route_account_campaign_or_role_whose_name_reads_as_anothers_is_refused(login, kind):
    """A role named "сор" in Cyrillic letters, beside the role "cop", read on a route's page
    as the role it tells. Refused, naming the one it reads as; nothing saved."""
    model = NAMED_IN_CONSOLE[kind][1]
    existing = model.objects.order_by("pk").first()
    existing.name = "cop"
    existing.save()
    before = model.objects.count()

    page, _ = named_in_console(login, kind, "\u0441\u043e\u0440")

    assert page.status_code == 200  # the form again, saying why
    said = page.context["adminform"].form.errors["name"]
    assert said[0].startswith(
        "This name would show as another name does: it reads as the "
        f"{model._meta.verbose_name} “cop” (#{existing.pk}): its “с” (U+0441 CYRILLIC SMALL "
        "LETTER ES) shows as “c”"
    )
    assert model.objects.count() == before


def test_a_person_whose_username_reads_as_anothers_is_refused(demo_world):
    """Records name a person by username: "расе", in Cyrillic letters, approved as "pace"
    to every reader of the history."""
    pace = get_user_model().objects.create_user("pace")
    client = administrator()
    url = reverse("admin:auth_user_add")
    before = get_user_model().objects.count()

    page = client.post(url, person_values(client, url, "\u0440\u0430\u0441\u0435"))

    assert page.status_code == 200  # the form again, saying why
    assert (
        f"it reads as the user “pace” (#{pace.pk})"
        in page.context["adminform"].form.errors["username"][0]
    )
    assert get_user_model().objects.count() == before


def test_a_person_renamed_to_differ_from_another_only_in_case_is_refused(demo_world):
    """Django refuses a new person named "Operator" beside "operator", but took a person
    renamed so: "Approved by Operator" read as the operator's approval."""
    client = administrator()
    person = get_user_model().objects.create_user("bob")
    operator = get_user_model().objects.get(username="operator")
    url = reverse("admin:auth_user_change", args=[person.pk])

    page = client.post(url, change_person_values(client, url, "Operator"))

    assert page.status_code == 200  # the form again, saying why
    assert page.context["adminform"].form.errors["username"] == [
        "This name would show as another name does: it reads as the user “operator” "
        f"(#{operator.pk}), differing from it only in case. Name it so that it reads as itself."
    ]
    assert get_user_model().objects.get(pk=person.pk).username == "bob"


def test_a_person_added_differing_from_another_only_in_case_is_told_so(demo_world):
    """Django's own check refuses "Operator" beside "operator"; the look-alike check after it
    read the username it had set aside (none) and the page failed with a server error."""
    client = administrator()
    url = reverse("admin:auth_user_add")

    page = client.post(url, person_values(client, url, "Operator"))

    assert page.status_code == 200  # the form again, saying why
    assert page.context["adminform"].form.errors["username"] == [
        "A user with that username already exists."
    ]


def change_person_values(client: Client, url: str, username: str) -> dict:
    return form_data(client, url, username=username)


def test_a_name_given_is_checked_against_the_others_in_one_query(login, demo_world):
    """However many policies there are, a name given is read against all of theirs in one
    query: a save takes as many queries beside ten more policies as without them."""
    client = login("policy-owner")
    url = reverse("admin:policies_policy_add")
    data = form_data(client, url, name=BID_IN_CYRILLIC, action_type="bid_adjustment")

    def queries_of_a_save() -> int:
        with CaptureQueriesContext(connection) as queries:
            page = client.post(url, data)
        assert "it reads as the policy “Bid adjustments”" in page.text
        return len(queries)

    alone = queries_of_a_save()
    for number in range(10):
        Policy.objects.create(name=f"Bids {number}", action_type="bid_adjustment")

    assert queries_of_a_save() == alone


# The demo's vetted policy's name, typed plainly and with a full-width "ｓ" kept as "s".
ITS_VERY_NAME = ["Bid adjustments", "Bid adjustment\uff53"]


@pytest.mark.parametrize("name", ITS_VERY_NAME)
def test_a_policy_given_another_live_policys_very_name_is_refused_naming_it(
    login, demo_world, name
):
    """A policy owner added a second live policy named "Bid adjustments", auto-executing every
    bid move at priority 7: both read "Routed by policy “Bid adjustments”" to every reader.
    Typed "Bid adjustmentｓ", a full-width "ｓ" kept as the plain letter it shows, it was the
    same name. Refused, naming the policy that has it; nothing saved."""
    vetted = Policy.objects.get(name="Bid adjustments")
    before = Policy.objects.count()

    page = every_bid_move_run_by_a_policy_named(login, name)

    assert page.status_code == 200  # the form again, saying why
    assert page.context["adminform"].form.errors["name"] == [
        f"The policy “Bid adjustments” (#{vetted.pk}) has this name already: name it so that "
        "people can tell the two apart."
    ]
    assert Policy.objects.count() == before


def test_a_draft_keeps_the_name_of_the_policy_it_replaces(login, demo_world):
    """A draft of "Bid adjustments" is named as the policy it replaces, "(draft)" beside it
    wherever it is named: taken."""
    client = login("policy-owner")
    url = reverse("admin:policies_policy_add")
    vetted = Policy.objects.get(name="Bid adjustments")

    page = client.post(
        url,
        form_data(
            client,
            url,
            name="Bid adjustments",
            action_type="bid_adjustment",
            is_draft="on",
            draft_of=vetted.pk,
        ),
    )

    assert page.status_code == 302, page.context["adminform"].form.errors
    assert Policy.objects.filter(name="Bid adjustments", is_draft=True).exists()


def test_a_route_given_another_routes_very_name_is_refused_naming_it(login, demo_world):
    """A second route named as the demo's told other people: "You are told by the route
    “Demo: …”" read the same from both. Refused, naming the route that has it."""
    demo = Route.objects.order_by("pk").first()
    before = Route.objects.count()

    page, _ = named_in_console(login, "route", demo.name)

    assert page.status_code == 200  # the form again, saying why
    assert page.context["adminform"].form.errors["name"] == [
        f"The route “{demo}” (#{demo.pk}) has this name already: name it so that people can "
        "tell the two apart."
    ]
    assert Route.objects.count() == before


def test_a_half_width_sound_mark_is_kept_plain_only_where_it_marks_the_kana_before_it(
    login, demo_world
):
    """A half-width "ﾞ" is a combining mark once plain: after "ｶ" it makes "ガ"; after the
    "s" of "Bid adjustments" it was kept as a mark drawn on that "s", a name reading as the
    vetted policy's. It stays the mark typed there, which shows."""
    client = login("policy-owner")
    url = reverse("admin:policies_policy_add")
    for priority, typed in enumerate(("\uff76\uff9e\uff7d", "Bid adjustments\uff9e"), start=7):
        page = client.post(
            url,
            form_data(
                client, url, name=typed, action_type="bid_adjustment", priority=str(priority)
            ),
        )
        assert page.status_code == 302, page.context["adminform"].form.errors

    assert Policy.objects.filter(name="ガス").exists()
    assert Policy.objects.filter(name="Bid adjustments\uff9e").exists()
    assert not Policy.objects.filter(name__contains="\u3099").exists()
