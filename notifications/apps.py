from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from approvals.services import hooks
        from approvals.services.lifecycle import on_proposals_moved
        from notifications import receivers  # noqa: F401
        from notifications.services import (
            notifications_record_moves,
            reviews_restarted_tell,
            slack_messages_approval_counted,
            slack_messages_reassessed,
        )

        on_proposals_moved(notifications_record_moves)
        hooks.proposals_reassessed.connect(slack_messages_reassessed)
        hooks.reviews_restarted.connect(reviews_restarted_tell)
        hooks.approvals_counted.connect(slack_messages_approval_counted)
