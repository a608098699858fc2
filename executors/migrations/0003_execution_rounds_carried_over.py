"""Each proposal's webhook request and lease, kept on the proposal until now, become its
execution round (the proposal's fields go in approvals' next migration)."""

from django.db import migrations


def carry_over(apps, schema_editor):
    Proposal = apps.get_model("approvals", "Proposal")
    ExecutionRound = apps.get_model("executors", "ExecutionRound")
    rounds = []
    proposals = Proposal.objects.filter(execution_request__isnull=False).only(
        "pk", "execution_request", "execution_lease_until", "updated_at"
    )
    for proposal in proposals.iterator(chunk_size=2000):
        request = proposal.execution_request
        rounds.append(
            ExecutionRound(
                proposal_id=proposal.pk,
                executor="webhook",
                key=request["key"],
                first_attempt=request["first_attempt"],
                request={
                    name: value
                    for name, value in request.items()
                    if name not in ("key", "first_attempt", "held")
                },
                held=bool(request.get("held")),
                lease_until=proposal.execution_lease_until,
                started_at=proposal.updated_at,
            )
        )
        if len(rounds) >= 2000:
            ExecutionRound.objects.bulk_create(rounds)
            rounds = []
    ExecutionRound.objects.bulk_create(rounds)


def carry_back(apps, schema_editor):
    Proposal = apps.get_model("approvals", "Proposal")
    ExecutionRound = apps.get_model("executors", "ExecutionRound")
    for execution_round in ExecutionRound.objects.filter(executor="webhook").order_by(
        "proposal_id", "first_attempt"
    ):
        Proposal.objects.filter(pk=execution_round.proposal_id).update(
            execution_request={
                **execution_round.request,
                "key": execution_round.key,
                "first_attempt": execution_round.first_attempt,
                "held": execution_round.held,
            },
            execution_lease_until=execution_round.lease_until,
        )
    ExecutionRound.objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0022_proposal_verdict_held_by"),
        ("executors", "0002_execution_rounds"),
    ]

    operations = [migrations.RunPython(carry_over, carry_back)]
