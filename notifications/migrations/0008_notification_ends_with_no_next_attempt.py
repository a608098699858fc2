"""A message sent, failed or not sent has no next attempt: its field is empty. Those ended
before kept the lease they were sent under (two minutes after sending), shown as if a next
attempt were due; it is cleared, with a history record saying why, as every change of a
message has."""

import django.utils.timezone
from django.db import migrations, models

ENDED = ("sent", "failed", "not_sent")
REASON = (
    "No next attempt: the message had ended (sent, failed or not sent); the lease it was "
    "last tried under, kept as its next attempt, is cleared."
)


def clear_ended_leases(apps, schema_editor):
    notification = apps.get_model("notifications", "Notification")
    historical = apps.get_model("notifications", "HistoricalNotification")
    now = django.utils.timezone.now()
    tracked = [
        field.attname
        for field in notification._meta.concrete_fields
        if field.attname in {f.attname for f in historical._meta.concrete_fields}
    ]
    ended = notification.objects.filter(status__in=ENDED, next_attempt_at__isnull=False)
    while batch := list(ended.order_by("pk")[:1000]):
        for row in batch:
            row.next_attempt_at = None
        notification.objects.bulk_update(batch, ["next_attempt_at"])
        historical.objects.bulk_create(
            historical(
                **{name: getattr(row, name) for name in tracked},
                history_date=now,
                history_type="~",
                history_change_reason=REASON,
                history_actor_kind="system",
                history_actor="notifications",
            )
            for row in batch
        )


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0007_routing_in_rules_version"),
    ]

    operations = [
        migrations.AlterField(
            model_name="historicalnotification",
            name="next_attempt_at",
            field=models.DateTimeField(blank=True, default=django.utils.timezone.now, null=True),
        ),
        migrations.AlterField(
            model_name="notification",
            name="next_attempt_at",
            field=models.DateTimeField(blank=True, default=django.utils.timezone.now, null=True),
        ),
        migrations.RunPython(clear_ended_leases, migrations.RunPython.noop, elidable=True),
    ]
