from django.db import migrations, models


def half_time(apps, schema_editor):
    DecisionDeadline = apps.get_model("notifications", "DecisionDeadline")
    for deadline in DecisionDeadline.objects.filter(remind_at__isnull=True).iterator():
        deadline.remind_at = deadline.started_at + (deadline.due_at - deadline.started_at) / 2
        deadline.save(update_fields=["remind_at"])


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_routes_channels_outbox_deadlines_claims"),
    ]

    operations = [
        migrations.AddField(
            model_name="decisiondeadline",
            name="ended_as",
            field=models.CharField(blank=True, max_length=16),
        ),
        migrations.AddField(
            model_name="decisiondeadline",
            name="remind_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(half_time, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="decisiondeadline",
            name="remind_at",
            field=models.DateTimeField(),
        ),
    ]
