from django.apps import AppConfig
from django.db.models import OuterRef


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        # Models' modules, importable only once the app registry is ready.
        from audit.exports import export_adds
        from policies.services import version_number_of

        # The auditor's export gives a proposal's routing policy version by its number too,
        # as its page says it ("version 2"), beside its history record's id (7), kept as it
        # was: nothing in the export said 2.
        export_adds(
            "approvals.proposal",
            "verdict_policy_number",
            after="verdict_policy_version",
            expression=lambda: version_number_of(
                OuterRef("verdict_policy_id"), OuterRef("verdict_policy_version")
            ),
        )
