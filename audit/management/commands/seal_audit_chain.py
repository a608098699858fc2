from django.core.management.base import BaseCommand

from audit.chain import chain_seal
from hitlproject.vocabulary import how_many


class Command(BaseCommand):
    help = "Seal the historical records written since the last run into the audit chain."

    def handle(self, *args, **options):
        self.stdout.write(f"Sealed {how_many(chain_seal(), 'record')}.")
