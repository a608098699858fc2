from django.core.management.base import BaseCommand

from audit.chain import records_found_broken
from audit.exports import as_csv, as_jsonl, audit_records
from hitlproject.periods import command_period


class Command(BaseCommand):
    help = "Write the audit trail of a period to standard output, as JSON Lines or CSV."

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="First day, YYYY-MM-DD.")
        parser.add_argument("--until", help="Day after the last (default: tomorrow).")
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")

    def handle(self, *args, since, until, format, **options):
        start, end = command_period(since, until)
        write = as_csv if format == "csv" else as_jsonl
        _, found = records_found_broken()
        for chunk in write(audit_records(since=start, until=end, found=found)):
            self.stdout.write(chunk, ending="")
