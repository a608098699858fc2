"""No secret can be read or guessed through the console: an execution secret, a callback
secret, an API key's digest or a password hash is filtered, searched or sorted by on no page,
directly or through a relation, by anyone; a list answers only the filters its page offers,
and every link the console makes still works."""

import html
import re

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import QueryDict
from django.test import Client
from django.urls import reverse

from approvals.models import Agent, AgentAPIKey
from approvals.services.decisions import proposal_approve
from audit.admin import AuditedHistoryAdmin, console_secret_problems
from audit.secret_fields import secret_fields
from ledger.models import Account, Campaign
from tests.conftest import reallocation
from tests.factories import evaluated

ROLES = ["auditor", "operator"]


def secret_paths(model, hops: int = 2, prefix: str = ""):
    """Every lookup path from ``model`` to a secret field, through up to ``hops`` relations
    (``agent__callback_secret``, ``agent__owner__password``)."""
    for field in model._meta.get_fields():
        if field.name in secret_fields(model):
            yield prefix + field.name
        elif field.is_relation and field.related_model and hops:
            yield from secret_paths(field.related_model, hops - 1, f"{prefix}{field.name}__")


def registered():
    return sorted(admin.site._registry, key=lambda model: model._meta.label)


def changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def can_view(client: Client, model) -> bool:
    user = get_user_model().objects.get(pk=client.session["_auth_user_id"])
    return user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")


@pytest.fixture
def superuser(demo_world) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="unused-1"))
    return client


@pytest.fixture
def probers(login, superuser) -> dict[str, Client]:
    return {"auditor": login("auditor"), "operator": login("operator"), "superuser": superuser}


def refused(response) -> bool:
    return response.status_code == 400 and 'id="result_list"' not in response.text


def test_the_execution_secret_cannot_be_guessed_a_character_at_a_time(login):
    secret = Account.objects.get(external_id="demo").execution_secret
    url = changelist(Account)
    for role in ROLES:
        client = login(role)
        right = client.get(url, {"execution_secret__startswith": secret[:7]})
        wrong = client.get(url, {"execution_secret__startswith": "whsec_?"})
        assert refused(right) and refused(wrong)
        # The same page either way (but for the logout form's CSRF token, masked afresh on
        # every page): nothing in the answer tells a right guess from a wrong one.
        assert without_csrf_token(right.text) == without_csrf_token(wrong.text)


def without_csrf_token(page: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", page)


@pytest.mark.parametrize("model", registered(), ids=lambda model: model._meta.label)
def test_no_lookup_reaches_a_secret_on_any_list(model, probers):
    paths = sorted(set(secret_paths(model)))
    for name, client in probers.items():
        if name != "superuser" and not can_view(client, model):
            continue
        for path in paths:
            for lookup, value in [
                (f"{path}__startswith", "whsec_"),
                (f"{path}__regex", "^(md5|pbkdf2|whsec_)"),
                (path, "whsec_x"),
            ]:
                response = client.get(changelist(model), {lookup: value})
                assert refused(response), (name, lookup, response.status_code)


def test_nothing_else_typed_into_the_address_bar_runs_either(login):
    client = login("auditor")
    for query in [
        {"rationale__regex": "(a+)+$"},  # an expensive pattern
        {"summary__icontains": "move"},
        {"payload__amount": "280.00"},
        {"no_such_field": "1"},
        {"status": "all", "risk__gte": "0"},  # beside a filter the page offers
    ]:
        response = client.get(reverse("admin:approvals_proposal_changelist"), query)
        assert refused(response), query


def test_no_secret_is_a_field_to_link_to_or_to_complete(login):
    account = Account.objects.get(external_id="demo")
    agent = Agent.objects.get(name="optimizer")
    client = login("auditor")
    for model, obj, field in [
        (Account, account, "execution_secret"),
        (Agent, agent, "callback_secret"),
        (AgentAPIKey, agent.api_keys.first(), "digest"),
    ]:
        meta = model._meta
        change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
        assert client.get(changelist(model), {"_to_field": field}).status_code == 400
        assert client.get(change, {"_to_field": field}).status_code == 400
    # The accounts a campaign may name, completed from what is typed: by name, not by secret.
    found = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "ledger", "model_name": "campaign", "field_name": "account",
         "term": account.execution_secret[:12]},
    )  # fmt: skip
    assert found.status_code == 200
    assert found.json()["results"] == []


