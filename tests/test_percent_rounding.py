"""A move's or a magnitude's percentage reads to one decimal, rounded half away from zero as
people and spreadsheets round, computed exactly from the ledger's own figures: a bid moved
from 0.80 to 0.85 (+6.25% exactly) reads "+6.3%" in its summary, its reasons, its console
page, its email and its Slack message, not "+6.2%" (Python's ``:.1f`` rounds ties to even).
A move over a ceiling never reads as the ceiling."""

import re
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from math import floor

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from hypothesis import example, given
from hypothesis import strategies as st

from approvals.action_types.base import change_label, signed_percent
from hitlproject.formats import share_percent
from hitlproject.percentages import round_half_away
from ledger.models import Campaign
from notifications.channels import EmailChannel
from notifications.messages import proposal_messages
from notifications.models import NotificationKind
from notifications.slack import message_blocks
from policies import engine
from policies.models import Policy
from tests.conftest import bid_adjustment
from tests.factories import evaluated
from tests.slack_fake import shown_text


def half_away(value: Fraction, *, signed: bool) -> str:
    """The percentage as a person rounds it by hand: tenths of a percent, halves up in size."""
    tenths = floor(abs(value) * 1000 + Fraction(1, 2))
    sign = "-" if value < 0 else "+" if signed else ""
    return f"{sign}{tenths // 10}.{tenths % 10}%"


ratios = st.fractions(min_value=-10, max_value=10, max_denominator=10**6)
money = st.decimals(min_value="0.01", max_value="100000", places=2)


@given(ratios)
@example(Fraction(1, 16))  # 6.25%
@example(Fraction(-1, 16))
@example(Fraction(1, 2000))  # 0.05%
def test_a_percentage_reads_as_the_exact_one_rounded_half_away_from_zero(value):
    assert engine.rounded_percent(value, signed=True) == half_away(value, signed=True)
    if value >= 0:
        assert engine.format_magnitude(value, "ratio") == half_away(value, signed=False)


@given(money, money)
@example(Decimal("0.80"), Decimal("0.85"))
def test_a_move_between_ledger_figures_reads_as_a_spreadsheet_rounds_it(current, new):
    exact = (Fraction(new) - Fraction(current)) / Fraction(current)
    assert signed_percent(current, new) == half_away(exact, signed=True)
    assert change_label(current, new).split()[1] == half_away(abs(exact), signed=False)
    # Where the move ends in few enough places to be a Decimal, as a spreadsheet's ROUND.
    as_decimal = (new - current) / current * 100
    if Fraction(as_decimal) == exact * 100:
        rounded = as_decimal.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        assert signed_percent(current, new) == f"{rounded:+f}%"


def whole_half_away(value: Fraction) -> str:
    """A share to a whole percent as a person rounds it by hand: halves up in size."""
    whole = floor(abs(value) * 100 + Fraction(1, 2))
    return f"{'-' if value < 0 else ''}{whole}%"


def test_a_half_rounds_away_from_zero_whichever_its_sign():
    assert [round_half_away(n, 2) for n in (-5, -3, -1, 1, 3, 5)] == [-3, -2, -1, 1, 2, 3]
    assert round_half_away(-4, 3) == -1 and round_half_away(4, 3) == 1
    # 1/8 of proposals auto-executed reads as 1/16 of a bid's move does, half away from zero.
    assert share_percent(0.125) == "13%" and share_percent(Decimal("-0.125")) == "-13%"
    assert engine.rounded_percent(Fraction(1, 16)) == "6.3%"
    assert engine.rounded_percent(Fraction(-1, 16), signed=True) == "-6.3%"
    assert share_percent(Decimal("-0.001")) == "-0%"  # as "-0.0%": too small, still a fall


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=10**6))
@example(1, 8)  # 12.5%
@example(29, 200)  # 14.5%: the float 0.145 is a hair under it, read as the decimal it is
@example(1, 200)  # 0.5%
def test_a_share_reads_the_same_whole_percent_as_float_decimal_or_fraction(count, total):
    share = Fraction(count, total)
    shown = whole_half_away(share)
    assert share_percent(share) == shown
    assert share_percent(count / total) == shown
    if (share * 10**6).denominator == 1:
        assert share_percent(Decimal(share.numerator) / share.denominator) == shown


