"""How the console writes its dates and times: its format module (``en/formats.py``, which
Django's own pages use) and, for the sentences, logs and messages that say a time in words,
``console_time``, the same format whatever language is active."""

from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from django.utils import dateformat, timezone

from hitlproject.formats.en.formats import DATETIME_FORMAT
from hitlproject.percentages import percent_figure


def console_time(value: datetime) -> str:
    """A time as the console writes one, in its time zone, named: "2026-12-05 19:31:56 UTC"."""
    return dateformat.format(timezone.localtime(value), DATETIME_FORMAT)


def share_percent(share: float | Fraction | Decimal | None) -> str:
    """A share (2 of 16 auto-executed: 0.125) as the console shows it, a whole percent by the
    policy engine's rule (``percent_figure``), a half away from zero as a person rounds:
    "13%" (a float's own formatting rounds a half to even, "12%"). A float is read by its
    shortest decimal form (0.145 is 0.145, not the binary 0.14499…): a share is a count over
    a count, and its float the nearest to that decimal. "—" for none. The share itself is
    left as it is."""
    if share is None:
        return "—"
    exact = Decimal(repr(share)) if isinstance(share, float) else share
    numerator, denominator = exact.as_integer_ratio()
    return percent_figure(numerator, denominator, digits=0)
