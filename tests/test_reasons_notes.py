"""The notes above a proposal's reasons (what happened to it since its agent made it) as an
operator reads them on its page and an agent in ``verdict.reasons``: each true note kept,
newest first, and a long run of re-assessments counted past the newest few."""

from approvals.services.proposals import (
    REASSESSMENTS_LISTED,
    reasons_after,
)

VERDICT = ["A 14.0% change exceeds the 10.0% auto-execute ceiling."]


def reassessed(n: int) -> str:
    return f"Re-assessed after #{n} executed: brand-search's bid is {n}.00. Now: 3.0% more."


def test_a_hold_naming_a_kill_switch_reason_keeps_its_owners_words_when_re_assessed():
    """A policy owner's reason may itself say "Now:"; only a re-assessment's own "Now: …"
    part gives way to a later assessment (helper-140 saw the hold cut to its first
    sentence, and "A person must approve it again." lost)."""
    hold = (
        "Held back before executing: the kill switch on everything is engaged: Tracking "
        "outage. Now: only people decide. A person must approve it again."
    )
    reasons = reasons_after(reassessed(7), [hold, *VERDICT], reassessed=True)
    assert reasons == [reassessed(7), hold, *VERDICT]


def test_an_earlier_re_assessment_keeps_its_change_and_gives_way_to_the_latest_figures():
    reasons = reasons_after(reassessed(8), [reassessed(7), *VERDICT], reassessed=True)
    assert reasons == [
        reassessed(8),
        "Re-assessed after #7 executed: brand-search's bid is 7.00.",
        *VERDICT,
    ]


def test_past_the_newest_few_re_assessments_the_earlier_ones_are_counted_not_listed():
    """A reallocation waiting on a busy campaign is re-assessed at every change that lands
    there, and every history record copies its reasons: they list the newest five, and say
    how many more there were."""
    reasons = list(VERDICT)
    for n in range(1, 9):
        reasons = reasons_after(reassessed(n), reasons, reassessed=True)
    listed = [r for r in reasons if r.startswith("Re-assessed after")]
    assert len(listed) == REASSESSMENTS_LISTED == 5
    assert listed[0] == reassessed(8)
    assert listed[-1] == "Re-assessed after #4 executed: brand-search's bid is 4.00."
    assert reasons[5:] == [
        "Re-assessed earlier too, not listed here: 3 (each in its history).",
        *VERDICT,
    ]
    again = reasons_after(reassessed(9), reasons, reassessed=True)
    assert again[5:] == [
        "Re-assessed earlier too, not listed here: 4 (each in its history).",
        *VERDICT,
    ]


def test_an_edit_stays_listed_however_many_re_assessments_follow_it():
    edit = "Edited before approval to: move 140.00 USD/day from brand-search to generic-search."
    reasons = [edit, *VERDICT]
    for n in range(1, 8):
        reasons = reasons_after(reassessed(n), reasons, reassessed=True)
    # Newest first: the count of the re-assessments left out says they came after the edit.
    assert reasons[5:] == [
        "Re-assessed earlier too, not listed here: 2 (each in its history).",
        edit,
        *VERDICT,
    ]
