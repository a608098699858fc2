"""A policy's windows as its owner types them in the console: in words as people say a
duration ("2 weeks", "1 day and 2 hours", "1.5 days"), never a bare number read as seconds,
and shown back in words that read as the same duration; and a deadline to decide that comes
before the proposal expires."""

import html
from datetime import timedelta

import pytest
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from approvals.models import ProposalStatus
from hitlproject.forms import WindowField
from hitlproject.periods import describe_duration
from notifications.deadlines import deadlines_sweep
from notifications.models import DecisionDeadline
from policies.models import Policy
from tests.conftest import posted_from_page, reallocation
from tests.factories import evaluated
from tests.test_policy_bounds import posted_form

ASK_FOR_WORDS = "Enter a duration such as “90 minutes”, “36 hours” or “7 days”."


def bid_policy() -> Policy:
    return Policy.objects.get(action_type="bid_adjustment")


def policy_page(policy: Policy) -> str:
    return reverse("admin:policies_policy_change", args=[policy.pk])


@pytest.mark.parametrize(
    "typed, shown",
    [
        ("35 hours 59 minutes 59 seconds", "1 day 11 hours 59 minutes 59 seconds"),
        ("364.99 days", "364 days 23 hours 45 minutes 36 seconds"),
        ("2000 minutes", "1 day 9 hours 20 minutes"),
        ("1,000 minutes", "1,000 minutes"),
        ("1.5 days", "36 hours"),
    ],
)
def test_a_window_is_shown_back_in_words_a_person_reads_not_in_seconds(login, typed, shown):
    """Up to a thousand of its largest whole unit, in that unit; past it, in parts (it read
    "129,599 seconds")."""
    policy = bid_policy()
    client = login("policy-owner")
    url = policy_page(policy)
    data = posted_form(client, url) | {"review_window": typed, "change_reason": "In words."}
    assert client.post(url, data).status_code == 302
    assert f'name="review_window" value="{shown}"' in client.get(url).text


def test_the_policy_list_says_each_cumulative_ceiling_with_its_window(login):
    """A cumulative ceiling means nothing without the time it counts over: the list says
    "25% per 36 hours", in the words the form shows the window in, not a bare "25%"."""
    policy = bid_policy()
    client = login("policy-owner")
    url = policy_page(policy)
    data = posted_form(client, url) | {"cumulative_window": "1.5 days", "change_reason": "Longer."}
    assert client.post(url, data).status_code == 302

    listed = client.get(reverse("admin:policies_policy_changelist")).text

    row = listed.split(f'<a href="{url}">{policy.name}</a>')[-1].split("</tr>")[0]  # its row
    assert 'class="field-cumulative_ceiling_over_window">25% per 36 hours</td>' in row
    assert '">25% per 1 day</td>' in listed  # the others, as seeded


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


@pytest.mark.parametrize(
    "typed", ["99999999999999 days", "9" * 5000 + " weeks", "99999999999 00:00:00"]
)
def test_a_window_past_what_a_date_can_hold_is_a_form_error_not_a_500(login, typed):
    policy = bid_policy()
    client = login("policy-owner")
    url = policy_page(policy)
    data = posted_form(client, url) | {"review_window": typed, "change_reason": "Huge."}
    refused = client.post(url, data)
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["review_window"] == [
        "Far too long: enter a duration such as “90 minutes”, “36 hours” or “7 days”."
    ]
    policy.refresh_from_db()
    assert policy.review_window == timedelta(hours=72)


@given(st.timedeltas())
def test_what_the_field_shows_reads_back_as_the_same_window(window):
    field = WindowField()
    assert field.clean(field.prepare_value(window)) == window


# A deadline to decide comes before the proposal expires, or it is no deadline.


def late_decision(review: str, decide: str) -> str:
    return (
        f"A proposal expires after the review window, {review}: a decision due within {decide} "
        "would never be late. Make it shorter than the review window, or leave it empty."
    )


