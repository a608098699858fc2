"""The client's example agents (clients/python/examples) run as a user runs them, against the
web server and a real worker: each proposes the reference scenario, the bid change executes,
the reallocation waits until an operator approves it, and the agent reports both executed."""

import os
import subprocess
import sys
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from ledger.models import Campaign
from tests.conftest import REPO, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("celery_worker")]


@pytest.mark.parametrize(
    "example", ["langchain_agent.py", "openai_agents_agent.py", "mcp_agent.py"]
)
def test_the_example_agent_proposes_the_reference_scenario(example, web_server, demo_world):
    env = {
        **os.environ,
        "HITL_BASE_URL": web_server,
        "HITL_API_KEY": demo_world["agents"]["optimizer"],
    }
    agent = subprocess.Popen(
        [sys.executable, str(REPO / "clients" / "python" / "examples" / example)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        waiting = wait_until(
            lambda: Proposal.objects.filter(status=ProposalStatus.PENDING_REVIEW).first()
        )
        assert waiting.action_type == "budget_reallocation"
        operator = get_user_model().objects.get(username="operator")
        proposal_approve(proposal_id=waiting.pk, reviewer=operator)
        output, _ = agent.communicate(timeout=120)
    finally:
        agent.kill()

    print(output)
    assert agent.returncode == 0, output
    assert output.count("Executed. Before:") == 2, output
    # Where to decide it: the waiting proposal's own page, as the README says.
    assert f"{web_server}/admin/approvals/proposal/{waiting.pk}/change/" in output, output
    campaigns = {c.external_id: c for c in Campaign.objects.all()}
    assert campaigns["brand-search"].bid == Decimal("2.12")
    assert campaigns["brand-search"].daily_budget == Decimal("720.00")
    assert campaigns["generic-search"].daily_budget == Decimal("780.00")


def readme_example(line: str) -> str:
    """The first Python block after ``line`` in the client's README, as a user copies it."""
    text = (REPO / "clients" / "python" / "README.md").read_text()
    after = text[text.index(line) :]
    start = after.index("```python\n") + len("```python\n")
    return after[start : after.index("```\n", start)]


def test_the_readme_s_examples_run_as_written_one_after_another(web_server, demo_world):
    """Run in the README's order, the async example proposed brand-search's bid of 2.12 again,
    which the first had set: a 400, as changing nothing. The MCP example named a base_url and
    an api_key it never defined, and awaited outside any coroutine."""
    env = {
        **os.environ,
        "HITL_BASE_URL": web_server,
        "HITL_API_KEY": demo_world["agents"]["optimizer"],
    }

    def run(line: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", readme_example(line)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    reference = run("The reference scenario, against")
    try:
        waiting = wait_until(
            lambda: Proposal.objects.filter(status=ProposalStatus.PENDING_REVIEW).first()
        )
        operator = get_user_model().objects.get(username="operator")
        proposal_approve(proposal_id=waiting.pk, reviewer=operator)
        output, _ = reference.communicate(timeout=120)
    finally:
        reference.kill()
    assert reference.returncode == 0, output
    assert "executed {'brand-search': {'bid': '2.00'}} {'brand-search': {'bid': '2.12'}}" in output
    assert "moved: {'brand-search': {'daily_budget': '720.00'}" in output, output

    for line in ("### Async", "or from Python, with the `mcp` package's own client"):
        example = run(line)
        try:
            output, _ = example.communicate(timeout=120)
        finally:
            example.kill()
        assert example.returncode == 0, output

    assert Campaign.objects.get(external_id="generic-search").bid == Decimal("1.59")
    wait_until(  # the MCP example proposes and leaves it to run
        lambda: Campaign.objects.get(external_id="display-retarget").bid == Decimal("0.85")
    )
