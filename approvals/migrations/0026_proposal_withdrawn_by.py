from django.db import migrations, models

BATCH = 1000


def withdrawn_by_from_history(apps, schema_editor):
    """Who withdrew each proposal withdrawn before this column: its history's withdrawing
    record names the actor (an agent, or a person for the agent). History is not written for
    this: the column restates what it already holds."""
    Proposal = apps.get_model("approvals", "Proposal")
    HistoricalProposal = apps.get_model("approvals", "HistoricalProposal")
    ids = list(Proposal.objects.filter(status="withdrawn").values_list("pk", flat=True))
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        by = {}
        for proposal_id, kind in (
            HistoricalProposal.objects.filter(id__in=chunk, status="withdrawn")
            .order_by("history_id")
            .values_list("id", "history_actor_kind")
        ):
            by.setdefault(proposal_id, {"agent": "agent", "user": "reviewer"}.get(kind, ""))
        proposals = list(Proposal.objects.filter(pk__in=chunk).only("pk"))
        for proposal in proposals:
            proposal.withdrawn_by = by.get(proposal.pk, "")
        Proposal.objects.bulk_update(proposals, ["withdrawn_by"])


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
