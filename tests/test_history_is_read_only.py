"""History is evidence: it can be read by every role and rewritten by none."""

import html
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils.html import strip_tags

from approvals.models import Agent, AgentAPIKey, Decision
from approvals.services.agents import agent_key_issue
from approvals.services.decisions import proposal_approve, proposal_reject
from audit.actors import Actor, acting_as
from executors.runner import proposal_execute
from ledger.models import Account, Campaign
from notifications.models import Route
from policies.models import Policy
from tests.conftest import creative, creative_batch, reallocation
from tests.factories import evaluated


def version_url(obj, history_record) -> str:
    meta = obj._meta
    return reverse(
        f"admin:{meta.app_label}_{meta.model_name}_simple_history",
        args=[obj.pk, history_record.history_id],
    )


@pytest.mark.parametrize("username", ["auditor", "operator", "policy-owner"])
def test_nobody_restores_an_old_campaign_budget_through_history(login, username):
    campaign = Campaign.objects.get(external_id="brand-search")
    first_version = campaign.history.earliest("history_date")
    campaign.daily_budget = Decimal("800.00")
    campaign.save()

    response = login(username).post(version_url(campaign, first_version), {})

    assert response.status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).daily_budget == Decimal("800.00")


@pytest.mark.parametrize("username", ["auditor", "operator"])
def test_a_revoked_key_cannot_be_revived_through_history(login, demo_world, username):
    agent = Agent.objects.get(name="optimizer")
    old_key = agent.api_keys.get(revoked_at__isnull=True)
    before_revocation = old_key.history.latest("history_date")
    agent_key_issue(agent=agent, actor=Actor.system("test"))

    response = login(username).post(version_url(old_key, before_revocation), {})

    assert response.status_code == 403
    assert AgentAPIKey.objects.get(pk=old_key.pk).revoked_at is not None


def test_a_decision_cannot_be_rewritten_through_history(login, demo_world):
    proposal = evaluated(reallocation())
    operator = get_user_model().objects.get(username="operator")
    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="wrong_signal")
    decision = Decision.objects.get(proposal=proposal)

    response = login("auditor").post(
        version_url(decision, decision.history.get()), {"outcome": "approve"}
    )

    assert response.status_code == 403
    assert Decision.objects.get(pk=decision.pk).outcome == "reject"


@pytest.mark.parametrize(
    "obj",
    [
        lambda: evaluated(reallocation()),
        lambda: Policy.objects.get(action_type="budget_reallocation"),
        lambda: Campaign.objects.get(external_id="brand-search"),
    ],
    ids=["proposal", "policy", "campaign"],
)
def test_every_role_reads_each_past_version(login, obj):
    record = obj()
    url = version_url(record, record.history.earliest("history_date"))
    for username in ("auditor", "operator", "policy-owner"):
        page = login(username).get(url)
        assert page.status_code == 200, username
        assert 'type="submit"' not in page.content.decode().split('id="content-main"')[1]


def test_every_role_reads_an_execution_s_past_version_in_words(login, operators):
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operators[0], note="")
    proposal_execute(proposal_id=proposal.pk)
    execution = proposal.executions.get()

    for username in ("auditor", "operator", "policy-owner"):
        content = version_page_text(
            login(username), execution, execution.history.earliest("history_date")
        )
        plain = " ".join(html.unescape(strip_tags(content)).split())
        assert "brand-search daily budget 1000.00" in plain, username
        assert 'type="submit"' not in content


def test_the_history_list_shows_who_changed_what(login, demo_world):
    policy = Policy.objects.get(action_type="budget_reallocation")
    policy.auto_execute_max_magnitude = Decimal("0.20")
    policy.save()
    page = login("auditor").get(reverse("admin:policies_policy_history", args=[policy.pk]))
    text = page.content.decode()
    assert "seed_demo" in text
    plain = " ".join(html.unescape(strip_tags(text)).split())
    # The field's old and new value, in percent as the policy's form takes them.
    assert "Auto-execute ceiling: 10% → 20%" in plain


def history_rows(client, obj) -> list[str]:
    """The history list's rows, newest first, as text a person reads."""
    meta = obj._meta
    page = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_history", args=[obj.pk]))
    assert page.status_code == 200
    table = page.content.decode().split('id="change-history"')[1].split("</table>")[0]
    header, *rows = table.split("<tr>")[1:]
    assert "history_actor" not in header  # no raw column names
    return [" ".join(html.unescape(strip_tags(row)).split()) for row in rows]


def test_the_history_list_says_in_words_who_made_each_change(login, operators):
    proposal = evaluated(reallocation())
    proposal_approve(proposal_id=proposal.pk, reviewer=operators[0], note="")
    proposal_execute(proposal_id=proposal.pk)

    rows = history_rows(login("auditor"), proposal)

    who = ["the executor (system)"] * 2 + [
        "operator (person)",
        "the policy engine (system)",
        "optimizer (agent)",
    ]
    assert len(rows) == len(who)
    for row, actor in zip(rows, who, strict=True):
        assert actor in row
        assert "None" not in row


