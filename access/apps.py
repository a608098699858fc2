from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccessConfig(AppConfig):
    default = True
    name = "access"
    verbose_name = "Console access"

    def ready(self) -> None:
        from django.contrib.auth.management.commands import createsuperuser

        from audit.actors import Actor, acting_as

        # The person ``manage.py createsuperuser`` makes is recorded in the history of people
        # as made by that command, the platform itself, not by "an unnamed part" of it.
        # (django.contrib.auth's command wins over one of this app's: it is installed first.)
        handle = createsuperuser.Command.handle

        def handle_as_the_command(command, *args, **options):
            with acting_as(Actor.system("createsuperuser")):
                return handle(command, *args, **options)

        createsuperuser.Command.handle = handle_as_the_command


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """The admin app with the console's site as its default: every ``@admin.register`` lands on
    a site whose login locks out guessers and asks for a second factor where one is required."""

    default = False
    default_site = "access.sites.ConsoleAdminSite"

    def ready(self) -> None:
        super().ready()
        from django.contrib import admin
        from django_otp.plugins.otp_totp.models import TOTPDevice

        # django-otp's device admin shows each device's secret key and lets changelist lookups
        # probe it. A key is shown once, to its owner, when they set it up (access.views);
        # an administrator resets a lost device with `manage.py second_factor_reset`.
        if admin.site.is_registered(TOTPDevice):
            admin.site.unregister(TOTPDevice)
