"""A proposal's page is read as of one moment: an execution committed while the page was
being read made it say "Approved" in its heading above an attempt that had "Succeeded", with
the ledger's figures from before it ran."""

import re
import threading

import pytest
from django.db import connection, transaction
from django.urls import reverse

from approvals import admin as approvals_admin
from approvals.models import ProposalStatus
from executors.runner import proposal_execute
from tests.conftest import bid_adjustment
from tests.factories import evaluated

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_page_read_while_its_proposal_executed_shows_it_executed_throughout(
    demo_world, login, monkeypatch
):
    with monkeypatch.context() as patch:  # no execution task: only the executor below runs it
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        proposal = evaluated(bid_adjustment("2.12"))  # 6%: approved by its policy
    assert proposal.status == ProposalStatus.APPROVED
    reading = approvals_admin.proposal_states
    executed = []

    def states_while_it_executes(shown, **read_with):
        """Its states are read after its heading and before its executions: the executor
        commits then, once, from another connection."""
        if not executed:

            def execute() -> None:
                try:
                    executed.append(proposal_execute(proposal_id=proposal.pk).status)
                finally:
                    connection.close()  # this thread's own

            worker = threading.Thread(target=execute)
            worker.start()
            worker.join(timeout=30)
        return reading(shown, **read_with)

    monkeypatch.setattr(approvals_admin, "proposal_states", states_while_it_executes)

    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))

    assert executed == [ProposalStatus.EXECUTED]
    text = page.content.decode()
    status = re.search(r'<span id="proposal-status" data-status="(\w+)"[^>]*>([^<]*)<', text)
    assert status.groups() == ("executed", "Executed")  # it read "approved", "Approved"
    executions = text[text.index('id="proposal-executions"') :]
    assert "Succeeded" in executions
    assert "brand-search bid 2.12" in text[text.index('id="proposal-states"') :]
