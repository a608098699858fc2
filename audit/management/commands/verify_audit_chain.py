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
        holds, found = chain_verify(through=head).verdict(head)
        if not holds:
            raise CommandError(found)
        self.stdout.write(found)
