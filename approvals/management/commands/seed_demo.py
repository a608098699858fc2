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

from approvals import action_types
from approvals.models import Agent, AgentKind
from approvals.roles import AUDITORS, OPERATORS, POLICY_OWNERS, sync_role_groups
from approvals.services.agents import agent_authenticate, agent_create, agent_key_issue
from audit.actors import Actor, acting_as
from hitlproject.addresses import served_at
from hitlproject.errors import NotAuthenticated
from hitlproject.periods import describe_duration
from ledger.models import Account, Campaign, Channel
from notifications.models import Delivery, Route
from policies.engine import percent_text
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
# Why each of the rest of the demo world was written, in its history: a policy's version 1, the
# account, a campaign, the brand guidelines, a route, an agent and its key each read as made
# with no reason given.
MADE_ACCOUNT = "Made for the demo: the reference world's advertiser account."
MADE_CAMPAIGN = "Made for the demo, with the reference world's daily budget and bid."
MADE_POLICY = "Made for the demo, one of its default policies: {terms}."
MADE_GUIDELINES = "Made for the demo: the terms its creatives may not use."
MADE_ROUTE = "Made for the demo: {who}."
MADE_AGENT = "Made for the demo, its {kind} agent, acting on account demo."
ISSUED_KEY = "Issued for the demo."
ISSUED_AGAIN = "Issued anew for the demo: the key it kept no longer worked."
SET_BACK = "Set back as the demo has it: staff, in the {group} role."
AGENTS = [("optimizer", AgentKind.OPTIMIZATION), ("copywriter", AgentKind.PRODUCTION)]
ROUTE_TO_OPERATORS = "Demo: everything waiting, to the operators"
ROUTE_TO_POLICY_OWNERS = "Demo: policy changes waiting, to the policy owners"


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
        # Where the operators' messages go: files on this machine unless a mail server is set
        # (the platform's own setting, hitlproject.settings), not an inbox someone watches.
        if settings.EMAIL_HOST:
            where = f"goes through {settings.EMAIL_HOST}:{settings.EMAIL_PORT}."
        else:
            where = (
                f"is written as files to {settings.EMAIL_FILE_PATH} (no EMAIL_HOST: no mail "
                "server is set)."
            )
        self.stdout.write(f"Email to the console's users {where}")

    @transaction.atomic
    def _seed(self, *, kept: dict) -> dict:
        """What is missing made, in the order a first run makes it (each record's history
        written as it is made); what exists read at once, table by table, not one by one."""
        actor = Actor.system("seed_demo")
        with acting_as(actor):
            sync_role_groups()  # a role it changes is recorded as changed by this command
            groups = Group.objects.in_bulk([role for _, role in USERS], field_name="name")
            account, made = found_or_made(
                Account,
                MADE_ACCOUNT,
                external_id="demo",
                defaults={
                    "name": "Demo advertiser",
                    "channel": Channel.GOOGLE_ADS,
                    "currency": "USD",
                },
            )
            # An account just made has no campaigns nor guidelines yet: nothing to look for.
            campaigns = set()
            if not made:
                campaigns = set(
                    Campaign.objects.filter(account=account).values_list("external_id", flat=True)
                )
            for external_id, name, budget, bid in CAMPAIGNS:
                if external_id not in campaigns:
                    made_here(
                        Campaign(
                            account=account,
                            external_id=external_id,
                            name=name,
                            daily_budget=budget,
                            bid=bid,
                        ),
                        MADE_CAMPAIGN,
                    )
            defaults = set(
                Policy.objects.filter(
                    action_type__in=[action_type for _, action_type, _ in POLICIES],
                    is_active=True,
                    is_draft=False,
                    account=None,
                    agent=None,
                ).values_list("action_type", flat=True)
            )
            for name, action_type, limits in POLICIES:
                if action_type not in defaults:
                    policy = Policy(
                        name=name,
                        action_type=action_type,
                        review_window=timedelta(hours=72),
                        **limits,
                        **(CUMULATIVE if action_type in MOVES_MONEY_OR_BIDS else {}),
                    )
                    policy._change_reason = MADE_POLICY.format(terms=policy_terms(policy))
                    policy.save()
            if made or not BrandGuidelines.objects.filter(account=account).exists():
                made_here(
                    BrandGuidelines(account=account, banned_terms=BANNED_TERMS), MADE_GUIDELINES
                )
            routes = set(
                Route.objects.filter(
                    name__in=[ROUTE_TO_OPERATORS, ROUTE_TO_POLICY_OWNERS]
                ).values_list("name", flat=True)
            )
            # Operators hear by email of every proposal of ``demo`` that waits for a person: of a
            # policy change too, which their message says a policy owner decides.
            if ROUTE_TO_OPERATORS not in routes:
                self._route(
                    ROUTE_TO_OPERATORS,
                    groups[OPERATORS],
                    "the operators hear by email of every proposal of demo that waits for a person",
                    account=account,
                    delivery=Delivery.IMMEDIATELY,
                )
            # The platform's proposed policy changes (autonomy recommendations) are the policy
            # owners' to decide: they hear of them too, or nobody who may decide would.
            if ROUTE_TO_POLICY_OWNERS not in routes:
                self._route(
                    ROUTE_TO_POLICY_OWNERS,
                    groups[POLICY_OWNERS],
                    "the policy owners hear by email of every policy change of demo that waits "
                    "for them to decide it",
                    account=account,
                    action_type="policy_change",
                    delivery=Delivery.IMMEDIATELY,
                )
            kept_users = kept.get("users", {})
            found_users = get_user_model().objects.in_bulk(
                [username for username, _ in USERS], field_name="username"
            )
            users = {
                username: self._user(
                    found_users.get(username) or get_user_model()(username=username),
                    groups[group],
                    kept_users.get(username, {}).get("password"),
                )
                for username, group in USERS
            }

        agents = {}
        found_agents = Agent.objects.in_bulk([name for name, _ in AGENTS], field_name="name")
        for name, kind in AGENTS:
            agent = found_agents.get(name)
            if agent is None:
                agent, raw_key = agent_create(
                    name=name,
                    kind=kind,
                    accounts=[account],
                    actor=actor,
                    reason=MADE_AGENT.format(kind=AgentKind(kind).label.lower()),
                    key_reason=ISSUED_KEY,
                )
            else:
                raw_key = kept.get("agents", {}).get(name)
                if not key_works(agent, raw_key):
                    raw_key = agent_key_issue(agent=agent, actor=actor, reason=ISSUED_AGAIN)
            agents[name] = raw_key

        credentials = {"users": users, "agents": agents}
        # Inside the transaction: a file that cannot be written leaves nothing issued unkept.
        keep_credentials(credentials)
        return credentials

    def _route(self, name: str, group: Group, who: str, **fields) -> None:
        """The route: one record of it made, with the group it tells and why (not one of it
        made, then one of its group, each with no reason)."""
        route = Route(name=name, **fields)
        route.skip_history_when_saving = True
        try:
            route.save()
            route.groups.add(group)
        finally:
            del route.skip_history_when_saving
        route._change_reason = MADE_ROUTE.format(who=who)
        type(route)._audited_history.create_historical_record(route, "+")

    def _user(self, user, group: Group, kept_password: str | None) -> dict[str, str]:
        """``user``: the demo person as found, or a new one (not saved yet) of that name."""
        username = user.username
        made = user._state.adding
        before = (user.password, user.is_staff, user.email)
        password = kept_password
        if not (password and user.check_password(password)):
            password = secrets.token_urlsafe(12)
            user.set_password(password)
        user.is_staff = True
        user.email = user.email or f"{username}@example.com"
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
            if made:  # a person just made is in no group: theirs is added, nothing to take off
                user.groups.add(group)
            else:
                user.groups.set([group])
        finally:
            del user.skip_history_when_saving
        user._change_reason = (MADE if made else SET_BACK).format(group=group.name)
        type(user)._audited_history.create_historical_record(user, "+" if made else "~")
        return {"username": username, "password": password}


def policy_terms(policy: Policy) -> str:
    """A default policy's terms, in words: "a bid adjustment auto-executes up to 15%, and a
    campaign's moves up to 25% within 1 day in all"."""
    label = action_types.label(policy.action_type)
    if policy.always_review:
        return f"every {label} goes to a person"
    said = f"a {label} auto-executes up to {percent_text(policy.auto_execute_max_magnitude)}"
    if policy.cumulative_max_magnitude is None:
        return said
    return (
        f"{said}, and a campaign's moves up to {percent_text(policy.cumulative_max_magnitude)} "
        f"within {describe_duration(policy.cumulative_window)} in all"
    )


def found_or_made(model, reason: str, *, defaults: dict, **lookup):
    """``get_or_create``, the record made saying why in its history."""
    found = model.objects.filter(**lookup).first()
    if found is not None:
        return found, False
    return made_here(model(**lookup, **defaults), reason), True


def made_here(record, reason: str):
    """``record`` saved, its history saying why it was made."""
    record._change_reason = reason
    record.save()
    return record


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
