"""A proposal's kill switch findings are its switch's, engaged in the run that found them:
a switch released after the proposal was routed and then engaged again on the same scope
(the same switch or another) is not the one that sent it to a person, though its finding
names it alike ("the kill switch on account demo"). Its page said that switch "is engaged",
the finding as recorded, with the first outage's reason, while the one that held it had been
released; and said nothing of the second, engaged since."""

from django.urls import reverse

from approvals.models import ProposalStatus
from tests.conftest import bid_adjustment
from tests.factories import evaluated
from tests.test_kill_switch_names import on_demo, read, released


def why_it_is_here(operator, proposal) -> str:
    page = read(operator.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])))
    return page.split("Why it is here:")[1].split("What optimizer says")[0].strip()


def test_a_switch_engaged_again_after_the_one_that_routed_it_was_released_is_not_that_one(
    login,
):
    first = on_demo("First outage.")
    bid = evaluated(bid_adjustment("2.08"))
    assert bid.status == ProposalStatus.PENDING_REVIEW
    released(first)
    on_demo("Second outage.")
    operator = login("operator")

    why = why_it_is_here(operator, bid)

    assert "The kill switch on account demo is engaged: First outage." not in why, why
    assert (
        "The kill switch on account demo was engaged when it was routed: First outage. "
        "Released since."
    ) in why, why


def test_the_same_switch_engaged_again_is_not_the_run_that_routed_it(login):
    switch = on_demo("First outage.")
    bid = evaluated(bid_adjustment("2.08"))
    released(switch)
    switch.engaged, switch.reason = True, "Second outage."
    switch.save()
    operator = login("operator")

    why = why_it_is_here(operator, bid)

    assert (
        "The kill switch on account demo was engaged when it was routed: First outage. "
        "Released since."
    ) in why, why
