"""A proposal's page follows it while it is under way (approved, executing): the platform
moves it on with nobody acting, and the page puts itself as it then reads in place once its
status changes, keeping what it said above it. The browser side is tested in test_browser.py;
here, what the page and its status answer say."""

import re

from django.test import Client
from django.urls import reverse

from approvals.services.decisions import proposal_approve
from executors.runner import proposal_execute
from tests.factories import evaluated


def follows(page) -> str | None:
    """The status URL the page follows, if it follows one."""
    found = re.search(r'id="follow-status" hidden data-status="(\w+)" data-url="([^"]+)"', page)
    return found and found.group(2)


def test_an_approved_proposals_page_follows_it_until_it_has_executed(login, operators):
    proposal = evaluated()
    operator = login("operator")
    page_url = reverse("admin:approvals_proposal_change", args=[proposal.pk])
    assert follows(operator.get(page_url).text) is None  # waiting for a person: nothing moves

    proposal_approve(proposal_id=proposal.pk, reviewer=operators[0])
    page = operator.get(page_url).text
    status_url = follows(page)
    assert status_url == reverse("admin:approvals_proposal_status", args=[proposal.pk])
    # The page it reads again, once the status changes, to show it as it then reads; and the
    # attempts it shows, which it follows too.
    assert f'data-page="{page_url}" data-proposal="{proposal.pk}"' in page
    assert 'data-attempts="0" data-last-attempt=""' in page
    assert operator.get(status_url).json() == {
        "status": "approved",
        "label": "Approved",
        "attempts": 0,
        "last_attempt": "",
    }

    proposal_execute(proposal_id=proposal.pk)
    assert operator.get(status_url).json() == {
        "status": "executed",
        "label": "Executed",
        "attempts": 1,
        "last_attempt": "succeeded",
    }
    assert follows(operator.get(page_url).text) is None  # final: nothing more to follow


def test_the_status_answers_who_may_read_the_proposal_and_nobody_else(login, demo_world):
    proposal = evaluated()
    url = reverse("admin:approvals_proposal_status", args=[proposal.pk])

    assert login("auditor").get(url).json()["status"] == "pending_review"
    assert (
        login("auditor").get(reverse("admin:approvals_proposal_status", args=[999999])).status_code
        == 404
    )
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
