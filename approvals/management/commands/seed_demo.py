"""Build the reference world of the spec, idempotently, and print how to get in."""

import json
import os
import secrets
import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import connection, transaction

from approvals.models import Agent, AgentKind
from approvals.roles import AUDITORS, OPERATORS, POLICY_OWNERS, sync_role_groups
from approvals.services.agents import agent_authenticate, agent_create, agent_key_issue
from audit.actors import Actor, acting_as
from hitlproject.addresses import served_at
from hitlproject.errors import NotAuthenticated
from ledger.models import Account, Campaign, Channel
from notifications.models import Delivery, Route
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
# Why a demo person's record was written, in their history (a password issued anew adds its
# own sentence, ``access.models``).
MADE = "Made for the demo, in the {group} role."
SET_BACK = "Set back as the demo has it: staff, in the {group} role."
AGENTS = [("optimizer", AgentKind.OPTIMIZATION), ("copywriter", AgentKind.PRODUCTION)]


class Command(BaseCommand):
    help = (
        "Create the demo account, campaigns, policies, users and agents if missing, and print "
        "the logins and API keys. Run again, it prints the same ones (kept, readable by their "
        "owner alone, in DEMO_CREDENTIALS_FILE); only one that no longer works is replaced."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print one JSON object."
        )

    def handle(self, *args, as_json: bool = False, **options):
        credentials = self._seed(kept=kept_credentials())
        if as_json:
            self.stdout.write(json.dumps(credentials, indent=2))
            return
        self.stdout.write(
            "Demo world ready: account demo (google_ads, USD), 3 campaigns, 6 policies."
        )
        self.stdout.write(f"Console logins ({served_at()}/admin/):")
        for login in credentials["users"].values():
            self.stdout.write(f"  {login['username']:<14} {login['password']}")
        self.stdout.write("Agent API keys (Authorization: Bearer <key>):")
        for name, raw_key in credentials["agents"].items():
            self.stdout.write(f"  {name:<14} {raw_key}")
        self.stdout.write(
            f"Each run prints these same ones, kept in {settings.DEMO_CREDENTIALS_FILE} "
            "(readable by you alone); delete that file to be issued new ones."
        )

    @transaction.atomic
    def _seed(self, *, kept: dict) -> dict:
        actor = Actor.system("seed_demo")
        with acting_as(actor):
            sync_role_groups()  # a role it changes is recorded as changed by this command
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
            # Operators hear by email of every proposal of ``demo`` that waits for a person: of a
            # policy change too, which their message says a policy owner decides.
            route, created = Route.objects.get_or_create(
                name="Demo: everything waiting, to the operators",
                defaults={"account": account, "delivery": Delivery.IMMEDIATELY},
            )
            if created:
                route.groups.set([Group.objects.get(name=OPERATORS)])
            # The platform's proposed policy changes (autonomy recommendations) are the policy
            # owners' to decide: they hear of them too, or nobody who may decide would.
            route, created = Route.objects.get_or_create(
                name="Demo: policy changes waiting, to the policy owners",
                defaults={
                    "account": account,
                    "action_type": "policy_change",
                    "delivery": Delivery.IMMEDIATELY,
                },
            )
            if created:
                route.groups.set([Group.objects.get(name=POLICY_OWNERS)])
            kept_users = kept.get("users", {})
            users = {
                username: self._user(username, group, kept_users.get(username, {}).get("password"))
                for username, group in USERS
            }

        agents = {}
        for name, kind in AGENTS:
            agent = Agent.objects.filter(name=name).first()
            if agent is None:
                agent, raw_key = agent_create(name=name, kind=kind, accounts=[account], actor=actor)
            else:
                raw_key = kept.get("agents", {}).get(name)
                if not key_works(agent, raw_key):
                    raw_key = agent_key_issue(agent=agent, actor=actor)
            agents[name] = raw_key

        credentials = {"users": users, "agents": agents}
        # Inside the transaction: a file that cannot be written leaves nothing issued unkept.
        keep_credentials(credentials)
        return credentials

    def _user(self, username: str, group_name: str, kept_password: str | None) -> dict[str, str]:
        user = get_user_model().objects.filter(username=username).first()
        made = user is None
        if made:
            user = get_user_model()(username=username)
        before = (user.password, user.is_staff, user.email)
        password = kept_password
        if not (password and user.check_password(password)):
            password = secrets.token_urlsafe(12)
            user.set_password(password)
        user.is_staff = True
        user.email = user.email or f"{username}@example.com"
        group = Group.objects.get(name=group_name)
        # Recorded if this changed the person: each record of their history at every start of
        # the platform read as a change of nothing, by this command. One record, saying why,
        # as the roles' are (``permissions_set_recorded``): not one of the person made, with
        # no reason, and one more of their group, with none either.
        kept = (user.password, user.is_staff, user.email) == before
        if not made and kept and list(user.groups.all()) == [group]:
            return {"username": username, "password": password}
        user.skip_history_when_saving = True
        try:
            user.save()
            user.groups.set([group])
        finally:
            del user.skip_history_when_saving
        user._change_reason = (MADE if made else SET_BACK).format(group=group_name)
        type(user)._audited_history.create_historical_record(user, "+" if made else "~")
        return {"username": username, "password": password}


def key_works(agent: Agent, raw_key: str | None) -> bool:
    if not raw_key:
        return False
    try:
        return agent_authenticate(raw_key)[0] == agent
    except NotAuthenticated:
        return False


def _database() -> str:
    """Which database the credentials are for: switching DATABASE_URL and back keeps each's."""
    db = connection.settings_dict
    return f"{db['ENGINE']} {db['HOST']}:{db['PORT']}/{db['NAME']}"


def _read_kept_file(path: Path) -> dict:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: new ones are issued and kept
        return {}
    return stored if isinstance(stored, dict) else {}


def kept_credentials() -> dict:
    kept = _read_kept_file(Path(settings.DEMO_CREDENTIALS_FILE)).get(_database())
    return kept if isinstance(kept, dict) else {}


def keep_credentials(credentials: dict) -> None:
    """Write the file whole, readable and writable by its owner alone (mkstemp's mode 0600),
    and put it in place in one step: a run that stops half-way leaves the previous one."""
    path = Path(settings.DEMO_CREDENTIALS_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = {**_read_kept_file(path), _database(): credentials}
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump(stored, file, indent=2)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
