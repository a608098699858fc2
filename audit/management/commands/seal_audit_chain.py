from django.core.management.base import BaseCommand

from audit.chain import chain_seal


class Command(BaseCommand):
    help = "Seal the historical records written since the last run into the audit chain."

    def handle(self, *args, **options):
        self.stdout.write(f"Sealed {chain_seal()} record(s).")