def test_a_share_a_hair_under_a_half_rounds_down_however_fine_the_hair():
    # Past Decimal's 28 digits a division rounded 0.1249…9 up to 0.125, and the share read 13%.
    share = Fraction(10**40 // 8 - 1, 10**40)
    assert share_percent(share) == "12%"
    assert share_percent(-share) == "-12%"
    assert share_percent(Fraction(1, 8)) == "13%"


def figures(text: str) -> list[Decimal]:
    return [Decimal(figure) for figure in re.findall(r"(\d+(?:\.\d+)?)%", text)]


magnitudes = st.fractions(min_value=0, max_value=5, max_denominator=10**6)
ceilings = st.decimals(min_value="0.000001", max_value="5", places=6)


@given(magnitudes, ceilings)
@example(Fraction("0.1225"), Decimal("0.1225"))
@example(Fraction("0.123"), Decimal("0.1225"))  # 12.3% over a ceiling that reads 12.3%
@example(Fraction("0.10000033"), Decimal("0.10"))
def test_a_reason_never_reads_as_over_a_ceiling_it_is_within_nor_the_other_way(magnitude, ceiling):
    label = f"{engine.format_magnitude(magnitude, 'ratio')} of brand-search's daily budget"
    verdict = engine.evaluate(
        engine.Facts(
            action_type="budget_change",
            action_label="budget change",
            magnitude=magnitude,
            magnitude_unit="ratio",
            magnitude_label=label,
            risk_weight=25,
            account_id=1,
            channel="google_ads",
            agent_id=1,
            agent_kind="optimization",
            effects={"brand-search's daily budget": 1 + magnitude},
        ),
        [
            engine.Rule(
                policy_id=1,
                name="Budget changes",
                action_type="budget_change",
                auto_execute_max_magnitude=ceiling,
                cumulative_max_magnitude=ceiling,
            )
        ],
    )
    if magnitude <= ceiling:
        [reason] = verdict.reasons
        size, limit = figures(reason)
        assert " is within " in reason and size <= limit
        return
    if magnitude - Fraction(ceiling) < Fraction(1, 10**8):
        return  # six decimals of a percent tell apart magnitudes further apart than this
    over, cumulative = verdict.reasons
    *size, limit = figures(over)
    assert " exceeds " in over and size[-1] > limit, over
    *_, moved, limit = figures(cumulative)
    assert moved > limit, cumulative
    for hold in verdict.held_by:  # the ceiling exactly as set, the move beside it
        ceiling_said, *_, moved = figures(hold.text)
        assert ceiling_said == ceiling * 100 and moved > ceiling_said, hold.text
    shown = engine.cumulative_figure_text(magnitude, ceiling, timedelta(days=1))
    moved, limit = figures(shown)
    assert moved > limit, shown


@pytest.fixture
def bid_at_80_cents(demo_world):
    Campaign.objects.filter(external_id="brand-search").update(bid=Decimal("0.80"))


def test_a_bid_moved_by_6_25_percent_reads_plus_6_3_everywhere(bid_at_80_cents, mailoutbox):
    policy = Policy.objects.get(name="Bid adjustments")
    policy.auto_execute_max_magnitude = Decimal("0.05")
    policy.save()
    proposal = evaluated(bid_adjustment("0.85"))

    assert proposal.status == "pending_review"
    assert proposal.summary.endswith("0.80 → 0.85 USD (+6.3%)"), proposal.summary
    assert proposal.magnitude_label == "A 6.3% change to brand-search's bid"
    assert proposal.verdict_reasons == [
        "A 6.3% change to brand-search's bid exceeds the 5.0% auto-execute ceiling of "
        "policy “Bid adjustments”."
    ]
    assert proposal.verdict_held_by[0]["text"] == "auto-execute ceiling 5% (this is 6.3%)"
    assert proposal.effects == {"brand-search's bid": "17/16"}

    operator = get_user_model().objects.get(username="operator")
    client = Client()
    client.force_login(operator)
    page = client.get(f"/admin/approvals/proposal/{proposal.pk}/change/").text
    assert "(+6.3%)" in page and "A 6.3% change to brand-search" in page
    assert "6.2%" not in page

    message = proposal_messages([(proposal, NotificationKind.WAITING)], now=timezone.now())[0]
    EmailChannel().send(recipient=operator, message=message, may_decide=True)
    [email] = mailoutbox
    assert "0.80 → 0.85 USD (+6.3%)" in email.body
    assert "Size: A 6.3% change to brand-search's bid\n" in email.body
    assert "6.2%" not in email.body
    slack = shown_text(message_blocks(message, may_decide=True))
    assert "0.80 → 0.85 USD (+6.3%)" in slack and "6.2%" not in slack


def test_a_move_that_rounds_to_its_ceiling_says_by_how_much_it_is_over(demo_world):
    # 30,000 → 33,000.01 is +10.00003%: "A 10.0% change exceeds the 10.0% ceiling" would
    # contradict itself.
    Campaign.objects.filter(external_id="generic-search").update(daily_budget=Decimal("30000"))
    body = bid_adjustment(action_type="budget_change") | {
        "payload": {"campaign": "generic-search", "new_daily_budget": "33000.01"}
    }
    proposal = evaluated(body)
    assert proposal.verdict_reasons == [
        "A 10.0% change to generic-search's daily budget (10.00003%) exceeds the 10.0% "
        "auto-execute ceiling of policy “Budget changes”."
    ]
    assert proposal.verdict_held_by[0]["text"] == "auto-execute ceiling 10% (this is 10.00003%)"
