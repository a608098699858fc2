"""What happened after an action executed: operators judge it later, agents report figures,
and the proposal's record ends with it."""

from decimal import Decimal

import pytest
from django.urls import reverse

from executors.runner import proposal_execute
from feedback.models import AGENT_OUTCOMES_PER_PROPOSAL, Feedback, Outcome
from tests.conftest import bid_adjustment
from tests.factories import evaluated


@pytest.fixture
def executed(demo_world):
    proposal = evaluated(bid_adjustment())  # 6%: auto-approved
    return proposal_execute(proposal_id=proposal.pk)


def outcome_url(proposal) -> str:
    return f"/api/v1/proposals/{proposal.pk}/outcome/"


def test_an_operators_outcome_reaches_the_agent_as_feedback(login, optimizer, executed):
    client = login("operator")
    page = reverse("admin:approvals_proposal_change", args=[executed.pk])
    assert 'id="outcome-form"' in client.get(page).text

    response = client.post(
        reverse("admin:approvals_proposal_outcome", args=[executed.pk]),
        {"effect": "hurt", "note": "CPA rose 30% in the week after."},
        follow=True,
    )

    assert "Outcome recorded; optimizer receives it as feedback." in response.text
    assert "CPA rose 30% in the week after." in response.text  # listed on the detail page
    feed = optimizer.get("/api/v1/feedback/").json()["results"]
    assert [(f["proposal"], f["kind"], f["note"]) for f in feed] == [
        (executed.pk, "outcome", "CPA rose 30% in the week after.")
    ]
    assert feed[0]["outcome"]["effect"] == "hurt"
    assert feed[0]["outcome"]["reported_by"] == "user:operator"
    # The console names who reported it as it names who acted (it read "user:operator").
    reported_by = client.get(page).text.split('data-label="Reported by">')[1].split("<")[0]
    assert reported_by == "operator (person)"
    listed = client.get(reverse("admin:feedback_outcome_changelist")).text
    assert "operator (person)" in listed and "user:operator" not in listed
    history = Outcome.objects.get().history.get()
    assert (history.history_actor_kind, history.history_actor) == ("user", "operator")


def test_an_auditor_cannot_report_an_outcome(login, executed):
    client = login("auditor")
    page = client.get(reverse("admin:approvals_proposal_change", args=[executed.pk]))
    assert 'id="outcome-form"' not in page.text
    response = client.post(
        reverse("admin:approvals_proposal_outcome", args=[executed.pk]), {"effect": "hurt"}
    )
    assert response.status_code == 403
    assert not Outcome.objects.exists()


