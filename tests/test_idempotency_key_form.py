"""An Idempotency-Key is 1 to 255 printable ASCII characters: the API refuses any other, the
client refuses it before sending, as the API would, and the MCP server tells the model so."""

import hitl_client
import httpx
import pytest

from approvals.models import Proposal
from tests.conftest import bid_adjustment
from tests.test_mcp import refusal, run_agent

URL = "/api/v1/proposals/"
REFUSED = {"Idempotency-Key": ["Must be 1 to 255 printable ASCII characters."]}


@pytest.mark.parametrize("key", ["été", "ключ", "bid\u00a01", "x" * 256])
def test_a_key_outside_printable_ascii_is_a_400_and_records_nothing(optimizer, key):
    """Header values travel as bytes read as Latin-1: "été" written in UTF-8 arrived as
    "Ã©tÃ©" and was taken, "ключ" arrived with control characters and was refused as not
    printable; the same key read differently by a proxy or another client's retry would
    have proposed twice."""
    answer = optimizer.post(URL, bid_adjustment(), format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert answer.status_code == 400
    assert answer.json() == REFUSED
    assert not Proposal.objects.exists()


@pytest.mark.parametrize("key", ["ключ", "run 7\nstep 3", "x" * 256])
def test_the_client_refuses_such_a_key_before_sending_as_the_api_does(key):
    """Nothing listens at the address: the refusal comes before anything is sent. Before,
    "ключ" raised UnicodeEncodeError and a line break a ConnectionFailed."""
    client = hitl_client.Client(base_url="http://127.0.0.1:9", api_key="hitl_x_y")
    with client, pytest.raises(hitl_client.ValidationFailed) as refused:
        client.propose(
            "bid_adjustment",
            "demo",
            {"campaign": "brand-search", "new_bid": "2.12"},
            rationale="r",
            confidence=0.5,
            idempotency_key=key,
        )
    assert refused.value.errors == REFUSED


@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
def test_the_mcp_server_tells_the_model_its_key_is_refused(web_server, demo_world):
    """A model picks its own idempotency_key; one with letters outside ASCII is a refusal
    it can mend, naming the key, not an encoding error."""

    async def agent(session):
        return await refusal(
            session,
            "propose_action",
            action_type="bid_adjustment",
            account="demo",
            payload={"campaign": "brand-search", "new_bid": "2.12"},
            rationale="CPC below target.",
            confidence=0.8,
            idempotency_key="enchère-1",
        )

    said = run_agent(web_server, demo_world["agents"]["optimizer"], agent)
    assert "Idempotency-Key: Must be 1 to 255 printable ASCII characters." in said
    assert not Proposal.objects.exists()


def test_two_idempotency_key_headers_are_a_400_through_the_web_server(web_server, demo_world):
    """Through the Procfile's web server (ASGI), which hands Django both: before, Django
    joined them into the one key "run-7,run-8" and proposed under it."""
    answer = httpx.post(
        f"{web_server}{URL}",
        json=bid_adjustment("2.40"),
        headers=[
            ("Authorization", f"Bearer {demo_world['agents']['optimizer']}"),
            ("Idempotency-Key", "run-7"),
            ("Idempotency-Key", "run-8"),
        ],
        timeout=30,
    )
    assert answer.status_code == 400
    assert answer.json() == {"Idempotency-Key": ["Send one Idempotency-Key header, not several."]}
    assert not Proposal.objects.exists()
    # One header holding a comma is one key.
    answer = httpx.post(
        f"{web_server}{URL}",
        json=bid_adjustment("2.40"),
        headers={
            "Authorization": f"Bearer {demo_world['agents']['optimizer']}",
            "Idempotency-Key": "run-7,run-8",
        },
        timeout=30,
    )
    assert answer.status_code == 201
