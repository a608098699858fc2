"""What the LangChain and OpenAI Agents adapters tell the model of a proposal that may still
execute and that an attempt on its channel may already have carried out: "before then" had
been said with no "then" before it ("Proposal #8 waits for a human decision; …. An attempt
sent to the channel before then got no answer …"). Read from the API's own shape, as the
adapters read it."""

from hitl_client._tools import outcome_report
from hitl_client.models import Proposal

HELD = "Held back before executing: the kill switch on account demo is engaged: An outage."


def proposal(status: str, verdict: dict, execution: dict, **more) -> Proposal:
    return Proposal.from_api(
        {
            "id": 8,
            "status": status,
            "action_type": "bid_adjustment",
            "payload": {"campaign": "brand-search", "new_bid": "2.12"},
            "summary": "bid of brand-search 2.00 → 2.12",
            "verdict": {"required_approvals": 1, **verdict},
            "decisions": [],
            "execution": execution,
            **more,
        }
    )


def test_one_sent_back_to_a_person_says_it_was_before_what_an_attempt_sent_before_then_did():
    held = proposal(
        "pending_review",
        {"outcome": "auto_approve", "reasons": ["Within the ceiling.", HELD],
         "routed_reasons": ["Within the ceiling."]},
        {"status": "failed", "attempt": 1, "error": "HTTP 503", "carried_out": "unknown"},
        review_round=1,
    )  # fmt: skip

    message = outcome_report(held)["message"]

    sent_back = message.index(f"It was approved to run, then sent back to a person: {HELD}")
    assert message.index("An attempt sent to the channel before then got no answer") > sent_back
    assert message.count(HELD) == 1  # why it was sent back, said once
    # An attempt that got no sure answer may have carried it out: not "before it ran".
    assert "before it ran" not in message


def test_one_the_platform_tries_again_says_an_attempt_already_sent_may_have_run():
    retrying = proposal(
        "executing",
        {"outcome": "auto_approve", "reasons": ["Within the ceiling."]},
        {"status": "failed", "attempt": 1, "error": "No answer in time",
         "carried_out": "unknown", "next_attempt_at": "2026-12-07T15:20:00Z"},
    )  # fmt: skip

    message = outcome_report(retrying)["message"]

    assert "before then" not in message
    assert (
        "Attempt 1 failed: No answer in time; the platform tries it again by itself, attempt 2 "
        "being due at 2026-12-07T15:20:00Z. An attempt already sent to the channel got no "
        "answer that says whether the channel carried it out: it may have been." in message
    )


def test_one_whose_next_attempt_a_lowered_hard_ceiling_fails_is_not_said_to_still_run():
    """The platform says first among its reasons that its next attempt fails it (a hard
    ceiling of its policy lowered since): the model read "the platform tries it again by
    itself, attempt 2 being due at …" and "it still may" execute."""
    fails = (
        "The hard ceiling of the policy that routed it refuses it now: A 6.0% change to "
        "brand-search's bid is above the 5.0% hard ceiling of policy “Bid adjustments”. It "
        "fails at its next attempt (due 2026-12-07 15:20:00 UTC) rather than run."
    )
    failing = proposal(
        "executing",
        {"outcome": "auto_approve", "reasons": [fails, "Within the ceiling."]},
        {"status": "failed", "attempt": 1, "error": "HTTP 503", "carried_out": "no",
         "next_attempt_at": "2026-12-07T15:20:00Z"},
    )  # fmt: skip

    message = outcome_report(failing)["message"]

    assert (
        "it has not executed yet, and its next attempt fails it rather than run it, as said "
        f"below. Attempt 1 failed: HTTP 503. {fails} Within the ceiling."
    ) in message
    assert "still may" not in message and "tries it again by itself" not in message
    assert fails in message
