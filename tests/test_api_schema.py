"""What the OpenAPI schema at /api/schema/ tells an agent's developer, in words."""

import inspect

import pytest

from approvals.api import IdempotentAPIView, KeyBoundAPIView
from hitlproject.longpoll import LongPollView
from hitlproject.validation import StrictSerializer

# Base classes whose docstrings are written for the code's readers.
FOR_CODE_READERS = [
    IdempotentAPIView,
    KeyBoundAPIView,
    LongPollView,
    StrictSerializer,
]


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def described(schema: dict) -> dict[str, str]:
    """Every operation's and every component's description, by where it is."""
    found = {
        f"{method.upper()} {path}": operation.get("description", "")
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    found |= {
        name: component.get("description", "")
        for name, component in schema["components"]["schemas"].items()
    }
    return found


def test_no_operation_or_body_is_described_in_a_base_class_s_words_for_the_code(schema):
    """The list of proposals was described as "A POST view whose answer is kept under the
    agent's Idempotency-Key …", a proposal's body as "A serializer that refuses fields it does
    not know", a long poll as "A DRF view whose GET may attach a ``LongPoll`` …"."""
    for_the_code = {inspect.cleandoc(base.__doc__) for base in FOR_CODE_READERS}

    told = {where: text for where, text in described(schema).items() if text in for_the_code}

    assert told == {}
    assert "POST" not in described(schema)["GET /api/v1/proposals/"]
    assert described(schema)["ProposalInputRequest"].startswith(
        "An action on one of the agent's accounts"
    )


def test_endpoints_that_keep_no_answer_say_a_key_used_elsewhere_is_still_a_422(schema):
    for path in ("/api/v1/proposals/{proposal_id}/withdraw/", "/api/v1/policies/evaluate/"):
        description = schema["paths"][path]["post"]["description"]
        assert "a key used on another endpoint is a 422" in description