def test_an_agent_reports_figures_and_its_proposal_ends_with_them(optimizer, executed):
    figures = {"metrics": {"clicks_7d": 1840, "cpc_7d": 2.07}, "effect": "improved"}
    response = optimizer.post(outcome_url(executed), figures, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["reported_by"] == "agent:optimizer"
    proposal = optimizer.get(f"/api/v1/proposals/{executed.pk}/").json()
    assert [(o["effect"], o["metrics"]) for o in proposal["outcomes"]] == [
        ("improved", {"clicks_7d": 1840.0, "cpc_7d": 2.07})
    ]
    assert not Feedback.objects.exists()  # the agent knows what it reported


def test_an_outcome_report_is_safe_to_retry(optimizer, executed):
    body = {"metrics": {"clicks_7d": 1840}}
    first = optimizer.post(outcome_url(executed), body, format="json", HTTP_IDEMPOTENCY_KEY="o-1")
    again = optimizer.post(outcome_url(executed), body, format="json", HTTP_IDEMPOTENCY_KEY="o-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Outcome.objects.count() == 1
    # The same key for another proposal is another request, not a replay of this one.
    other = proposal_execute(proposal_id=evaluated(bid_adjustment("1.53", "generic-search")).pk)
    reused = optimizer.post(outcome_url(other), body, format="json", HTTP_IDEMPOTENCY_KEY="o-1")
    assert reused.status_code == 422
    assert Outcome.objects.count() == 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "metrics"),
        ({"metrics": []}, "metrics"),
        ({"metrics": {"clicks": True}}, "metrics"),
        ({"metrics": {"clicks": "NaN"}}, "metrics"),
        ({"metrics": {"clicks": "many"}}, "metrics"),
        ({"metrics": {"clicks": " 12"}}, "metrics"),
        ({"metrics": {"clicks": "1_000"}}, "metrics"),
        ({"metrics": {"clicks": "١٢"}}, "metrics"),
        ({"metrics": {"": 1}}, "metrics"),
        ({"metrics": {"a\x00b": 1}}, "detail"),  # refused as it is parsed
        ({"metrics": {f"m{n}": n for n in range(51)}}, "metrics"),
        ({"metrics": {"clicks": 1}, "effect": "great"}, "effect"),
        ({"metrics": {"clicks": 1}, "verdict": "great"}, "verdict"),
        ({"metrics": {"clicks": 1}, "note": "x" * 5001}, "note"),
        ({"metrics": {"clicks": 1}, "note": 5}, "note"),  # text, not a number
        # Shown as an empty note to the people who read the proposal.
        ({"metrics": {"clicks": 1}, "note": "\u200b\u2060\u202e"}, "note"),
    ],
)
def test_bad_figures_are_refused_and_change_nothing(optimizer, executed, body, field):
    response = optimizer.post(outcome_url(executed), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Outcome.objects.exists()


def test_an_effect_not_known_is_refused_naming_the_valid_ones(optimizer, executed, agent_client):
    # It read “"positive" is not a valid choice.”: an agent had to find the valid values in
    # the schema. Every choice an agent sends is refused so, as an unknown action type is.
    response = optimizer.post(
        outcome_url(executed), {"metrics": {"clicks": 1}, "effect": "positive"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["effect"] == [
        "“positive” is not a valid choice. Valid choices: improved, no_change, hurt."
    ]
    assert not Outcome.objects.exists()
    listed = agent_client("optimizer").get("/api/v1/proposals/", {"status": "done"})
    assert listed.status_code == 400
    assert listed.json()["status"][0].startswith(
        "“done” is not a valid choice. Valid choices: submitted, pending_review, approved, "
    )
    paused = optimizer.post(
        "/api/v1/proposals/",
        {
            "action_type": "status_change",
            "account": "demo",
            "payload": {"campaign": "brand-search", "status": "stopped"},
            "rationale": "Pause it.",
            "confidence": 0.9,
        },
        format="json",
    )
    assert paused.status_code == 400
    assert "“stopped” is not a valid choice. Valid choices: active, paused." in paused.text


def test_only_an_executed_proposal_of_the_agents_own_has_an_outcome(agent_client, executed):
    waiting = evaluated(bid_adjustment("2.60"))  # 30%: waits for review
    optimizer = agent_client("optimizer")
    early = optimizer.post(outcome_url(waiting), {"metrics": {"clicks": 1}}, format="json")
    assert early.status_code == 409
    assert "is pending review; an outcome is reported once it has executed" in early.text
    others = agent_client("copywriter").post(
        outcome_url(executed), {"metrics": {"clicks": 1}}, format="json"
    )
    assert others.status_code == 404
    assert not Outcome.objects.exists()


def test_an_agent_reports_at_most_so_many_outcomes_on_one_proposal(login, optimizer, executed):
    """A hostile or looping agent could report on its executed proposal without end (6,000 a
    minute under its rate limit): 3,000 reports made its page take 16 s and 8 MB for an
    operator, and its answer in the API as much. Past ``AGENT_OUTCOMES_PER_PROPOSAL`` of its
    own, a report is a 409 that records nothing; a person may still report."""
    Outcome.objects.bulk_create(
        Outcome(
            proposal=executed,
            metrics={"clicks": n},
            reported_by_kind="agent",
            reported_by="optimizer",
        )
        for n in range(AGENT_OUTCOMES_PER_PROPOSAL - 1)
    )
    last = optimizer.post(outcome_url(executed), {"metrics": {"clicks": 1}}, format="json")
    assert last.status_code == 201, last.content

    refused = optimizer.post(outcome_url(executed), {"metrics": {"clicks": 2}}, format="json")

    assert refused.status_code == 409, refused.content
    assert refused.json()["detail"] == (
        f"Proposal #{executed.pk} has {AGENT_OUTCOMES_PER_PROPOSAL} outcomes reported by its "
        f"agent already, the most one proposal takes; nothing was recorded."
    )
    assert Outcome.objects.count() == AGENT_OUTCOMES_PER_PROPOSAL
    said = optimizer.get(f"/api/v1/proposals/{executed.pk}/").json()["outcomes"]
    assert len(said) == AGENT_OUTCOMES_PER_PROPOSAL
    client = login("operator")
    client.post(
        reverse("admin:approvals_proposal_outcome", args=[executed.pk]),
        {"effect": "hurt", "note": "CPA rose."},
    )
    assert Outcome.objects.filter(reported_by_kind="user").count() == 1


@pytest.mark.parametrize(
    "written, kept",
    [
        ("1e-400", "0.0"),  # too small: it was stored as 0.0
        ("99999999999999999999999999999999999999", "1e+38"),  # 38 digits: stored as 1e+38
        ("9007199254740993", "9007199254740992.0"),  # 2**53 + 1: one off
        ("0.1000000000000000000001", "0.1"),
        ('"1e-400"', "0.0"),  # the text of a number, as the client sends a Decimal
        ("1e400", "infinity, which JSON cannot hold"),
    ],
)
def test_a_figure_that_cannot_be_kept_as_written_is_refused_naming_it(
    optimizer, executed, written, kept
):
    """A figure was stored as the float nearest it, which is another figure: 1e-400 read back
    as 0.0, a 38-digit whole number as 1e+38. Payloads' numbers are read as written; a
    metric is kept as written, or refused saying what it would have become."""
    body = f'{{"metrics": {{"clicks_7d": 12, "tiny": {written}}}}}'
    response = optimizer.generic("POST", outcome_url(executed), body, "application/json")

    assert response.status_code == 400, response.content
    [said] = response.json()["metrics"]["tiny"]
    assert said.startswith(f"{written.strip(chr(34))} cannot be kept as written: it would be")
    assert f"read back, as {kept}." in said
    assert not Outcome.objects.exists()


def test_figures_are_read_back_as_the_agent_wrote_them(optimizer, executed):
    """Whole numbers stay whole (1840 was read back as 1840.0), and every figure a float holds
    is read back as the number written, the largest and the smallest among them (spelt as
    the database writes it: PostgreSQL writes 1e+300 out in full, the same number)."""
    written = {
        "clicks_7d": "1840",
        "cpc_7d": "2.07",
        "big": "9007199254740992",
        "huge": "1e+300",
        "small": "5e-324",
        "as_text": '"41.5"',
        "whole_text": '"118"',
    }
    body = '{"metrics": {' + ", ".join(f'"{k}": {v}' for k, v in written.items()) + "}}"
    response = optimizer.generic("POST", outcome_url(executed), body, "application/json")
    assert response.status_code == 201, response.content

    [outcome] = optimizer.get(f"/api/v1/proposals/{executed.pk}/").json()["outcomes"]
    metrics = outcome["metrics"]
    assert {name: Decimal(str(value)) for name, value in metrics.items()} == {
        name: Decimal(value.strip('"')) for name, value in written.items()
    }
    assert all(type(metrics[name]) is int for name in ("clicks_7d", "big", "whole_text"))
    assert all(type(metrics[name]) is float for name in ("cpc_7d", "small", "as_text"))


@pytest.mark.parametrize(
    "name",
    [
        "\u0441tr",  # a Cyrillic "с" before Latin letters
        "ctr\ufe0f",  # a variation selector, drawn as nothing
        "ctr\u3164",  # a Hangul filler, a letter drawn as blank space
        "ctr ",
        " ctr",
        "cost  per click",  # a page draws two spaces as one
    ],
)
def test_a_figure_named_as_it_would_show_as_another_is_refused(optimizer, executed, login, name):
    """An agent reported "ctr" 0.01 and, beside it, a name the proposal's page showed as
    "ctr" too ("ctr 0.01, ctr 0.7"): its reader could not tell which figure was which. A
    name that would show as another one is a 400 naming why, and nothing is recorded."""
    response = optimizer.post(
        outcome_url(executed), {"metrics": {"ctr": 0.01, name: 0.7}}, format="json"
    )

    assert response.status_code == 400, response.content
    [said] = response.json()["metrics"]
    assert said.startswith("Names are 1 to 100 printable characters")
    assert "shown as itself" in said
    assert not Outcome.objects.exists()
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[executed.pk]))
    assert "0.7" not in page.text.split('data-label="Figures">')[-1].split("<")[0]


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("\uff43tr", "“ｃ” (U+FF43 FULLWIDTH LATIN SMALL LETTER C) shows as “c”"),
        ("\U0001d41ctr", "“𝐜” (U+1D41C MATHEMATICAL BOLD SMALL C) shows as “c”"),
    ],
)
def test_a_figure_named_with_a_letter_in_another_ones_dress_is_refused_naming_it(
    optimizer, executed, name, said
):
    """An agent reported "ctr" 0.01 and, beside it, "ｃtr" 0.7 with a full-width "ｃ": the
    proposal's page read "ctr 0.01, ctr 0.7". A 400 naming the letter and what it shows as;
    nothing is recorded."""
    response = optimizer.post(
        outcome_url(executed), {"metrics": {"ctr": 0.01, name: 0.7}}, format="json"
    )

    assert response.status_code == 400, response.content
    assert response.json()["metrics"] == [
        f"Names are each shown as itself: “{name}” holds {said}. Write each as the letter or "
        "digit it shows as."
    ]
    assert not Outcome.objects.exists()


def test_two_figures_whose_names_read_alike_are_refused(optimizer, executed):
    """ "cop" and "сор" (three Cyrillic letters, no word mixing scripts) read alike on the
    proposal's page: a 400 naming both and the letters that differ; nothing is recorded."""
    response = optimizer.post(
        outcome_url(executed),
        {"metrics": {"cop": 0.01, "\u0441\u043e\u0440": 0.7}},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert response.json()["metrics"] == [
        "Names are each shown as itself: “сор” reads as “cop”: its “с” (U+0441 CYRILLIC SMALL "
        "LETTER ES) shows as “c”, “о” (U+043E CYRILLIC SMALL LETTER O) as “o”, “р” (U+0440 "
        "CYRILLIC SMALL LETTER ER) as “p”. Name each so that it reads as itself."
    ]
    assert not Outcome.objects.exists()


def test_figures_named_in_other_scripts_are_taken(optimizer, executed):
    names = ["Klicks (Ελλάδα)", "コンバージョン率", "cost per click", "Café", "CO₂ µg/m³", "Ставки"]
    response = optimizer.post(
        outcome_url(executed),
        {"metrics": {name: number for number, name in enumerate(names)}},
        format="json",
    )
    assert response.status_code == 201, response.content
