"""Banned patterns are a policy owner's regular expressions, matched against text an agent
writes: a pattern that backtracks (``(a|aa|aaa)*(b|c)`` on "aaaa…") would hold the web process
for years under ``re``. A pattern's searches of a proposal's texts are bounded in all (the
``regex`` library's timeout); a text not checked in time waits for a person, saying why, and
every pattern Python takes is still taken."""

import time

import pytest
import regex
from django.core.exceptions import ValidationError

from approvals.models import ProposalStatus
from policies.models import BrandGuidelines
from tests.conftest import creative, creative_batch
from tests.factories import evaluated

BACKTRACKS = "(a|aa|aaa)*(b|c)"


def guidelines(patterns: str) -> None:
    rules = BrandGuidelines.objects.get(account__external_id="demo")
    rules.banned_patterns = patterns
    rules.full_clean()
    rules.save()


def test_a_pattern_that_backtracks_sends_the_creative_to_a_person_and_checks_the_rest(
    demo_world,
):
    guidelines(f"{BACKTRACKS}\n\\d+\\s*% off")

    proposal = evaluated(
        creative_batch(
            creative(body="a" * 60),  # the pattern tries every way to split the a's
            creative(headline="Now 50 % off everything"),
        )
    )

    assert proposal.status == ProposalStatus.PENDING_REVIEW
    reasons = proposal.verdict_reasons
    assert (
        f"The body of creative 1 was not checked against the banned pattern /{BACKTRACKS}/, whose "
        "searches took longer than 0.1 s in all by this text (it backtracks: its repeats need "
        "bounds), so a person reads it."
    ) in reasons
    # Not tried again on the texts after it (each would wait as long), and said so.
    assert (
        f"The headline of creative 2 was not checked against the banned pattern /{BACKTRACKS}/, "
        "whose searches took longer than 0.1 s in all on the texts before it (it backtracks: "
        "its repeats need bounds), so a person reads it."
    ) in reasons
    # The other pattern still found what it bans: an unbounded repeat is no reason to refuse.
    assert any(
        "headline of creative 2 uses the banned pattern /\\d+\\s*% off/" in reason
        and "«50 % off»" in reason
        for reason in reasons
    )


def a_run_each_search_takes_a_while_on() -> str:
    """A run of a's the backtracking pattern takes 20 ms or more to search, well within a
    search's 0.1 s (each a more nearly doubles it)."""
    for length in range(10, 40):
        started = time.monotonic()
        regex.search(BACKTRACKS, "a" * length, timeout=5)
        if time.monotonic() - started >= 0.02:
            return "a" * length
    raise AssertionError("the pattern backtracks no more")


def test_a_batch_whose_every_text_takes_just_under_a_search_bound_is_checked_for_0_1_s_in_all(
    demo_world, optimizer
):
    """Bounded each search alone, 150 texts each taking 20-90 ms held the agent's submission
    for seconds (3 s to 14 s) and none of them was said to be unchecked. Bounded in all, the
    pattern's time runs out a few texts in, and the last text says it was not checked."""
    guidelines(BACKTRACKS)
    run = a_run_each_search_takes_a_while_on()
    batch = creative_batch(*[creative(headline=run, body=run, cta=run) for _ in range(50)])

    answer = optimizer.post("/api/v1/proposals/", batch, format="json")

    assert answer.status_code == 201, answer.content
    assert answer.json()["status"] == ProposalStatus.PENDING_REVIEW
    unchecked = [
        reason
        for reason in answer.json()["verdict"]["reasons"]
        if "was not checked against" in reason
    ]
    assert unchecked[-1].startswith(
        "The call to action of creative 50 was not checked against the banned pattern"
    ), unchecked


@pytest.mark.parametrize("pattern", ["(unclosed", "a{2,1}", "*starts with a repeat"])
def test_a_pattern_the_matcher_cannot_read_is_refused_when_saved(demo_world, pattern):
    with pytest.raises(ValidationError) as refused:
        guidelines(f"\\d+% off\n{pattern}")

    (message,) = refused.value.message_dict["banned_patterns"]
    assert message.startswith(f"“{pattern}” is not a valid pattern: ")
    assert BrandGuidelines.objects.get(account__external_id="demo").banned_patterns == ""
