from django.apps import AppConfig
from django.db.models import OuterRef, Subquery


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        # Models' modules, importable only once the app registry is ready.
        from approvals.services.kill_switch_risks import (
            proposals_risk_reassess_after_kill_switch,
        )
        from audit.exports import export_adds
        from policies.models import Policy
        from policies.services import kill_switch_risks_reassessor_register, version_number_of

        # A kill switch released (or moved off what it covered) leaves the proposals whose
        # risk it raised at the risk their other findings give, in its save's transaction
        # (policies', which never imports this app).
        kill_switch_risks_reassessor_register(proposals_risk_reassess_after_kill_switch)

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
        # Likewise the version a re-assessment was reached under (its reasons are that
        # verdict's, and the API's ``verdict.policy.number`` says it): the export gave only
        # its history record's id, and beside the routing version's number 1 an auditor read
        # the proposal as still governed by version 1.
        export_adds(
            "approvals.proposal",
            "reassessed_policy_number",
            after="reassessed_policy_version",
            expression=lambda: version_number_of(
                Subquery(
                    Policy.history.filter(
                        history_id=OuterRef(OuterRef("reassessed_policy_version"))
                    ).values("id")[:1]
                ),
                OuterRef("reassessed_policy_version"),
            ),
        )
