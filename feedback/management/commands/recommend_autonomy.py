from django.core.management.base import BaseCommand

from feedback.autonomy import autonomy_recommendations_propose
from hitlproject.vocabulary import how_many


class Command(BaseCommand):
    help = (
        "Read the agents' scorecards now and propose the policy changes the autonomy rules call "
        "for (beat does this daily). Prints one line per proposal made."
    )

    def handle(self, *args, **options):
        made = autonomy_recommendations_propose()
        for proposal in made:
            self.stdout.write(f"#{proposal.pk} {proposal.summary}")
        waits = {0: ".", 1: "; it waits for a policy owner."}.get(
            len(made), "; each waits for a policy owner."
        )
        self.stderr.write(f"{how_many(len(made), 'recommendation')} made{waits}")
