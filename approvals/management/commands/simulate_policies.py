import json

from django.core.management.base import BaseCommand, CommandError

from approvals.simulation import drafts_in_place, simulate
from hitlproject.errors import DomainError
from hitlproject.periods import command_period
from hitlproject.vocabulary import SIMULATED_ROW_LABELS, SIMULATED_ROWS, how_many


class Command(BaseCommand):
    help = (
        "What-if: replay the proposals of a period through the policies in force with the "
        "draft policies in place, and compare with what happened. Writes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="First day, YYYY-MM-DD.")
        parser.add_argument("--until", help="Day after the last, YYYY-MM-DD (default: tomorrow).")
        parser.add_argument(
            "--draft",
            type=int,
            action="append",
            dest="drafts",
            metavar="POLICY_ID",
            help="A draft policy to put in force (repeat; default: every active draft).",
        )
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, since, until, drafts, as_json, **options):
        start, end = command_period(since, until)
        draft_set = drafts_in_place(drafts)
        names = draft_set.names
        if drafts and len(names) != len(set(drafts)):
            raise CommandError("Every --draft must be the id of an active draft policy.")
        try:
            report = simulate(since=start, until=end, draft_set=draft_set)
        except DomainError as error:
            raise CommandError(error.message) from error
        if as_json:
            self.stdout.write(json.dumps(report.as_json(), indent=2))
            return
        self.stdout.write(
            f"{report.proposals} proposals from {start:%Y-%m-%d} to {end:%Y-%m-%d}, "
            f"with {', '.join(names) or 'no draft (the policies that decided them)'}:"
        )
        width = max(len(label) for label in SIMULATED_ROW_LABELS.values())
        # With no draft, the routings are replayed under the policies that decided them.
        replayed = "with draft" if names else "replayed"
        self.stdout.write(f"  {'':{width}} {'happened':>10} {replayed:>11}")
        for row in SIMULATED_ROWS:
            self.stdout.write(
                f"  {SIMULATED_ROW_LABELS[row]:{width}} {report.happened[row]:>10} "
                f"{report.with_draft[row]:>11}"
            )
        self.stdout.write(f"  {how_many(report.changed, 'routing')} would have gone another way.")
        if report.not_replayed:
            # As the simulation's page says it.
            self.stdout.write(
                f"  {how_many(report.not_replayed, 'routing')} cannot be replayed, and "
                f"{'is' if report.not_replayed == 1 else 'are'} counted in neither column: "
                + "; ".join(
                    f"#{each['proposal']}: {each['why']}" for each in report.not_replayed_examples
                )
                + ("; …" if report.not_replayed > len(report.not_replayed_examples) else "")
                + "."
            )
        if names:
            self.stdout.write(
                f"  The draft would auto-execute {report.auto_though_rejected} that a human "
                f"rejected and {report.auto_though_edited} that a human edited."
            )