@pytest.mark.parametrize("decide_within", ["4 days", "36 hours", "2160 minutes"])
def test_a_decision_due_no_sooner_than_expiry_is_refused_beside_decide_within(login, decide_within):
    policy = bid_policy()
    client = login("policy-owner")
    url = policy_page(policy)
    data = posted_form(client, url) | {
        "review_window": "36 hours",
        "decide_within": decide_within,
        "change_reason": "Remind later.",
    }
    refused = client.post(url, data)
    assert refused.status_code == 200
    form = refused.context["adminform"].form
    said = describe_duration(WindowField().clean(decide_within))
    assert form.errors == {"decide_within": [late_decision("36 hours", said)]}
    assert late_decision("36 hours", said) in html.unescape(refused.text)
    policy.refresh_from_db()
    assert (policy.review_window, policy.decide_within) == (timedelta(hours=72), None)

    assert client.post(url, data | {"decide_within": "35 hours"}).status_code == 302
    policy.refresh_from_db()
    assert (policy.review_window, policy.decide_within) == (
        timedelta(hours=36),
        timedelta(hours=35),
    )
    # From the page as it is now: the one opened before the save above is refused as stale.
    no_deadline = posted_from_page(client, url, data | {"decide_within": ""})
    assert no_deadline.status_code == 302
    policy.refresh_from_db()
    assert policy.decide_within is None


def test_a_draft_whose_decision_comes_after_expiry_is_refused_and_not_promoted(login):
    policy = bid_policy()
    client = login("policy-owner")
    add = reverse("admin:policies_policy_add") + f"?duplicate={policy.pk}"
    data = posted_form(client, add) | {
        "decide_within": "3 days",  # the review window, as duplicated: 3 days
        "change_reason": "A deadline.",
    }
    refused = client.post(add, data)
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors == {
        "decide_within": [late_decision("3 days", "3 days")]
    }
    assert not Policy.objects.filter(is_draft=True).exists()

    # One stored so before this check (or by a script) does not go live either.
    draft = Policy.objects.create(
        name="Bid adjustments, reminded late",
        action_type="bid_adjustment",
        is_draft=True,
        draft_of=policy,
        review_window=timedelta(hours=36),
        decide_within=timedelta(days=4),
    )
    promote = reverse("admin:policies_policy_promote", args=[draft.pk])
    page = client.post(promote, {"change_reason": "Go live."})
    assert page.status_code == 200
    assert f"The draft cannot go live: {late_decision('36 hours', '4 days')}" in html.unescape(
        page.text
    )
    policy.refresh_from_db()
    assert (policy.review_window, policy.decide_within) == (timedelta(hours=72), None)
    draft.refresh_from_db()
    assert draft.is_draft and draft.is_active


def test_a_policy_stored_with_its_deadline_after_expiry_still_routes_and_reminds(login):
    policy = Policy.objects.get(action_type="budget_reallocation")
    Policy.objects.filter(pk=policy.pk).update(
        review_window=timedelta(hours=36), decide_within=timedelta(days=4)
    )
    proposal = evaluated(reallocation())  # 28%: waits for a person
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    deadline = DecisionDeadline.objects.get(proposal=proposal)
    assert deadline.due_at - deadline.started_at == timedelta(days=4)  # as the policy says
    assert proposal.review_expires_at - deadline.started_at <= timedelta(hours=36)
    swept = deadlines_sweep(now=deadline.started_at + timedelta(days=2, seconds=1))
    assert swept.reminded == 1

    # Its page shows it, and asks for the deadline to be fixed before anything else changes.
    client = login("policy-owner")
    url = policy_page(policy)
    page = client.get(url)
    assert page.status_code == 200
    assert 'name="decide_within" value="4 days"' in page.text
    refused = client.post(url, posted_form(client, url) | {"change_reason": "Rename."})
    assert refused.context["adminform"].form.errors == {
        "decide_within": [late_decision("36 hours", "4 days")]
    }
