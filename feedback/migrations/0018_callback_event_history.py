"""Callback events keep a history, sealed in the audit chain: whether the agent was told, when,
where, and what its endpoint answered. Each event already there gets its first record,
"created", by the system ("migration"), as it is then (its log of every attempt so far in it),
so that verification, which compares each live row with its last record, finds every one
recorded."""

import django.db.models.deletion
import django.utils.timezone
import simple_history.models
import uuid
from django.conf import settings
from django.db import migrations, models

from audit.backfills import record_first

WHY = "recorded as it was when the platform began keeping the history of callback events"


def first_records(apps, schema_editor):
    record_first(apps, "feedback", "CallbackEvent", WHY)


class Migration(migrations.Migration):

    dependencies = [
        # Its agent and proposal, as the events' own migration (0003) had them: not the
        # latest of approvals, which a test taking approvals back would take this back with.
        ('approvals', '0009_agent_is_platform'),
        ('feedback', '0017_callback_event_attempts_never_reset'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='HistoricalCallbackEvent',
            fields=[
                ('id', models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name='ID')),
                ('history_actor_kind', models.CharField(default='system', max_length=8)),
                ('history_actor', models.CharField(default='unattributed', max_length=150)),
                ('history_agent_id', models.BigIntegerField(blank=True, null=True)),
                ('event_id', models.UUIDField(db_index=True, default=uuid.uuid4, editable=False)),
                ('type', models.CharField(choices=[('proposal.approved', 'Approved'), ('proposal.rejected', 'Rejected'), ('proposal.blocked', 'Blocked'), ('proposal.expired', 'Expired'), ('proposal.executed', 'Executed'), ('proposal.failed', 'Execution failed'), ('proposal.superseded', 'Superseded'), ('proposal.withdrawn', 'Withdrawn by a reviewer')], max_length=32)),
                ('url', models.URLField(help_text="Where it is sent: the agent's callback URL at its latest attempt (when the event happened, until one is made).", verbose_name='URL')),
                ('body', models.JSONField()),
                ('status', models.CharField(choices=[('pending', 'Being delivered'), ('delivered', 'Delivered'), ('failed', 'Given up')], default='pending', max_length=16)),
                ('attempts', models.PositiveSmallIntegerField(default=0)),
                ('next_attempt_at', models.DateTimeField(default=django.utils.timezone.now, help_text='When a pending event is next due; a lease while sending.')),
                ('log', models.JSONField(blank=True, default=list, help_text='Each attempt (when, and result), and notes between them (sent again by an operator, not sent).')),
                ('delivered_at', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('history_change_reason', models.TextField(null=True)),
                ('history_id', models.AutoField(primary_key=True, serialize=False)),
                ('history_date', models.DateTimeField(db_index=True)),
                ('history_type', models.CharField(choices=[('+', 'Created'), ('~', 'Changed'), ('-', 'Deleted')], max_length=1)),
                ('agent', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='approvals.agent')),
                ('history_user', models.ForeignKey(db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('proposal', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='approvals.proposal')),
            ],
            options={
                'verbose_name': 'historical callback event',
                'verbose_name_plural': 'historical callback events',
                'ordering': ('-history_date', '-history_id'),
                'get_latest_by': ('history_date', 'history_id'),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.RunPython(first_records, migrations.RunPython.noop, elidable=True),
    ]