def test_a_reference_set_for_the_first_time_reads_as_empty_before(login, demo_world):
    proposal = evaluated(reallocation())  # routed: its deciding policy set, none before

    routed = history_rows(login("auditor"), proposal)[0]

    assert "Verdict policy: — → “Budget reallocations” (policy #" in routed
    assert "Deleted" not in routed and "pk=None" not in routed


def test_a_proposal_s_history_names_its_policy_as_it_was_when_it_routed_it(login, demo_world):
    proposal = evaluated(reallocation())
    policy = Policy.objects.get(pk=proposal.verdict_policy_id)
    policy.name = "Moves between campaigns"
    policy._change_reason = "Renamed."
    policy.save()
    auditor = login("auditor")

    routed = history_rows(auditor, proposal)[0]
    page = auditor.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))

    assert f"Verdict policy: — → “Budget reallocations” (policy #{policy.pk}, version 1)" in routed
    assert "Verdict policy version" not in routed  # its record's id, said once, as its number
    assert "Moves between campaigns" not in routed
    # The page says what it is called now, so the person can find it.
    routed_by = html.unescape(page.text.split('id="routed-by"')[1].split("</p>")[0])
    saved_on = Policy.history.get(history_id=proposal.verdict_policy_version).history_date
    assert (
        f"policy “Budget reallocations” in its version 1, as saved on {saved_on:%Y-%m-%d %H:%M:%S}"
        " UTC (it has changed since" in routed_by
    )
    assert "now called “Moves between campaigns”" in routed_by
    # Versions numbered as the policy's own, on its page, its history and the policy's list.
    assert "UTC (it has changed since, to version 2, and is now called" in routed_by
    renamed, seeded = history_rows(auditor, policy)
    assert renamed.startswith("Moves between campaigns 2 ")
    assert seeded.startswith("Budget reallocations 1 ")


def test_history_reads_guardrail_findings_as_sentences_and_no_change_where_there_were_none(
    login, demo_world
):
    plain = evaluated(reallocation())
    banned = evaluated(creative_batch(creative(headline="Guaranteed clicks")))
    auditor = login("auditor")

    plain_routed = history_rows(auditor, plain)[0]
    banned_routed = history_rows(auditor, banned)[0]

    assert "Guardrail findings" not in plain_routed  # nothing found, nothing changed
    assert "Guardrail findings: — → Sends to a person: " in banned_routed
    assert "guaranteed" in banned_routed.split("Guardrail findings:")[1].lower()
    assert "'review'" not in banned_routed and "chars]" not in banned_routed
    assert f"Verdict reasons: — → {banned.verdict_reasons[0]}" in banned_routed
    # The rules that held it, by their words, not their record's JSON.
    assert f"Verdict held by: — → {banned.verdict_held_by[0]['text']}" in banned_routed
    assert "'rule'" not in banned_routed


def test_records_changed_without_a_reason_show_no_reason_not_none(login, demo_world):
    campaign = Campaign.objects.get(external_id="brand-search")
    campaign.daily_budget = Decimal("1100.00")
    campaign.save()
    policy = Policy.objects.get(action_type="budget_reallocation")
    policy.auto_execute_max_magnitude = Decimal("0.20")
    policy.save()
    account = Account.objects.get(external_id="demo")
    account.max_total_daily_budget = Decimal("5000.00")
    account.save()
    auditor = login("auditor")

    for obj in (campaign, policy, account):
        rows = history_rows(auditor, obj)
        assert rows, obj
        assert not any("None" in row for row in rows), (obj, rows)


def version_page_text(client, obj, history_record) -> str:
    page = client.get(version_url(obj, history_record))
    assert page.status_code == 200
    return page.content.decode().split('id="content-main"')[1]


def test_an_agent_s_past_version_shows_the_accounts_it_had_then_and_offers_no_widget(
    login, demo_world
):
    agent = Agent.objects.get(name="copywriter")
    Account.objects.create(
        external_id="spring-sale", name="Spring sale", channel="meta", currency="EUR"
    )
    on_demo = agent.history.latest("history_date")
    agent.accounts.set([Account.objects.get(external_id="spring-sale")])  # recorded, as seeded

    content = version_page_text(login("auditor"), agent, on_demo)

    # The version an auditor opens says which accounts the agent could act on then, in words;
    # not today's accounts, and not in a chooser that looks as if it could be changed.
    assert 'name="accounts"' not in content
    accounts = " ".join(html.unescape(strip_tags(content.split("Accounts")[1])).split())
    assert accounts.startswith(": demo ")
    assert "spring-sale" not in content


def test_a_route_s_past_version_shows_whom_it_told_then(login, demo_world):
    route = Route.objects.get(name="Demo: everything waiting, to the operators")
    told_then = sorted(group.name for group in route.groups.all())
    before = route.history.latest("history_date")
    route.groups.set([Group.objects.create(name="night shift")])

    content = version_page_text(login("auditor"), route, before)

    plain = " ".join(html.unescape(strip_tags(content)).split())
    assert told_then and all(name in plain for name in told_then)
    assert "night shift" not in plain


