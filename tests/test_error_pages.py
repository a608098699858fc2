"""Refused and failed requests in the console: a page in its look that says what happened and
offers a way back, and one line in the log for a refusal (a server error keeps its
traceback)."""

import io
import logging
import sys
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.test import Client, RequestFactory
from django.urls import reverse

from hitlproject import error_pages
from hitlproject.log_filters import RefusalsOnOneLine
from tests.factories import evaluated


def proposal_page(proposal) -> str:
    return "http://testserver" + reverse("admin:approvals_proposal_change", args=[proposal.pk])


def note(page) -> str:
    return page.content.decode().split('id="error-message">')[1].split("</p>")[0]


@pytest.fixture
def console_output() -> Iterator[io.StringIO]:
    """What the platform's console handler (LOGGING in settings) writes, as a person running
    the web server sees it."""
    [handler] = [
        handler
        for handler in logging.getLogger().handlers
        if any(isinstance(f, RefusalsOnOneLine) for f in handler.filters)
    ]
    output = io.StringIO()
    previous = handler.setStream(output)
    yield output
    handler.setStream(previous)


def test_a_refused_action_says_why_in_the_consoles_look_with_a_way_back(login, console_output):
    proposal = evaluated()

    page = login("auditor").post(
        reverse("admin:approvals_proposal_approve", args=[proposal.pk]),
        {"note": ""},
        HTTP_REFERER=proposal_page(proposal),
    )

    assert page.status_code == 403
    text = page.content.decode()
    assert "HITL approvals" in text and "<h1>Not allowed</h1>" in text
    assert note(page) == "Your role does not allow this."
    assert f'<a href="{proposal_page(proposal)}" id="back-link">' in text
    assert f'<a href="{reverse("admin:index")}" id="home-link">Console home</a>' in text
    assert 'id="logout-form"' in text  # the console's own page, the person still logged in
    logged = console_output.getvalue()
    assert logged.splitlines() == [
        f"Forbidden (Permission denied): /admin/approvals/proposal/{proposal.pk}/approve/"
    ]
    assert "Traceback" not in logged


def test_a_bad_request_says_what_was_wrong_and_logs_one_line(login, console_output):
    page = login("operator").get("/admin/approvals/proposal/", {"q": "brand\x00"})

    assert page.status_code == 400
    assert "<h1>Bad request</h1>" in page.content.decode()
    assert note(page) == "The query contains a NUL character."
    assert console_output.getvalue().splitlines() == [
        "The query contains a NUL character.: /admin/approvals/proposal/"
    ]


def test_a_page_that_does_not_exist_says_so_and_reveals_no_url_patterns(login):
    page = login("operator").get("/no-such-page/")

    assert page.status_code == 404
    text = page.content.decode()
    assert "<h1>Not found</h1>" in text and note(page) == "There is no such page."
    assert "tried" not in text and "api/v1" not in text
    assert 'id="home-link"' in text


def test_the_way_back_leads_only_to_the_consoles_own_pages(login):
    proposal = evaluated()
    page = login("auditor").post(
        reverse("admin:approvals_proposal_approve", args=[proposal.pk]),
        {"note": ""},
        HTTP_REFERER="https://elsewhere.example/",
    )

    assert page.status_code == 403
    assert "elsewhere.example" not in page.content.decode()
    assert 'id="back-link"' not in page.content.decode()


def test_a_form_posted_after_its_session_changed_says_to_reload(demo_world):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(get_user_model().objects.get(username="operator"))
    proposal = evaluated()

    page = browser.post(
        reverse("admin:approvals_proposal_approve", args=[proposal.pk]),
        {"note": ""},
        HTTP_REFERER=proposal_page(proposal),
    )

    assert page.status_code == 403
    assert "<h1>Form expired</h1>" in page.content.decode()
    assert "reload the page and try again" in note(page)
    assert 'id="back-link"' in page.content.decode()
    assert proposal.decisions.count() == 0


def test_a_server_error_has_the_consoles_look_and_keeps_its_traceback_in_the_log(
    console_output,
):
    page = error_pages.server_error(RequestFactory().get("/admin/approvals/proposal/"))

    assert page.status_code == 500
    text = page.content.decode()
    assert "HITL approvals" in text and "<h1>Something went wrong</h1>" in text
    assert 'id="home-link"' in text

    try:
        raise RuntimeError("the database went away")
    except RuntimeError:
        logging.getLogger("django.request").error(
            "Internal Server Error: %s",
            "/admin/",
            exc_info=sys.exc_info(),
            extra={"status_code": 500},
        )
    logged = console_output.getvalue()
    assert "Internal Server Error: /admin/" in logged
    assert "Traceback" in logged and "RuntimeError: the database went away" in logged


@pytest.mark.parametrize(
    "handler, status",
    [
        (error_pages.bad_request, 400),
        (error_pages.permission_denied, 403),
        (error_pages.not_found, 404),
    ],
)
def test_the_api_is_answered_in_json_not_with_a_page(handler, status):
    request = RequestFactory().get("/api/v1/anything/")
    request.user = AnonymousUser()
    answer = handler(request, Exception("internal detail"))

    assert answer.status_code == status
    assert answer["Content-Type"] == "application/json"
    assert "internal detail" not in answer.content.decode()
