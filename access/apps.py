from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccessConfig(AppConfig):
    default = True
    name = "access"
    verbose_name = "Console access"


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
