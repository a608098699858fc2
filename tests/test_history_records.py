"""A proposal's history holds, field for field, what happened to it: written without the ORM
(the values of a row just inserted are taken as written for its records), each record is what
django-simple-history would have recorded, on either database, alone or in a batch."""

import pytest
from django.db import connection, transaction
from django.utils import timezone

from approvals.models import Agent, Proposal
from audit.actors import Actor
from audit.history import history_manager, history_records, history_rows, rows_insert
from tests.conftest import reallocation

pytestmark = pytest.mark.django_db

TRACKED = [field.attname for field in Proposal.history.model.tracked_fields]


def recorded(proposal: Proposal) -> list:
    return list(proposal.history.order_by("history_id"))


def as_row(obj) -> dict:
    return {name: getattr(obj, name) for name in TRACKED}


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_a_new_proposals_records_are_what_it_was_submitted_as_and_routed_to(optimizer, batch):
    bodies = [reallocation("150.00"), reallocation("280.00", external_ref="second")]
    if batch:
        answer = optimizer.post("/api/v1/proposals/batch/", bodies, format="json")
        assert answer.status_code == 200, answer.content
        ids = [item["proposal"]["id"] for item in answer.json()]
    else:
        ids = []
        for body in bodies:
            answer = optimizer.post("/api/v1/proposals/", body, format="json")
            assert answer.status_code == 201, answer.content
            ids.append(answer.json()["id"])

    for index, proposal_id in enumerate(ids):
        proposal = Proposal.objects.get(pk=proposal_id)
        submitted, routed = recorded(proposal)
        # As routed: the proposal's row as it was written, every field.
        assert as_row(routed) == as_row(proposal)
        assert (routed.history_type, routed.history_actor_kind) == ("~", "system")
        assert routed.history_actor == "policy-engine"
        # As submitted: what the agent sent, before the engine had a say.
        # Of a batch, which: its history read "submitted" alone, as if it came on its own.
        said = f"submitted in a batch of 2 items (index {index})" if batch else "submitted"
        assert (submitted.history_type, submitted.history_change_reason) == ("+", said)
        assert (submitted.history_actor_kind, submitted.history_actor) == ("agent", "optimizer")
        assert submitted.history_agent_id == proposal.agent_id
        assert submitted.status == "submitted" and submitted.evaluated_at is None
        differs = {name for name in TRACKED if getattr(submitted, name) != getattr(proposal, name)}
        assert differs, "the routing changed nothing?"
        for name in ("payload", "rationale", "supporting_data", "created_at", "account_id"):
            assert getattr(submitted, name) == getattr(proposal, name), name
        assert submitted.history_date == routed.history_date == proposal.created_at


@pytest.mark.parametrize("count", [3, 60], ids=["insert", "copy"])  # COPY above 50 rows
def test_records_taken_as_written_are_the_records_simple_history_would_make(demo_world, count):
    """The same proposals recorded twice, once through simple-history's own records and once
    from the values just written: the two sets of records hold the same values."""
    agent = Agent.objects.get(name="optimizer")
    account = agent.accounts.get()
    history = history_manager(Proposal)
    actor = Actor.for_agent(agent)
    now = timezone.now()
    with transaction.atomic():
        proposals = [
            Proposal(
                agent=agent,
                account=account,
                action_type="budget_reallocation",
                payload={"from_campaign": "brand-search", "to_campaign": "generic-search",
                         "amount": f"{amount}.00"},
                rationale="A move.",
                supporting_data={"cpa": [1.5, 2], "note": "ünïcode"},
                confidence=0.8,
                summary=f"Move {amount}.00",
                magnitude=f"{amount}.000000",
                magnitude_label=f"{amount}.00 USD",
                amount=f"{amount}.00",
                created_at=now,
                updated_at=now,
            )
            for amount in range(10, 10 + count)
        ]  # fmt: skip
        written = rows_insert(Proposal, proposals, ids=True)
        proposals[0].rationale = "Changed after it was written."

        fast = history_rows(history, proposals, actor=actor, date=now, update=True, written=written)
        slow = rows_insert(
            history.model, history_records(history, proposals, actor=actor, date=now, update=True)
        )
        transaction.set_rollback(True)

    assert [dict(zip(slow.columns, row, strict=True)) for row in slow.rows] == [
        dict(zip(slow.columns, row, strict=True)) for row in fast
    ]
    assert fast[0][slow.columns["rationale"]] == "Changed after it was written."
    assert connection.vendor in ("postgresql", "sqlite")
