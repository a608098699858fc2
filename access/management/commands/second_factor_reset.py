from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from access.services import second_factor_reset
from hitlproject.vocabulary import how_many


class Command(BaseCommand):
    help = (
        "Forget a person's authenticator app (a lost phone). If their group requires a second "
        "factor they set up a new one at their next login."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No such user: {username}")
        removed = second_factor_reset(user=user)
        self.stdout.write(f"Removed {how_many(removed, 'authenticator app')} of {username}.")
