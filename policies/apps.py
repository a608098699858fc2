from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PoliciesConfig(AppConfig):
    name = "policies"
    verbose_name = "Policies"

    def ready(self) -> None:
        from policies import receivers  # noqa: F401
        from policies.rules_version_triggers import watch_again

        # Whatever a migration rebuilt, the rules' version token is changed by every write.
        post_migrate.connect(watch_again, sender=self, dispatch_uid="policies.watch_again")
