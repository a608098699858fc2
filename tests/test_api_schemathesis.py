"""Hostile input over every endpoint of the agent API, generated from its own OpenAPI schema
by schemathesis: no answer is a server error, and every answer is one the schema documents,
in the shape it documents."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import checks

from hitlproject.wsgi import application

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


# The schema is served without a database; the cases run against the test database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture(autouse=True)
def one_connection_for_the_test():
    """Django closes the connection when a request ends; the test's transaction lives on it.
    (Django's own test client does the same as here.)"""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=50,
    database=None,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_gets_a_server_error_or_an_undocumented_answer(case, demo_world):
    key = demo_world["agents"]["optimizer"]
    if isinstance(case.query, dict) and case.query.get("wait") in range(2, 61):
        # A long poll waits for real (test_long_poll.py): a second is enough to check the answer.
        case.query["wait"] = 1
    case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)
