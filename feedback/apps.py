from django.apps import AppConfig


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
