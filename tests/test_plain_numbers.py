"""Numbers typed in the console's policy forms are taken as written in the digits 0–9 (with a
sign and one decimal point at most), or refused saying so: Python's Decimal() and int() read
Arabic-Indic digits ("٩٥"), full-width ones ("９５"), underscores ("9_5") and exponents
("1e2") as numbers, and a policy saved so says 95 where the person typed something else. The
boxes are text boxes: a browser's number box rewrote or dropped what was typed before the form
saw it (Chromium took "9_5" as 95, and sent nothing for "٩٥", an empty ceiling)."""

import html
from decimal import Decimal

import pytest
from django.urls import reverse

from approvals.action_types.forms import edit_form_for
from feedback.models import AutonomyRules
from ledger.models import Account
from policies.models import Policy
from tests.test_autonomy import recommendation, record, rules  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

ODD_NUMBERS = ["٩٥", "９５", "9_5", "1e2", "9.5.5", "0x5f", "95%"]
NOT_A_NUMBER = "Enter a number in the digits 0–9, with a point for decimals (such as 12.5)."
NOT_A_WHOLE_NUMBER = "Enter a whole number in the digits 0–9 (such as 2)."
NOT_A_PERCENTAGE = "Enter a percentage in the digits 0–9, with a point for decimals (95 or 95.5)."


def form_as_shown(client, url) -> dict:
    """The change form's fields as the page fills them in, to be sent back."""
    form = client.get(url).context["adminform"].form
    return {
        name: "" if value is None else value
        for name, value in ((name, form[name].value()) for name in form.fields)
        if value is not False
    }


def errors_of(response) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form again, with the error: not saved"
    return response.context["adminform"].form.errors


@pytest.mark.parametrize("typed", ODD_NUMBERS)
@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("auto_execute_max_magnitude", NOT_A_NUMBER),  # percent: 15 for 15%
        ("cumulative_max_magnitude", NOT_A_NUMBER),
        ("auto_execute_max_amount", NOT_A_NUMBER),  # money
        ("priority", NOT_A_WHOLE_NUMBER),
        ("required_approvals", NOT_A_WHOLE_NUMBER),
    ],
)
def test_a_policy_number_not_in_plain_digits_is_refused_and_changes_nothing(
    login, typed, field, message
):
    policy = Policy.objects.get(action_type="bid_adjustment")
    before = Policy.objects.filter(pk=policy.pk).values().get()
    client = login("policy-owner")
    url = reverse("admin:policies_policy_change", args=[policy.pk])
    data = form_as_shown(client, url) | {"change_reason": "Try it."}

    refused = client.post(url, data | {field: typed})

    assert errors_of(refused) == {field: [message]}
    # Shown back as typed, beside the message, in a box that keeps what is typed.
    box = refused.context["adminform"].form[field]
    assert box.value() == typed and box.field.widget.input_type == "text"
    assert message in html.unescape(refused.text)
    assert Policy.objects.filter(pk=policy.pk).values().get() == before
    assert not policy.history.filter(history_change_reason="Try it.").exists()


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("9.5", Decimal("0.095")), ("+9.5", Decimal("0.095")), (" 12 ", Decimal("0.12"))],
)
def test_a_policy_ceiling_in_plain_digits_is_saved(login, typed, stored):
    policy = Policy.objects.get(action_type="bid_adjustment")
    client = login("policy-owner")
    url = reverse("admin:policies_policy_change", args=[policy.pk])
    data = form_as_shown(client, url) | {"change_reason": "A little tighter."}

    assert client.post(url, data | {"auto_execute_max_magnitude": typed}).status_code == 302

    policy.refresh_from_db()
    assert policy.auto_execute_max_magnitude == stored


@pytest.mark.parametrize("typed", ODD_NUMBERS)
def test_the_dry_run_refuses_a_ceiling_to_try_not_in_plain_digits(login, typed):
    policy = Policy.objects.get(action_type="bid_adjustment")
    url = reverse("admin:policies_policy_dry_run", args=[policy.pk])
    client = login("policy-owner")
    page = client.get(url)
    assert page.status_code == 200

    answer = client.post(url, {"try_auto_execute_ceiling": typed})

    assert answer.status_code == 200
    assert answer.context["form"].errors["try_auto_execute_ceiling"] == [NOT_A_NUMBER]
    assert NOT_A_NUMBER in html.unescape(answer.text)


@pytest.mark.parametrize("typed", ODD_NUMBERS)
@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("widen_min_clean_share", NOT_A_PERCENTAGE),
        ("widen_factor", NOT_A_NUMBER),
        ("widen_min_decisions", NOT_A_WHOLE_NUMBER),
    ],
)
def test_an_autonomy_rule_not_in_plain_digits_is_refused_and_changes_nothing(
    login, demo_world, typed, field, message
):
    current = AutonomyRules.current()
    before = AutonomyRules.objects.filter(pk=current.pk).values().get()
    client = login("policy-owner")
    url = reverse("admin:feedback_autonomyrules_change", args=[current.pk])
    data = form_as_shown(client, url) | {"is_active": "on", "change_reason": "Try it."}

    refused = client.post(url, data | {field: typed})

    assert errors_of(refused) == {field: [message]}
    assert refused.context["adminform"].form[field].field.widget.input_type == "text"
    assert AutonomyRules.objects.filter(pk=current.pk).values().get() == before


@pytest.mark.parametrize("typed", ODD_NUMBERS)
def test_an_accounts_budget_cap_not_in_plain_digits_is_refused(login, demo_world, typed):
    account = Account.objects.get(external_id="demo")
    cap = account.max_total_daily_budget
    client = login("policy-owner")
    url = reverse("admin:ledger_account_change", args=[account.pk])
    data = form_as_shown(client, url) | {"change_reason": "Cap it."}

    refused = client.post(url, data | {"max_total_daily_budget": typed})

    assert errors_of(refused) == {"max_total_daily_budget": [NOT_A_NUMBER]}
    account.refresh_from_db()
    assert account.max_total_daily_budget == cap


@pytest.mark.parametrize("typed", ODD_NUMBERS)
def test_editing_a_recommended_ceiling_refuses_one_not_in_plain_digits(recommendation, typed):  # noqa: F811
    form = edit_form_for(recommendation, {"edit-to_ceiling": typed, "edit-note": ""})

    assert not form.is_valid()
    assert form.errors["to_ceiling"] == [NOT_A_NUMBER]