def test_history_pages_show_no_secret(login):
    account = Account.objects.get(external_id="demo")
    agent = Agent.objects.get(name="optimizer")
    key = agent.api_keys.first()
    client = login("auditor")
    for obj, secret in [
        (account, account.execution_secret),
        (agent, agent.callback_secret),
        (key, key.digest),
    ]:
        meta = obj._meta
        history = client.get(
            reverse(f"admin:{meta.app_label}_{meta.model_name}_history", args=[obj.pk])
        )
        version = obj.history.earliest("history_date")
        page = client.get(
            reverse(
                f"admin:{meta.app_label}_{meta.model_name}_simple_history",
                args=[obj.pk, version.history_id],
            )
        )
        assert history.status_code == page.status_code == 200
        assert secret not in history.text
        assert secret not in page.text


def test_every_admin_has_the_guards_and_filters_searches_and_sorts_by_no_secret():
    assert console_secret_problems(admin.site) == []


def test_the_check_names_an_admin_that_would_search_a_secret_or_lacks_the_guards():
    site = admin.AdminSite(name="check")

    class SearchesSecrets(AuditedHistoryAdmin):
        search_fields = ["name", "account__execution_secret"]

    class Unguarded(admin.ModelAdmin):
        pass

    site.register(Campaign, SearchesSecrets)
    site.register(Agent, Unguarded)
    problems = {(problem.id, problem.msg) for problem in console_secret_problems(site)}
    assert problems == {
        (
            "audit.E002",
            "ledger.Campaign's admin reaches a secret through its search_fields: "
            "account__execution_secret.",
        ),
        ("audit.E001", "approvals.Agent's admin does not have the console's guards."),
    }


# --- every link the console makes still works --------------------------------------------------

LINK = re.compile(r'href="(/admin/[^"]*\?[^"]*|\?[^"]*)"')
# Sorting, paging and searching are not lookups; a link that only does these is left out.
NOT_LOOKUPS = {"o", "p", "q", "all", "_popup", "_to_field", "_facets"}


def filter_links(client: Client, url: str) -> list[str]:
    """The links on a page that filter a list."""
    page = client.get(url)
    if page.status_code == 302:  # a list that is one record (the autonomy rules)
        return []
    assert page.status_code == 200, url
    links = []
    for link in map(html.unescape, LINK.findall(page.text)):
        link = url.split("?")[0] + link if link.startswith("?") else link
        if set(QueryDict(link.split("?", 1)[1])) - NOT_LOOKUPS:
            links.append(link)
    return links


@pytest.mark.parametrize("role", ["auditor", "operator", "policy-owner", "superuser"])
def test_every_filter_and_link_the_console_offers_answers(role, login, superuser):
    proposal = evaluated(reallocation())
    client = superuser if role == "superuser" else login(role)
    visible = [model for model in registered() if role == "superuser" or can_view(client, model)]
    pages = [
        reverse("admin:index"),
        *map(changelist, visible),
        reverse("admin:approvals_proposal_change", args=[proposal.pk]),
        reverse("admin:approvals_agent_change", args=[proposal.agent.pk]),
    ]
    offered = [link for page in pages for link in filter_links(client, page)]
    assert any(link.endswith("/proposal/?status=failed") for link in offered)  # the dashboard's
    assert any("?agent__id__exact=" in link for link in offered)  # the queue's agent filter
    # One of each kind (the same list, the same parameters): the values differ, not the lookups.
    kinds = {}
    for link in offered:
        path, query = link.split("?", 1)
        kinds.setdefault((path, frozenset(QueryDict(query))), link)
    for link in sorted(kinds.values()):
        response = client.get(link)
        assert response.status_code == 200, (link, response.status_code)


