from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from approvals.models import AgentKind
from approvals.services.agents import agent_create
from audit.actors import Actor
from ledger.models import Account


class Command(BaseCommand):
    help = (
        "Create an agent with access to accounts; prints its API key alone on the last line "
        "(and, with --callback-url, on stderr, the secret its callbacks are signed with)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--kind", required=True, choices=AgentKind.values)
        parser.add_argument(
            "--account",
            action="append",
            required=True,
            dest="accounts",
            metavar="EXTERNAL_ID",
            help="An account the agent may act on (repeat for several).",
        )
        parser.add_argument("--owner", help="Username of the person answerable for the agent.")
        parser.add_argument("--callback-url", default="")

    def handle(self, *args, name, kind, accounts, owner, callback_url, **options):
        found = list(Account.objects.filter(external_id__in=accounts))
        missing = sorted(set(accounts) - {account.external_id for account in found})
        if missing:
            raise CommandError(f"No such account: {', '.join(missing)}")
        owner_user = None
        if owner:
            owner_user = get_user_model().objects.filter(username=owner).first()
            if owner_user is None:
                raise CommandError(f"No such user: {owner}")
        try:
            agent, raw_key = agent_create(
                name=name,
                kind=kind,
                accounts=found,
                owner=owner_user,
                callback_url=callback_url,
                actor=Actor.system("create_agent"),
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from error
        if agent.callback_url:
            # Its receiver checks each event with it; in the console only a superuser sees it.
            self.stderr.write(
                f"Its callback signing secret, for hitl_client.verify_callback (also on its "
                f"page in the console, for a superuser): {agent.callback_secret}"
            )
        self.stderr.write(f"Created agent {agent.name}. Its API key (shown once):")
        self.stdout.write(raw_key)
