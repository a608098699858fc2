"""Who owns an agent does not set its policy: a policy owner who owns an agent may not add,
change or delete a policy that could govern that agent (one naming it, its kind, or every
agent; deciding the platform's recommendation to widen it is refused them as well); another
policy owner may, and so may an administrator."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from approvals.models import Agent
from policies.models import Policy

REFUSED = "You own agent copywriter; someone else must set its policy."


@pytest.fixture
def owner(login) -> Client:
    """The demo policy owner, who owns the copywriter agent."""
    Agent.objects.filter(name="copywriter").update(
        owner=get_user_model().objects.get(username="policy-owner")
    )
    return login("policy-owner")


@pytest.fixture
def other_owner(owner) -> Client:
    """A second policy owner, who owns no agent."""
    users = get_user_model().objects
    second = users.create_user("second-policy-owner", is_staff=True)
    second.groups.set(users.get(username="policy-owner").groups.all())
    client = Client()
    client.force_login(second)
    return client


def form_data(client: Client, url: str, **values) -> dict:
    """What the page's form would post, with ``values`` typed in."""
    form = client.get(url).context["adminform"].form
    data = {
        name: "" if value is None else value
        for name, value in ((name, form[name].value()) for name in form.fields)
        if value is not False
    }
    data |= {"change_reason": "Copywriter's record earns it.", **values}
    return {name: value for name, value in data.items() if value is not False}  # unchecked


def may_delete_policies(username: str) -> None:
    """Policy owners do not delete policies; someone given the permission may."""
    user = get_user_model().objects.get(username=username)
    user.user_permissions.add(Permission.objects.get(codename="delete_policy"))


def copywriter() -> Agent:
    return Agent.objects.get(name="copywriter")


def wide_open(**values) -> dict:
    """A policy that runs every creative of copywriter without a human."""
    return {
        "name": "Copywriter runs free",
        "action_type": "creative_deployment",
        "is_active": "on",
        "agent": copywriter().pk,
        "auto_execute_max_magnitude": "1",  # a count of creatives
        "always_review": False,
        "change_reason": "Copywriter's record earns it.",
        **values,
    }


def copywriter_policy() -> Policy:
    return Policy.objects.create(
        name="Copywriter creatives",
        action_type="creative_deployment",
        agent=copywriter(),
        always_review=True,
    )


def test_the_owner_of_an_agent_cannot_add_a_policy_scoped_to_it(owner):
    url = reverse("admin:policies_policy_add")

    page = owner.post(url, form_data(owner, url, **wide_open()))

    assert page.status_code == 200  # the form again, saying why
    assert REFUSED in page.text
    assert not Policy.objects.filter(agent__name="copywriter").exists()


def test_another_policy_owner_can_add_it(other_owner):
    url = reverse("admin:policies_policy_add")

    page = other_owner.post(url, form_data(other_owner, url, **wide_open()))

    assert page.status_code == 302, page.text
    policy = Policy.objects.get(agent__name="copywriter")
    assert policy.auto_execute_max_magnitude == 1


def test_the_owner_of_an_agent_cannot_change_or_delete_its_policy(owner):
    may_delete_policies("policy-owner")
    policy = copywriter_policy()
    change = reverse("admin:policies_policy_change", args=[policy.pk])

    page = owner.get(change)
    posted = owner.post(change, wide_open(always_review="on"))
    delete = owner.post(reverse("admin:policies_policy_delete", args=[policy.pk]), {"post": "yes"})

    assert page.status_code == 200
    assert page.context["has_change_permission"] is False  # shown read-only
    assert posted.status_code == 403
    assert delete.status_code == 403
    policy.refresh_from_db()
    assert policy.always_review is True
    assert policy.auto_execute_max_magnitude is None


def test_the_owner_of_an_agent_cannot_move_a_policy_onto_it(owner):
    policy = Policy.objects.create(
        name="Optimizer's creatives",
        action_type="creative_deployment",
        agent=Agent.objects.get(name="optimizer"),
        always_review=True,
    )
    change = reverse("admin:policies_policy_change", args=[policy.pk])

    page = owner.post(change, form_data(owner, change, agent=copywriter().pk))

    assert page.status_code == 200
    assert REFUSED in page.text
    policy.refresh_from_db()
    assert policy.agent.name == "optimizer"


def test_the_owner_of_an_agent_cannot_bulk_delete_its_policy(owner):
    may_delete_policies("policy-owner")
    policy = copywriter_policy()

    owner.post(
        reverse("admin:policies_policy_changelist"),
        {"action": "delete_selected", "_selected_action": [policy.pk], "post": "yes"},
    )

    assert Policy.objects.filter(pk=policy.pk).exists()


def test_another_policy_owner_can_change_and_delete_it(other_owner):
    may_delete_policies("second-policy-owner")
    policy = copywriter_policy()
    change = reverse("admin:policies_policy_change", args=[policy.pk])

    posted = other_owner.post(change, form_data(other_owner, change, always_review=False))
    policy.refresh_from_db()
    assert posted.status_code == 302, posted.text
    assert policy.always_review is False

    other_owner.post(
        reverse("admin:policies_policy_delete", args=[policy.pk]),
        {"post": "yes", "change_reason": "Copywriter is retired."},
    )
    assert not Policy.objects.filter(pk=policy.pk).exists()
    assert Policy.history.filter(id=policy.pk).latest().history_change_reason == (
        "Copywriter is retired."
    )


def test_an_administrator_who_owns_the_agent_may_set_its_policy(owner):
    admin_user = get_user_model().objects.create_superuser("root", password="unused-1")
    Agent.objects.filter(name="copywriter").update(owner=admin_user)
    client = Client()
    client.force_login(admin_user)
    url = reverse("admin:policies_policy_add")

    page = client.post(url, form_data(client, url, **wide_open()))

    assert page.status_code == 302, page.text
    assert Policy.objects.filter(agent__name="copywriter").exists()


def test_the_owner_of_an_agent_still_sets_the_policies_of_other_agents(owner):
    url = reverse("admin:policies_policy_add")
    optimizer = Agent.objects.get(name="optimizer")

    page = owner.post(url, form_data(owner, url, **wide_open(agent=optimizer.pk)))

    assert page.status_code == 302, page.text
    assert Policy.objects.filter(agent=optimizer).exists()


def test_the_owner_of_an_agent_cannot_govern_it_by_its_kind_or_the_policy_for_everyone(owner):
    """A policy for every agent of copywriter's kind outranks the one it has, and would set
    how far copywriter runs unreviewed as surely as one naming it: its owner may not add it.
    Nor may they loosen the policy every agent's creatives fall under, which governs
    copywriter too; a policy for another kind of agent they may still set."""
    url = reverse("admin:policies_policy_add")

    by_kind = owner.post(
        url, form_data(owner, url, **wide_open(agent="", agent_kind=copywriter().kind))
    )
    everyone = Policy.objects.get(action_type="creative_deployment", agent=None, agent_kind="")
    change = reverse("admin:policies_policy_change", args=[everyone.pk])
    loosened = owner.post(change, form_data(owner, change, always_review=False))
    other_kind = owner.post(
        url, form_data(owner, url, **wide_open(agent="", agent_kind="optimization"))
    )

    assert by_kind.status_code == 200 and REFUSED in by_kind.text
    assert not Policy.objects.filter(agent_kind=copywriter().kind).exists()
    assert loosened.status_code == 403  # shown read-only
    assert Policy.objects.get(pk=everyone.pk).always_review == everyone.always_review
    assert copywriter().kind != "optimization"
    assert other_kind.status_code == 302, other_kind.text