PAGE_LINK = re.compile(r'href="(/admin/[^"?#]*)"')


@pytest.mark.parametrize("role", ["auditor", "operator", "policy-owner"])
def test_every_page_link_opens_for_whom_it_is_shown(role, login, superuser):
    """From every list and from records' pages (a decision, a notification, a proposal), a
    link a role is shown opens for it: a reference to a person it may not open (the reviewer,
    the recipient) reads as their name, not as a link to "403 Forbidden"."""
    operator = get_user_model().objects.get(username="operator")
    approved = proposal_approve(
        proposal_id=evaluated(reallocation()).pk, reviewer=operator, note="Fine."
    )
    evaluated(reallocation("300.00"))  # waits, and the operators are told of it
    client = login(role)
    visible = [model for model in registered() if can_view(client, model)]
    pages = [reverse("admin:index"), *map(changelist, visible)]
    for model in visible:
        meta = model._meta
        for pk in model._default_manager.order_by("-pk").values_list("pk", flat=True)[:1]:
            pages.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[pk]))
    followed, refused = set(), []
    for page in pages:
        response = client.get(page)
        if response.status_code == 302:  # a list that is one record (the autonomy rules)
            continue
        assert response.status_code == 200, page
        for link in set(map(html.unescape, PAGE_LINK.findall(response.text))) - followed:
            followed.add(link)
            if client.get(link).status_code not in (200, 302):
                refused.append((page, link))
    assert refused == []
    # Who may open the reviewer's page still has the link.
    decision = approved.decisions.get()
    page = superuser.get(reverse("admin:approvals_decision_change", args=[decision.pk])).text
    assert f'href="{reverse("admin:auth_user_change", args=[operator.pk])}"' in page


def test_raw_id_popups_open_their_lists(login):
    client = login("operator")
    for model, model_admin in admin.site._registry.items():
        for name in model_admin.raw_id_fields:
            target = model._meta.get_field(name).related_model
            response = client.get(changelist(target), {"_to_field": "id", "_popup": "1"})
            assert response.status_code == 200, (model, name)


def test_the_queue_filters_answer_what_they_say(login):
    client = login("operator")
    url = reverse("admin:approvals_proposal_changelist")
    proposal = evaluated(reallocation())
    agent = proposal.agent
    for query in [
        {},
        {"status": "all"},
        {"status": "failed"},
        {"risk": "high"},
        {"action_type": "budget_reallocation"},
        {"agent__id__exact": agent.pk},
        {"account__id__exact": proposal.account_id},
        {"channel": proposal.account.channel},
        {"q": "brand-search"},
        {"o": "-9"},
    ]:
        response = client.get(url, query)
        assert response.status_code == 200, query
    listed = client.get(url, {"agent__id__exact": agent.pk}).context["cl"].result_list
    assert proposal in listed


# --- the secrets anyone could have read until now are replaced -------------------------------


def test_the_migration_gives_every_account_and_agent_a_new_secret_without_history(demo_world):
    accounts = dict(Account.objects.values_list("pk", "execution_secret"))
    agents = dict(Agent.objects.values_list("pk", "callback_secret"))
    account_history = Account.history.count()
    agent_history = Agent.history.count()

    loader = MigrationExecutor(connection).loader
    for rotation in [
        ("ledger", "0005_rotate_execution_secrets"),
        ("approvals", "0012_rotate_callback_secrets"),
    ]:
        models_then = loader.project_state(rotation, at_end=False).apps
        loader.get_migration(*rotation).operations[0].code(models_then, None)

    new_accounts = dict(Account.objects.values_list("pk", "execution_secret"))
    new_agents = dict(Agent.objects.values_list("pk", "callback_secret"))
    assert new_accounts.keys() == accounts.keys() and new_agents.keys() == agents.keys()
    for old, new in [(accounts, new_accounts), (agents, new_agents)]:
        assert all(new[pk] != old[pk] and new[pk].startswith("whsec_") for pk in old)
        assert len(set(new.values())) == len(new)
    assert Account.history.count() == account_history
    assert Agent.history.count() == agent_history
