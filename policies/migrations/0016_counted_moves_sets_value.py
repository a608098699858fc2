from django.db import migrations, models, transaction
from django.db.models import Exists, Max, OuterRef

# The action types that move an amount rather than set a value (``ActionType.sets_values``
# False) when this was written: their moves count for every proposal.
MOVES_AN_AMOUNT = ["budget_reallocation"]
# Moves marked per transaction: the table is never pruned, and one statement over all of it
# would hold every row's lock until it committed, each execution's write of its own move
# waiting meanwhile.
BATCH = 5000


def moves_that_set_values(apps, schema_editor):
    """Each move of a proposal that sets a value (a bid, a budget), as the lifecycle now
    records them: not counted, until it executes, for a proposal setting the same target."""
    Proposal = apps.get_model("approvals", "Proposal")
    CountedMove = apps.get_model("policies", "CountedMove")
    setting = Exists(
        Proposal.objects.filter(pk=OuterRef("proposal_id")).exclude(action_type__in=MOVES_AN_AMOUNT)
    )
    last = CountedMove.objects.aggregate(last=Max("pk"))["last"] or 0
    for start in range(0, last, BATCH):
        with transaction.atomic():
            CountedMove.objects.filter(setting, pk__gt=start, pk__lte=start + BATCH).update(
                sets_value=True
            )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("approvals", "0028_execution_unanswered"),
        ("policies", "0015_windows_apply_from_routing"),
    ]

    operations = [
        migrations.AddField(
            model_name="countedmove",
            name="sets_value",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "Its proposal sets the target's value (not an amount moved): until "
                    "executed, not counted for a proposal setting the same target, since only "
                    "one of them can run."
                ),
            ),
        ),
        migrations.RunPython(moves_that_set_values, migrations.RunPython.noop),
    ]
