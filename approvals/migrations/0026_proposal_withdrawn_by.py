from django.db import migrations, models
from django.utils import timezone

BATCH = 1000


def withdrawn_by_from_history(apps, schema_editor):
    """Who withdrew each proposal withdrawn before this column: its history's withdrawing
    record names the actor (an agent, or a person for the agent). Each proposal so filled
    gets a history record of it, as every change of a proposal has, by the system, saying
    where the value came from."""
    Proposal = apps.get_model("approvals", "Proposal")
    HistoricalProposal = apps.get_model("approvals", "HistoricalProposal")
    ids = list(Proposal.objects.filter(status="withdrawn").values_list("pk", flat=True))
    now = timezone.now()
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        by, latest = {}, {}
        for record in HistoricalProposal.objects.filter(id__in=chunk).order_by("history_id"):
            if record.status == "withdrawn":
                kind = {"agent": "agent", "user": "reviewer"}.get(record.history_actor_kind)
                by.setdefault(record.id, kind)
            latest[record.id] = record
        records = []
        for proposal in Proposal.objects.filter(pk__in=[pk for pk, kind in by.items() if kind]):
            proposal.withdrawn_by = by[proposal.pk]
            proposal.save(update_fields=["withdrawn_by"])
            record = latest[proposal.pk]
            record.history_id = None
            record.withdrawn_by = proposal.withdrawn_by
            record.history_date = now
            record.history_type = "~"
            record.history_change_reason = "who withdrew it, read from its history"
            record.history_actor_kind, record.history_actor = "system", "migration"
            record.history_agent_id = record.history_user_id = None
            records.append(record)
        HistoricalProposal.objects.bulk_create(records)


class Migration(migrations.Migration):

    dependencies = [
        ('approvals', '0025_rules_version_agents_accounts'),
    ]

    operations = [
        migrations.AddField(
            model_name='historicalproposal',
            name='withdrawal_note',
            field=models.TextField(blank=True, help_text='What the reviewer who withdrew it told its agent, if anything.'),
        ),
        migrations.AddField(
            model_name='historicalproposal',
            name='withdrawn_by',
            field=models.CharField(blank=True, choices=[('agent', 'Its agent'), ('reviewer', 'A reviewer, for its agent')], help_text='Who withdrew it, if it was withdrawn: its agent, or a reviewer for it.', max_length=8),
        ),
        migrations.AddField(
            model_name='proposal',
            name='withdrawal_note',
            field=models.TextField(blank=True, help_text='What the reviewer who withdrew it told its agent, if anything.'),
        ),
        migrations.AddField(
            model_name='proposal',
            name='withdrawn_by',
            field=models.CharField(blank=True, choices=[('agent', 'Its agent'), ('reviewer', 'A reviewer, for its agent')], help_text='Who withdrew it, if it was withdrawn: its agent, or a reviewer for it.', max_length=8),
        ),
        migrations.RunPython(withdrawn_by_from_history, migrations.RunPython.noop),
    ]
