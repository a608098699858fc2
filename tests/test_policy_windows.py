"""A policy's windows as its owner types them in the console: in words as people say a
duration ("2 weeks", "1 day and 2 hours", "1.5 days"), never a bare number read as seconds,
and shown back in words that read as the same duration."""

import html
from datetime import timedelta

import pytest
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from hitlproject.forms import WindowField
from hitlproject.periods import describe_duration
from policies.models import Policy
from tests.test_policy_bounds import posted_form

ASK_FOR_WORDS = "Enter a duration such as “90 minutes”, “36 hours” or “7 days”."


def bid_policy() -> Policy:
    return Policy.objects.get(action_type="bid_adjustment")


def policy_page(policy: Policy) -> str:
    return reverse("admin:policies_policy_change", args=[policy.pk])


@pytest.mark.parametrize(
    "typed, saved",
    [
        ("2 weeks", timedelta(weeks=2)),
        ("1 week", timedelta(days=7)),
        ("1 day 2 hours", timedelta(hours=26)),
        ("1 day and 2 hours", timedelta(hours=26)),
        ("1 day, 2 hours", timedelta(hours=26)),
        ("1 week, 2 days and 3 hours", timedelta(days=9, hours=3)),
        ("1 hour 30 minutes", timedelta(minutes=90)),
        ("1.5 days", timedelta(hours=36)),
        ("2.25 hours", timedelta(minutes=135)),
        ("0.3333 hours", timedelta(minutes=20)),  # 1,199.88 seconds: to the nearest second
        ("1,000 minutes", timedelta(minutes=1000)),  # a comma between thousands, as shown
        ("3 Days", timedelta(days=3)),
    ],
)
def test_a_policy_owner_types_a_window_as_people_say_one(login, typed, saved):
    policy = bid_policy()
    client = login("policy-owner")
    url = policy_page(policy)
    data = posted_form(client, url) | {"review_window": typed, "change_reason": "In words."}
    assert client.post(url, data).status_code == 302
    policy.refresh_from_db()
    assert policy.review_window == saved
    # Shown back in words, which saved as they are keep the same window.
    shown = describe_duration(saved)
    assert f'name="review_window" value="{shown}"' in client.get(url).text
    assert (
        client.post(url, posted_form(client, url) | {"change_reason": "Again."}).status_code == 302
    )
    policy.refresh_from_db()
    assert policy.review_window == saved


@pytest.mark.parametrize(
    "typed",
    [
        "10",  # Django's parser reads ten seconds; nobody typing it means that
        "10.5",
        "1 10",  # Django's: a day and ten seconds
        "1,5 days",  # not 15 days: a comma separates thousands
        "1,00 days",
        "1 day,",
        "1 day and",
        "1e3 days",
        "-2 days",
        "2 fortnights",
    ],
)
def test_a_window_without_its_unit_is_refused_with_what_to_type(login, typed):
    policy = bid_policy()
    client = login("policy-owner")
    url = policy_page(policy)
    data = posted_form(client, url) | {"review_window": typed, "change_reason": "Typo."}
    refused = client.post(url, data)
    assert refused.status_code == 200  # the form again, nothing saved
    assert refused.context["adminform"].form.errors["review_window"] == [ASK_FOR_WORDS]
    assert f'name="review_window" value="{typed}"' in html.unescape(refused.text)
    policy.refresh_from_db()
    assert policy.review_window == timedelta(hours=72)


@pytest.mark.parametrize("typed", ["99999999999999 days", "9" * 5000 + " weeks"])
def test_a_window_past_what_a_date_can_hold_is_a_form_error_not_a_500(login, typed):
    policy = bid_policy()
    client = login("policy-owner")
    url = policy_page(policy)
    data = posted_form(client, url) | {"review_window": typed, "change_reason": "Huge."}
    refused = client.post(url, data)
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["review_window"] == [
        "The number of days must be between -999999999 and 999999999."
    ]
    policy.refresh_from_db()
    assert policy.review_window == timedelta(hours=72)


@given(st.timedeltas())
def test_what_the_field_shows_reads_back_as_the_same_window(window):
    field = WindowField()
    assert field.clean(field.prepare_value(window)) == window
