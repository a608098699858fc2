"""An administrator deletes a policy while an agent's submission is being routed by it: one
of them goes first, and the other is told so (the submission to send again, the deletion that
the policy now has a proposal), never a server error. A proposal a task routes (the stall
sweep's evaluation, an execution's re-routing) is routed again by the policies left."""

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from approvals.models import Agent, Proposal, ProposalStatus
from approvals.services.proposals import proposal_evaluate
from audit.actors import Actor, acting_as
from executors.runner import proposal_execute
from ledger.models import Campaign
from policies.models import Policy
from tests.conftest import reallocation, sessions_waiting_for_a_lock, wait_until
from tests.factories import evaluated, submitted

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite runs one writer at a time"
)

PAUSE = {"campaign": "display-retarget", "status": "paused"}


def status_change(agent_client: APIClient):
    return agent_client.post(
        "/api/v1/proposals/",
        {
            "action_type": "status_change",
            "account": "demo",
            "payload": PAUSE,
            "rationale": "Pause it.",
            "confidence": 0.5,
        },
        format="json",
    )


@pytest.fixture
def optimizers_policy(transactional_db, demo_world) -> Policy:
    with acting_as(Actor.system("test")):
        return Policy.objects.create(
            name="Optimizer's status changes",
            action_type="status_change",
            agent=Agent.objects.get(name="optimizer"),
            always_review=True,
        )


def asked_while_held(hold: Callable, ask: Callable, *, waits: bool = True):
    """``ask()``'s answer (or the error a server error raises in the test client), asked in a
    thread of its own while another transaction has done ``hold(cursor)`` and not committed:
    if it ``waits`` for that transaction, which then commits; else within 10 s, before the
    other transaction ends (None if it did not answer by then)."""
    holder = connections.create_connection("default")
    holder.set_autocommit(False)
    answers: list = []

    def asking() -> None:
        try:
            answers.append(ask())
        except Exception as error:
            answers.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=asking)
    try:
        with holder.cursor() as cursor:
            hold(cursor)
        thread.start()
        if waits:
            wait_until(lambda: sessions_waiting_for_a_lock() == 1)
            holder.commit()
        else:
            thread.join(timeout=10)
            if thread.is_alive():
                answers.append(None)
    finally:
        holder.rollback()
        holder.close()
        thread.join()
    return answers[0]


def test_a_submission_routed_by_a_policy_deleted_meanwhile_is_sent_again(
    optimizers_policy, agent_client
):
    answer = asked_while_held(
        # The administrator's deletion, not yet committed.
        lambda cursor: cursor.execute(
            f"DELETE FROM {Policy._meta.db_table} WHERE id = %s", [optimizers_policy.pk]
        ),
        lambda: status_change(agent_client("optimizer")),
    )

    assert not isinstance(answer, Exception), answer
    assert answer.status_code == 503
    assert "send it again" in answer.json()["detail"]
    assert not Proposal.objects.exists()

    again = status_change(agent_client("optimizer"))
    assert again.status_code == 201
    assert again.json()["verdict"]["policy"]["name"] == "Status changes"  # the one left


def test_a_policy_deleted_while_it_routes_a_submission_is_kept_for_the_proposal(
    optimizers_policy, agent_client
):
    routed = status_change(agent_client("optimizer"))
    assert routed.json()["verdict"]["policy"] is not None
    other = Policy.objects.create(name="Spare", action_type="status_change", always_review=True)
    Proposal.objects.filter(pk=routed.json()["id"]).update(verdict_policy=other)

    columns = [field.column for field in Proposal._meta.concrete_fields if not field.primary_key]
    copied = [
        "%s" if column == "verdict_policy_id" else connection.ops.quote_name(column)
        for column in columns
    ]
    root = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    admin = Client()
    admin.force_login(root)

    def routing(cursor) -> None:
        """A submission under way: it holds the policy that routes it, writes its proposal."""
        cursor.execute(
            f"SELECT id FROM {Policy._meta.db_table} WHERE id = %s FOR KEY SHARE",
            [optimizers_policy.pk],
        )
        cursor.execute(
            f"INSERT INTO {Proposal._meta.db_table} "
            f"({', '.join(map(connection.ops.quote_name, columns))}) "
            f"SELECT {', '.join(copied)} FROM {Proposal._meta.db_table} WHERE id = %s",
            [optimizers_policy.pk, routed.json()["id"]],
        )

    answer = asked_while_held(
        routing,
        lambda: admin.post(
            reverse("admin:policies_policy_delete", args=[optimizers_policy.pk]),
            {"post": "yes", "change_reason": "Not needed any more."},
        ),
    )

    assert not isinstance(answer, Exception), answer
    assert answer.status_code == 200
    assert "Cannot delete policy" in answer.content.decode()
    assert Policy.objects.filter(pk=optimizers_policy.pk).exists()


