"""Build the reference world of the spec, idempotently, and print how to get in."""

import json
import secrets
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from approvals.models import Agent, AgentKind
from approvals.roles import AUDITORS, OPERATORS, POLICY_OWNERS, sync_role_groups
from approvals.services.agents import agent_create, agent_key_issue
from audit.actors import Actor, acting_as
from ledger.models import Account, Campaign, Channel
from policies.models import BrandGuidelines, Policy

CAMPAIGNS = [
    ("brand-search", "Brand search", Decimal("1000.00"), Decimal("2.00")),
    ("generic-search", "Generic search", Decimal("500.00"), Decimal("1.50")),
    ("display-retarget", "Display retargeting", Decimal("300.00"), Decimal("0.80")),
]
CUMULATIVE = {"cumulative_max_magnitude": Decimal("0.25"), "cumulative_window": timedelta(hours=24)}
POLICIES = [
    ("Bid adjustments", "bid_adjustment", {"auto_execute_max_magnitude": Decimal("0.15")}),
    ("Budget changes", "budget_change", {"auto_execute_max_magnitude": Decimal("0.10")}),
    (
        "Budget reallocations",
        "budget_reallocation",
        {"auto_execute_max_magnitude": Decimal("0.10")},
    ),
    ("Creative batches", "creative_deployment", {"always_review": True}),
    ("Strategy changes", "strategy_change", {"always_review": True}),
    ("Status changes", "status_change", {"always_review": True}),
]
MOVES_MONEY_OR_BIDS = {"bid_adjustment", "budget_change", "budget_reallocation"}
BANNED_TERMS = "guaranteed\nrisk-free"
USERS = [("operator", OPERATORS), ("policy-owner", POLICY_OWNERS), ("auditor", AUDITORS)]
AGENTS = [("optimizer", AgentKind.OPTIMIZATION), ("copywriter", AgentKind.PRODUCTION)]


class Command(BaseCommand):
    help = (
        "Create the demo account, campaigns, policies, users and agents if missing. Each run "
        "sets fresh passwords and API keys (revoking the previous demo keys) and prints them."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print one JSON object."
        )

    @transaction.atomic
    def handle(self, *args, as_json: bool = False, **options):
        actor = Actor.system("seed_demo")
        sync_role_groups()
        with acting_as(actor):
            account, _ = Account.objects.get_or_create(
                external_id="demo",
                defaults={
                    "name": "Demo advertiser",
                    "channel": Channel.GOOGLE_ADS,
                    "currency": "USD",
                },
            )
            for external_id, name, budget, bid in CAMPAIGNS:
                Campaign.objects.get_or_create(
                    account=account,
                    external_id=external_id,
                    defaults={"name": name, "daily_budget": budget, "bid": bid},
                )
            for name, action_type, limits in POLICIES:
                default = Policy.objects.filter(
                    action_type=action_type,
                    is_active=True,
                    is_draft=False,
                    account=None,
                    agent=None,
                )
                if not default.exists():
                    Policy.objects.create(
                        name=name,
                        action_type=action_type,
                        review_window=timedelta(hours=72),
                        **limits,
                        **(CUMULATIVE if action_type in MOVES_MONEY_OR_BIDS else {}),
                    )
            BrandGuidelines.objects.get_or_create(
                account=account, defaults={"banned_terms": BANNED_TERMS}
            )
            users = {username: self._user(username, group) for username, group in USERS}

        agents = {}
        for name, kind in AGENTS:
            agent = Agent.objects.filter(name=name).first()
            if agent is None:
                agent, raw_key = agent_create(name=name, kind=kind, accounts=[account], actor=actor)
            else:
                raw_key = agent_key_issue(agent=agent, actor=actor)
            agents[name] = raw_key

        if as_json:
            self.stdout.write(json.dumps({"users": users, "agents": agents}, indent=2))
            return
        self.stdout.write(
            "Demo world ready: account demo (google_ads, USD), 3 campaigns, 6 policies."
        )
        self.stdout.write("Console logins (http://127.0.0.1:8000/admin/):")
        for login in users.values():
            self.stdout.write(f"  {login['username']:<14} {login['password']}")
        self.stdout.write("Agent API keys (Authorization: Bearer <key>):")
        for name, raw_key in agents.items():
            self.stdout.write(f"  {name:<14} {raw_key}")

    def _user(self, username: str, group_name: str) -> dict[str, str]:
        user, _ = get_user_model().objects.get_or_create(username=username)
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.is_staff = True
        user.save()
        user.groups.set([Group.objects.get(name=group_name)])
        return {"username": username, "password": password}
