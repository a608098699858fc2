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


def enum_of(schema: dict, component: str, field: str) -> list:
    """The values a field of a component takes, as the schema names them."""
    spec = schema["components"]["schemas"][component]["properties"][field]
    refs = [spec, *spec.get("oneOf", []), *spec.get("allOf", [])]
    return [
        value
        for ref in refs
        if "$ref" in ref
        for value in schema["components"]["schemas"][ref["$ref"].split("/")[-1]]["enum"]
    ]


def test_the_schema_names_the_values_of_every_vocabulary_an_answer_uses(schema):
    """A feedback record's kind, a verdict's or a decision's outcome, an execution's status
    and a rejection's reason code had been "type: string": an agent's developer could not
    learn from the schema that feedback comes as withdrawn, failed or superseded."""
    assert enum_of(schema, "FeedbackOutput", "kind") == [
        "approved",
        "approved_with_edits",
        "rejected",
        "expired",
        "superseded",
        "withdrawn",
        "failed",
        "sent_to_run_again",
        "executed",
        "outcome",
        "sent_back",
    ]
    reasons = [
        "off_brand",
        "wrong_signal",
        "contradicts_strategy",
        "too_aggressive",
        "factual_error",
        "other",
    ]
    assert enum_of(schema, "FeedbackOutput", "reason_code") == [*reasons, ""]
    assert enum_of(schema, "DecisionOutput", "reason_code") == [*reasons, ""]
    assert enum_of(schema, "DecisionOutput", "outcome") == ["approve", "reject"]
    assert enum_of(schema, "VerdictOutput", "outcome") == ["auto_approve", "review", "block"]
    assert enum_of(schema, "DryRunOutput", "outcome") == ["auto_approve", "review", "block"]
    assert enum_of(schema, "ExecutionOutput", "status") == ["running", "succeeded", "failed"]
    assert "superseded" in enum_of(schema, "ProposalOutput", "status")


def test_every_query_parameter_says_what_it_does(schema):
    """An agent's developer reads the parameters in the schema: ``since`` filtered on
    created_at with nothing saying so, and an agent syncing what changed since its last look
    (as ``updated_at`` would) missed every proposal decided in between."""
    undescribed = [
        f"{method.upper()} {path} ?{parameter['name']}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query" and not parameter.get("description")
    ]
    assert undescribed == []
    since = next(
        parameter
        for parameter in schema["paths"]["/api/v1/proposals/"]["get"]["parameters"]
        if parameter["name"] == "since"
    )
    assert "created_at" in since["description"]
