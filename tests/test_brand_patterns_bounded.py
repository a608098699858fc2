"""Banned patterns are a policy owner's regular expressions, matched against text an agent
writes: a pattern that backtracks (``(a|aa|aaa)*(b|c)`` on "aaaa…") would hold the web process
for years under ``re``. Each search is bounded (the ``regex`` library's timeout); a text not
checked in time waits for a person, saying why, and every pattern Python takes is still taken."""

import pytest
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
        f"The creative 1 body was not checked against the banned pattern /{BACKTRACKS}/, which "
        "took longer than 0.1 s on this text (it backtracks: its repeats need bounds), so a "
        "person reads it."
    ) in reasons
    # Not tried again on the texts after it (each would wait as long), and said so.
    assert (
        f"The creative 2 headline was not checked against the banned pattern /{BACKTRACKS}/, "
        "which took longer than 0.1 s on an earlier text (it backtracks: its repeats need "
        "bounds), so a person reads it."
    ) in reasons
    # The other pattern still found what it bans: an unbounded repeat is no reason to refuse.
    assert any(
        "creative 2 headline uses the banned pattern /\\d+\\s*% off/" in reason
        and "«50 % off»" in reason
        for reason in reasons
    )


@pytest.mark.parametrize("pattern", ["(unclosed", "a{2,1}", "*starts with a repeat"])
def test_a_pattern_the_matcher_cannot_read_is_refused_when_saved(demo_world, pattern):
    with pytest.raises(ValidationError) as refused:
        guidelines(f"\\d+% off\n{pattern}")

    (message,) = refused.value.message_dict["banned_patterns"]
    assert message.startswith(f"“{pattern}” is not a valid pattern: ")
    assert BrandGuidelines.objects.get(account__external_id="demo").banned_patterns == ""
