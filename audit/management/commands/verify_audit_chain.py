from django.core.management.base import BaseCommand, CommandError

from audit.chain import chain_verification_record
from audit.views import ChainVerificationForm


class Command(BaseCommand):
    help = (
        "Verify the audit chain: every sealed historical record is as it was sealed, and no "
        "record was slipped in behind it. Exits 1 naming the first break and counting the "
        "others. What it found is recorded as a verification asked for in the console is: "
        "listed on the chain's page, and each break marked on the history page of its record."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--head",
            help="A head hash a past verification printed: the chain must still pass through it.",
        )

    def handle(self, *args, head, **options):
        # A head hash is taken as the console takes it (pasted from a mail: cased, spaced).
        form = ChainVerificationForm(data={"through": head or ""})
        if not form.is_valid():
            raise CommandError(" ".join(form.errors["through"]))
        verification = chain_verification_record(through=form.cleaned_data["through"])
        if not verification.holds:
            raise CommandError(verification.found)
        self.stdout.write(verification.found)
