"""A record's history reads each value whole: what a group was given, what a policy owner
wrote as a policy's description. django-simple-history cuts a value past 100 characters in the
middle ("Approvals | agent API key[1099 chars]rsion"), and an auditor could not read from the
history what the record held; the message a save ends with said it the same way."""

import html
import re

from django.contrib.auth.models import Group
from django.urls import reverse

from approvals.roles import OPERATORS
from policies.models import Policy
from tests.test_policy_tuning import form_data

DESCRIPTION = (
    "Bids move often and in small steps; anything above fifteen percent is a change of "
    "position that the search team wants to see before it happens, as agreed in the Q1 plan."
)


def text_of(page) -> str:
    assert page.status_code == 200
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.content.decode())))


def test_a_group_s_history_lists_every_permission_it_was_given(login):
    operators = Group.objects.get(name=OPERATORS)
    page = text_of(login("auditor").get(reverse("admin:auth_group_history", args=[operators.pk])))

    assert " chars]" not in page
    for permission in operators.permissions.all():
        assert str(permission) in page


def test_a_policy_s_long_description_reads_whole_in_its_history_and_its_save_message(login):
    policy = Policy.objects.get(name="Bid adjustments")
    owner = login("policy-owner")

    url = reverse("admin:policies_policy_change", args=[policy.pk])
    typed = form_data(owner, url, description=DESCRIPTION, change_reason="Say why it is 15%.")
    saved = owner.post(url, typed, follow=True)
    said = " ".join(str(message) for message in saved.context["messages"])
    history = text_of(
        login("auditor").get(reverse("admin:policies_policy_history", args=[policy.pk]))
    )

    assert f"Description: — → {DESCRIPTION}" in said
    assert f"Description: — → {DESCRIPTION}" in history
    assert " chars]" not in said + history
    assert said.endswith("as agreed in the Q1 plan.")  # its own full stop, not "plan.."