def test_a_deletion_refused_for_want_of_permission_takes_no_lock(optimizers_policy, login):
    """Anyone signed in to the console could post to a delete address and have the row locked
    (FOR UPDATE) before Django refused them: an operator with no right to delete a policy
    waited on, and then held, the lock a submission routed by it needs."""
    operator = login("operator")

    answer = asked_while_held(
        # A submission routed by it, not yet committed.
        lambda cursor: cursor.execute(
            f"SELECT id FROM {Policy._meta.db_table} WHERE id = %s FOR KEY SHARE",
            [optimizers_policy.pk],
        ),
        lambda: operator.post(
            reverse("admin:policies_policy_delete", args=[optimizers_policy.pk]),
            {"post": "yes", "change_reason": "Tidying up."},
        ),
        waits=False,
    )

    assert answer is not None, "the refused deletion waited for the submission's lock"
    assert answer.status_code == 403
    assert Policy.objects.filter(pk=optimizers_policy.pk).exists()


def deleting(policy: Policy) -> Callable:
    """An administrator's deletion of ``policy``, not yet committed."""
    return lambda cursor: cursor.execute(
        f"DELETE FROM {Policy._meta.db_table} WHERE id = %s", [policy.pk]
    )


def test_a_stalled_proposal_routed_as_its_policy_is_deleted_is_routed_by_those_left(
    optimizers_policy,
):
    """The stall sweep's evaluation recorded the policy it read without holding it: one
    deleted at that moment failed its commit (IntegrityError), the proposal left submitted."""
    proposal = submitted(
        {
            "action_type": "status_change",
            "account": "demo",
            "payload": PAUSE,
            "rationale": "Pause it.",
            "confidence": 0.5,
        }
    )
    # As an earlier release left it: written, not yet routed.
    Proposal.objects.filter(pk=proposal.pk).update(
        status=ProposalStatus.SUBMITTED, verdict_policy=None, verdict_policy_version=None
    )

    answer = asked_while_held(
        deleting(optimizers_policy), lambda: proposal_evaluate(proposal_id=proposal.pk)
    )

    assert not isinstance(answer, Exception), answer
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    assert proposal.verdict_policy.name == "Status changes"  # the one left
    assert not Policy.objects.filter(pk=optimizers_policy.pk).exists()


def test_a_re_routing_before_executing_as_its_policy_is_deleted_is_routed_by_those_left(
    transactional_db, demo_world, monkeypatch
):
    """An approved reallocation whose source's budget moved is re-assessed before it runs,
    and sent to a person by the policy that now decides it: recorded without holding it, a
    policy deleted at that moment failed the attempt's commit (IntegrityError)."""
    # No execution task: the test's own attempt is the one that runs it, not a worker's
    # (the session's, started by an earlier test, ran it first in a full run).
    with monkeypatch.context() as patch:
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        proposal = evaluated(reallocation("90.00"))  # 9%: the engine approves it
    assert proposal.status == ProposalStatus.APPROVED
    with acting_as(Actor.system("test")):
        optimizers = Policy.objects.create(
            name="Optimizer's reallocations",
            action_type="budget_reallocation",
            agent=Agent.objects.get(name="optimizer"),
            auto_execute_max_magnitude=Decimal("0.10"),
        )
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("800.00"))

    answer = asked_while_held(
        deleting(optimizers), lambda: proposal_execute(proposal_id=proposal.pk)
    )

    assert not isinstance(answer, Exception), answer
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    assert proposal.verdict_policy.name == "Budget reallocations"  # the one left
    assert proposal.verdict_reasons[0].startswith("Re-routed to a person before executing")
    assert not Policy.objects.filter(pk=optimizers.pk).exists()
