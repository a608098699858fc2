from datetime import datetime, time, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit.exports import as_csv, as_jsonl, audit_records


def day(value: str) -> datetime:
    try:
        return timezone.make_aware(datetime.combine(datetime.fromisoformat(value).date(), time()))
    except ValueError as error:
        raise CommandError(f"Not a date: {value} (use YYYY-MM-DD)") from error


class Command(BaseCommand):
    help = "Write the audit trail of a period to standard output, as JSON Lines or CSV."

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="First day, YYYY-MM-DD.")
        parser.add_argument("--until", help="Day after the last (default: tomorrow).")
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")

    def handle(self, *args, since, until, format, **options):
        start = day(since)
        end = day(until) if until else day((timezone.localdate() + timedelta(days=1)).isoformat())
        if end <= start:
            raise CommandError("--until must come after --since.")
        write = as_csv if format == "csv" else as_jsonl
        for chunk in write(audit_records(since=start, until=end)):
            self.stdout.write(chunk, ending="")
