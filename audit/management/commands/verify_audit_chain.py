from django.core.management.base import BaseCommand, CommandError

from audit.chain import chain_verify


class Command(BaseCommand):
    help = (
        "Verify the audit chain: every sealed historical record is as it was sealed, and no "
        "record was slipped in behind it. Exits 1 naming the first break."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--head",
            help="A head hash a past verification printed: the chain must still pass through it.",
        )

    def handle(self, *args, head, **options):
        verification = chain_verify(through=head)
        if not verification.holds:
            raise CommandError(f"The audit chain is broken at {verification.broken}")
        if head and not verification.passed:
            raise CommandError(
                f"The audit chain holds, but does not pass through {head}: it is not the "
                "chain whose head was recorded then."
            )
        self.stdout.write(
            f"The audit chain holds: {verification.links} record(s) sealed, head "
            f"{verification.head}; {verification.unsealed} written since the last sealing."
        )