def test_the_history_list_reads_an_agent_s_accounts_in_words(login, demo_world):
    agent = Agent.objects.get(name="copywriter")

    granted = history_rows(login("auditor"), agent)[0]

    assert "Accounts: — → demo" in granted
    assert "[" not in granted


def test_who_made_a_change_links_to_their_page_only_for_those_who_may_open_it(
    login, admin_client, demo_world
):
    """The history names who made each change; for a role that may not open people's pages
    (an operator: auditors read people and their roles), the name is not a link to a page that
    says "Not allowed"."""

    policy = Policy.objects.get(action_type="budget_reallocation")
    owner = get_user_model().objects.get(username="policy-owner")
    policy.auto_execute_max_magnitude = Decimal("0.20")
    policy._history_user = owner
    policy.save()
    history = reverse("admin:policies_policy_history", args=[policy.pk])
    person = reverse("admin:auth_user_change", args=[owner.pk])
    operator = login("operator")

    assert operator.get(person).status_code == 403
    assert f'href="{person}"' not in operator.get(history).text
    assert "policy-owner (person)" in operator.get(history).text
    assert f'href="{person}"' in admin_client.get(history).text  # who may, still follows it
    assert f'href="{person}"' in login("auditor").get(history).text


def test_an_agent_s_history_starts_with_what_it_was_made_as(login, demo_world):
    """Its "Created" entry listed nothing: which kind it was made as (a policy's scope by
    kind), whose it was and whether it was active were only on the version's own page."""
    agent = Agent.objects.get(name="optimizer")

    created = history_rows(login("auditor"), agent)[-1]

    assert "Created" in created
    assert "Name: — → optimizer" in created
    assert "Kind: — → Optimization" in created
    assert "Is active: — → yes" in created
    assert "whsec_" not in created and "Callback secret" not in created


def test_history_says_amounts_of_money_in_their_currency(login, operators):
    """An edit's "Amount: 280.00 → 200.00" and an execution's "Daily budget: 1000.00 →
    800.00" gave no currency, where the proposal's page says "280.00 USD" and its summary
    "USD/day"; a bid's ratio to a target (ROAS) is no money."""
    proposal = evaluated(reallocation("280.00"))
    edited = {**proposal.payload, "amount": "200.00"}
    proposal_approve(proposal_id=proposal.pk, reviewer=operators[0], edited_payload=edited)
    proposal_execute(proposal_id=proposal.pk)
    campaign = Campaign.objects.get(external_id="brand-search")
    campaign.target_roas = Decimal("3.50")
    campaign.save()
    client = login("auditor")

    edit = next(row for row in history_rows(client, proposal) if "edited by" in row)
    rows = history_rows(client, campaign)

    assert "Amount: 280.00 USD → 200.00 USD" in edit
    assert "Daily budget: 1000.00 USD → 800.00 USD" in rows[1]
    assert "Target ROAS: not set → 3.50" in rows[0] and "3.50 USD" not in rows[0]
    assert "Daily budget: — → 1000.00 USD" in rows[-1]  # created: from nothing, no "— USD"


def test_a_campaigns_history_links_the_proposal_that_changed_it(login, operators):
    """ "proposal #1: move 200.00 USD/day …" was text: an auditor reading a campaign's
    history could not go to the proposal's page, where its whole story is."""
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operators[0])
    proposal_execute(proposal_id=proposal.pk)
    campaign = Campaign.objects.get(external_id="brand-search")
    url = reverse("admin:approvals_proposal_change", args=[proposal.pk])

    page = login("auditor").get(reverse("admin:ledger_campaign_history", args=[campaign.pk]))

    assert f'<a href="{url}">proposal #{proposal.pk}</a>: move 280.00 USD/day' in page.text


def test_a_deleted_record_s_past_version_says_it_was_deleted_not_that_its_page_shows_it(
    login, demo_world
):
    """A past version's line led to "its page as it is now", of a policy deleted since:
    that page is gone (it leads to the history). It says when it was deleted, and by whom."""
    policy = Policy.objects.get(action_type="budget_reallocation")
    pk, first = policy.pk, policy.history.earliest("history_date")
    url = version_url(policy, first)
    with acting_as(Actor.system("tests")):
        policy.delete()
    deletion = Policy.history.get(id=pk, history_type="-")

    page = login("auditor").get(url).content.decode()

    said = re.search(r'<p id="version-as-of">(.*?)</p>', page, re.S)
    assert said is not None
    assert " ".join(html.unescape(strip_tags(said[1])).split()) == (
        f"This is policy #{pk} as it stood at {first.history_date:%Y-%m-%d %H:%M:%S} UTC, as "
        "recorded by the seed_demo command (system). It was deleted at "
        f"{deletion.history_date:%Y-%m-%d %H:%M:%S} UTC by the tests (system). Its history says so."
    )
    assert f'href="{reverse("admin:policies_policy_history", args=[pk])}"' in said[1]
