from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps

from audit.actors import Actor, acting_as


class AccessConfig(AppConfig):
    default = True
    name = "access"
    verbose_name = "Console access"

    def ready(self) -> None:
        from django.contrib.auth.management.commands import changepassword, createsuperuser

        # The person ``manage.py createsuperuser`` makes, and the password ``manage.py
        # changepassword`` changes, are recorded in the history of people as that command's,
        # the platform itself, not "an unnamed part" of it. (django.contrib.auth's commands
        # win over ones of this app's: it is installed first.)
        for module in (createsuperuser, changepassword):
            name = module.__name__.rsplit(".", 1)[-1]
            module.Command.handle = acting_as_the_command(module.Command.handle, name)


def acting_as_the_command(handle, name: str):
    """A management command's ``handle`` that acts as that command (the system)."""

    def handle_as_the_command(command, *args, **options):
        with acting_as(Actor.system(name)):
            return handle(command, *args, **options)

    return handle_as_the_command


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
