from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def autonomy_rules_made_at_setup(*, using: str, **kwargs) -> None:
    """After ``migrate`` and ``flush`` (post_migrate): the autonomy rules exist, made by the
    set-up with their defaults, so that reading them (their page, the daily review) writes
    nothing. Not while the schema is another migration's (a step back): its table must hold
    every column the model has."""
    from feedback.models import AutonomyRules

    connection = connections[using]
    table = AutonomyRules._meta.db_table
    if table not in connection.introspection.table_names():
        return
    with connection.cursor() as cursor:
        columns = {c.name for c in connection.introspection.get_table_description(cursor, table)}
    if columns >= {field.column for field in AutonomyRules._meta.concrete_fields}:
        AutonomyRules.made_at_setup()


class FeedbackConfig(AppConfig):
    name = "feedback"
    verbose_name = "Feedback"

    def ready(self) -> None:
        from approvals.services import hooks
        from approvals.services.lifecycle import on_proposals_moved
        from feedback.callbacks import (
            callback_events_record_moved,
            callback_events_record_sent_back,
        )
        from feedback.selectors import agent_approval_rate
        from feedback.services import (
            feedback_record_decisions,
            feedback_record_executions,
            feedback_record_expiries,
            feedback_record_failures,
            feedback_record_retries,
            feedback_record_sent_back,
            feedback_record_supersessions,
            feedback_record_withdrawals,
        )
        from policies.services import approval_rate_reader_register

        # Agents' callbacks are recorded first, before the notifications (a later app).
        on_proposals_moved(callback_events_record_moved)
        hooks.decisions_settled.connect(feedback_record_decisions)
        hooks.executions_failed.connect(feedback_record_failures)
        hooks.executions_retried.connect(feedback_record_retries)
        hooks.executions_carried_out.connect(feedback_record_executions)
        hooks.proposals_expired.connect(feedback_record_expiries)
        hooks.proposals_superseded.connect(feedback_record_supersessions)
        hooks.withdrawn_for_agents.connect(feedback_record_withdrawals)
        hooks.proposals_sent_back.connect(callback_events_record_sent_back)
        hooks.proposals_sent_back.connect(feedback_record_sent_back)
        approval_rate_reader_register(agent_approval_rate)
        post_migrate.connect(
            autonomy_rules_made_at_setup, sender=self, dispatch_uid="feedback.autonomy_rules"
        )
