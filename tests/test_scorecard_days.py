"""An agent's scorecard counts over the days asked for, on its console page as in the API: a
whole number from 1 to 365 in plain digits, 30 unless asked. Anything else is a 400 saying so:
the page showed 30 days for ``?days=abc``, ``0``, ``-5`` or ``100000``, as if asked for."""

import pytest
from django.urls import reverse

from approvals.models import Agent
from tests.factories import evaluated

TAKES = "a whole number from 1 to 365, in plain digits (0-9), such as 7, 30 or 90"


def scorecard_page(agent: Agent) -> str:
    return reverse("admin:approvals_agent_change", args=[agent.pk])


@pytest.mark.parametrize("days", ["abc", "0", "-5", "100000", "366", "+7", "٣", "7.5"])
def test_days_the_scorecard_does_not_take_are_a_400_saying_what_it_takes(login, optimizer, days):
    agent = Agent.objects.get(name="optimizer")
    page = login("operator").get(scorecard_page(agent), {"days": days})
    assert page.status_code == 400
    assert page.context["message"] == (
        f"“{days}” is not a number of days the scorecard counts over: give {TAKES}."
    )
    # The API refuses the same, in its own error shape.
    answer = optimizer.get("/api/v1/scorecard/", {"days": days})
    assert answer.status_code == 400, answer.content
    assert list(answer.json()) == ["days"]


def test_days_given_twice_are_a_400_and_given_empty_are_not_asked(login, optimizer):
    """Given empty, as the API takes any optional parameter given empty: not asked, 30."""
    agent = Agent.objects.get(name="optimizer")
    operator = login("operator")
    page = operator.get(scorecard_page(agent) + "?days=7&days=90")
    assert page.status_code == 400
    assert page.context["message"] == (
        f"The scorecard's days are given 2 times: give them once, {TAKES}."
    )
    assert optimizer.get("/api/v1/scorecard/?days=7&days=90").status_code == 400
    for query in ["", "?days="]:
        page = operator.get(scorecard_page(agent) + query)
        assert "Scorecard: proposals made in the last 30 days" in page.text
        answer = optimizer.get("/api/v1/scorecard/" + query)
        assert "(the last 30 days)" in answer.json()["counted"]


def test_a_long_value_is_shown_cut(login):
    agent = Agent.objects.get(name="optimizer")
    page = login("operator").get(scorecard_page(agent), {"days": "9" * 5000})
    assert page.status_code == 400
    assert page.context["message"].startswith(f"“{'9' * 20}…” is not a number of days")


@pytest.mark.parametrize("days, shown", [("1", "1 day"), ("7", "7 days"), ("045", "45 days")])
def test_days_it_takes_are_counted_over_as_the_api_counts(login, optimizer, days, shown):
    evaluated()
    agent = Agent.objects.get(name="optimizer")
    page = login("operator").get(scorecard_page(agent), {"days": days})
    assert page.status_code == 200
    assert f"Scorecard: proposals made in the last {shown}" in page.text
    assert page.context["days"] == int(days)
    answer = optimizer.get("/api/v1/scorecard/", {"days": days})
    # The API's words as the console's: "the last 1 day", not "the last 1 days".
    assert f"(the last {shown})" in answer.json()["counted"]
