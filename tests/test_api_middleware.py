"""What the agent API and the console each rely on from the middleware: the API sets no cookie,
keeps the security headers and the trailing-slash redirect, answers its errors in JSON and is
not authenticated by a console session; the console keeps CSRF and its login, under the test
client's WSGI-like handler and under ASGI, as the Procfile's web server runs it."""

import json

import requests
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client

from approvals.models import Proposal
from tests.conftest import bid_adjustment, target_cpa_strategy

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def security_headers(response) -> dict:
    return {name: response.headers.get(name) for name in SECURITY_HEADERS}


def test_a_submission_sets_no_cookie_and_keeps_the_security_headers(optimizer):
    response = optimizer.post("/api/v1/proposals/", bid_adjustment(), format="json")

    assert response.status_code == 201
    assert security_headers(response) == SECURITY_HEADERS
    assert not response.cookies  # no session, no CSRF cookie
    assert "Vary" not in response.headers  # nothing read a cookie


def test_a_console_session_does_not_authenticate_the_api(login):
    operator = login("operator")

    response = operator.get("/api/v1/proposals/")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_api_errors_still_answer_in_json(optimizer):
    unknown = optimizer.get("/api/v1/no-such-thing/")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "Not found.", "code": "not_found"}
    assert security_headers(unknown) == SECURITY_HEADERS

    without_slash = optimizer.get("/api/v1/proposals")
    assert without_slash.status_code == 301
    assert without_slash.headers["Location"] == "/api/v1/proposals/"

    unauthenticated = Client().post(
        "/api/v1/proposals/", json.dumps(bid_adjustment()), content_type="application/json"
    )
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["WWW-Authenticate"] == 'Bearer realm="agent-api"'


def test_a_submission_sent_without_the_trailing_slash_is_proposed_not_read_as_a_list(optimizer):
    """A 301 is followed as a GET: the agent was answered 200 with its proposals' list,
    nothing proposed. A 308 has the client send the same POST to the right address."""
    response = optimizer.post("/api/v1/proposals", bid_adjustment(), format="json", follow=True)

    assert response.redirect_chain == [("/api/v1/proposals/", 308)]
    assert response.status_code == 201
    assert response.json()["payload"] == {"campaign": "brand-search", "new_bid": "2.12"}
    assert Proposal.objects.count() == 1


def test_a_withdrawal_sent_without_the_trailing_slash_withdraws(optimizer):
    proposal = optimizer.post("/api/v1/proposals/", target_cpa_strategy(), format="json").json()

    response = optimizer.post(
        f"/api/v1/proposals/{proposal['id']}/withdraw", {"note": "not now"}, format="json"
    )

    assert response.status_code == 308
    assert response.headers["Location"] == f"/api/v1/proposals/{proposal['id']}/withdraw/"
    followed = optimizer.post(response.headers["Location"], {"note": "not now"}, format="json")
    assert followed.json()["withdrawal"] == {"by": "agent", "note": "not now"}


def test_an_agent_on_requests_posting_without_the_slash_gets_its_proposal(web_server, demo_world):
    """As an agent written with requests (which follows redirects) sees it, against the
    Procfile's web process."""
    key = demo_world["agents"]["optimizer"]

    response = requests.post(
        f"{web_server}/api/v1/proposals",
        json=bid_adjustment(),
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "no-slash-1"},
        timeout=30,
    )

    assert [r.status_code for r in response.history] == [308]
    assert response.request.method == "POST"
    assert response.status_code == 201
    assert response.json()["summary"] == "bid of brand-search 2.00 → 2.12 USD (+6.0%)"


def test_the_console_still_refuses_a_form_posted_without_its_token(demo_world):
    credentials = demo_world["users"]["operator"]
    browser = Client(enforce_csrf_checks=True)

    page = browser.post("/admin/login/", {**credentials, "next": "/admin/"})

    assert page.status_code == 403
    assert "Form expired" in page.content.decode()
    assert browser.get("/admin/approvals/proposal/").status_code == 302  # not logged in


def test_under_asgi_the_console_logs_in_and_the_api_answers(demo_world):
    credentials = demo_world["users"]["operator"]
    browser = AsyncClient(enforce_csrf_checks=True)

    page = async_to_sync(browser.get)("/admin/login/")
    assert page.status_code == 200
    assert security_headers(page) == SECURITY_HEADERS
    token = browser.cookies["csrftoken"].value
    logged_in = async_to_sync(browser.post)(
        "/admin/login/",
        {**credentials, "next": "/admin/approvals/proposal/", "csrfmiddlewaretoken": token},
    )
    assert logged_in.status_code == 302, logged_in.content[:500]
    queue = async_to_sync(browser.get)("/admin/approvals/proposal/")
    assert queue.status_code == 200

    agent = AsyncClient()
    key = demo_world["agents"]["optimizer"]
    submitted = async_to_sync(agent.post)(
        "/api/v1/proposals/",
        bid_adjustment(),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert submitted.status_code == 201
    assert submitted.json()["status"] == "approved"
    assert security_headers(submitted) == SECURITY_HEADERS
    assert not submitted.cookies
