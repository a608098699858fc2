from django.core.management.base import BaseCommand, CommandError

from approvals.models import Agent
from audit.exports import as_jsonl
from feedback.exports import training_records
from hitlproject.periods import command_period


class Command(BaseCommand):
    help = (
        "Write to standard output, as JSON Lines, each of an agent's proposals it was given "
        "feedback on in a period or whose outcome was reported (by a person or the agent), for "
        "prompt tuning or fine-tuning: proposal, verdict, decisions, edits, reasons, outcomes."
    )

    def add_arguments(self, parser):
        parser.add_argument("agent", help="The agent's name.")
        parser.add_argument("--since", required=True, help="First day, YYYY-MM-DD.")
        parser.add_argument("--until", help="Day after the last (default: tomorrow).")

    def handle(self, *args, agent, since, until, **options):
        found = Agent.objects.filter(name=agent).first()
        if found is None:
            raise CommandError(f"No such agent: {agent}")
        start, end = command_period(since, until)
        for line in as_jsonl(training_records(agent=found, since=start, until=end)):
            self.stdout.write(line, ending="")
