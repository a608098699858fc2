from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def agents_of_moves(apps, schema_editor):
    """Each move's agent: that of the proposal it is of."""
    Proposal = apps.get_model("approvals", "Proposal")
    CountedMove = apps.get_model("policies", "CountedMove")
    CountedMove.objects.update(
        agent_id=Subquery(Proposal.objects.filter(pk=OuterRef("proposal_id")).values("agent_id")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0025_rules_version_agents_accounts"),
        ("policies", "0011_rules_version_brand_guidelines"),
    ]

    operations = [
        migrations.AddField(
            model_name="countedmove",
            name="agent_id",
            field=models.BigIntegerField(
                help_text="The agent whose proposal it is: a reason names only its reader's own.",
                null=True,
            ),
        ),
        migrations.RunPython(agents_of_moves, migrations.RunPython.noop),
    ]
