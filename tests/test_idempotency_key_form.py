"""An Idempotency-Key is 1 to 255 printable ASCII characters: the API refuses any other, the
client refuses it before sending, as the API would, and the MCP server tells the model so."""

import http.client
import json
from urllib.parse import urlsplit

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


def test_spaces_at_either_end_of_the_key_are_not_part_of_it(web_server, demo_world):
    """HTTP leaves a header's leading and trailing spaces out of its value (RFC 9110, 5.5), and
    a proxy drops them; the web server kept trailing ones. Before, "run-7 " was a key of its
    own beside "run-7": the same request retried through a proxy that drops the space
    proposed twice, and another request sent under "run-7 " was taken, not a 422."""
    connection = http.client.HTTPConnection(urlsplit(web_server).netloc, timeout=30)

    def propose(key: str, body: dict) -> tuple[int, dict]:
        connection.request(
            "POST",
            URL,
            body=json.dumps(body),
            headers={
                "Authorization": f"Bearer {demo_world['agents']['optimizer']}",
                "Content-Type": "application/json",
                "Idempotency-Key": key,
            },
        )
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())

    status, first = propose("run-7", bid_adjustment("2.40"))
    assert status == 201
    status, again = propose("run-7  ", bid_adjustment("2.40"))
    assert (status, again["id"]) == (201, first["id"])
    status, other = propose("run-7 ", bid_adjustment("2.20"))
    assert status == 422
    assert other["detail"].startswith("This Idempotency-Key was used with a different request")
    assert Proposal.objects.count() == 1
    status, blank = propose("  ", bid_adjustment("2.20"))
    assert (status, blank) == (400, REFUSED)
    connection.close()


def test_the_client_sends_a_key_with_spaces_at_either_end_as_http_reads_it(web_server, demo_world):
    """Before, the client handed "run-7 " to httpx, which refuses such a header: the agent got
    ConnectionFailed, after its retries, for a key it could mend. Now it is the key "run-7", as
    any server or proxy reads it, and a retry under either is the one proposal."""
    client = hitl_client.Client(base_url=web_server, api_key=demo_world["agents"]["optimizer"])
    payload = {"campaign": "brand-search", "new_bid": "2.12"}
    with client:
        first = client.propose(
            "bid_adjustment",
            "demo",
            payload,
            rationale="r",
            confidence=0.5,
            idempotency_key="run-7 ",
        )
        again = client.propose(
            "bid_adjustment",
            "demo",
            payload,
            rationale="r",
            confidence=0.5,
            idempotency_key="run-7",
        )
        with pytest.raises(hitl_client.ValidationFailed) as refused:
            client.propose(
                "bid_adjustment",
                "demo",
                payload,
                rationale="r",
                confidence=0.5,
                idempotency_key="   ",
            )
    assert again.id == first.id
    assert refused.value.errors == REFUSED
    assert Proposal.objects.count() == 1
