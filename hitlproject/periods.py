"""A period of days, as the console's reports and the commands take it: from the start of the
first day to the start of the day after the last."""

from datetime import date, datetime, time, timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils import timezone
from django.utils.functional import lazy

from hitlproject.durations import describe_duration

# A period starts no earlier than this platform's records could, ends by the day after
# tomorrow (``until`` is the day after the last), and spans at most five years: a report
# or an export over more is split into several.
EARLIEST_DAY = date(2000, 1, 1)
LONGEST_PERIOD = timedelta(days=5 * 365 + 1)


def midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time()))


def period_problem(since: date, until: date) -> str | None:
    """What is wrong with a period from ``since`` to ``until`` (the day after the last), in
    words; None if nothing is."""
    latest = timezone.localdate() + timedelta(days=2)
    if until <= since:
        return "The period must end after it starts."
    if since < EARLIEST_DAY:
        return f"The period cannot start before {EARLIEST_DAY:%Y-%m-%d}."
    if until > latest:
        return f"The period cannot end after {latest:%Y-%m-%d} (its last day is tomorrow at most)."
    if until - since > LONGEST_PERIOD:
        return (
            f"A period spans at most {LONGEST_PERIOD.days:,} days (five years); split a longer one."
        )
    return None


class PeriodForm(forms.Form):
    # The days are the platform's (``midnight``), said with their zone: an auditor whose
    # day starts hours from it read the period as their own days.
    since = forms.DateField(
        initial=lambda: timezone.localdate() - timedelta(days=30),
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=lazy(
            lambda: f"From 00:00 {timezone.get_default_timezone_name()} on this day.", str
        )(),
    )
    until = forms.DateField(
        initial=lambda: timezone.localdate() + timedelta(days=1),
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=lazy(
            lambda: (
                "The day after the last: the period ends at 00:00 "
                f"{timezone.get_default_timezone_name()} on this day."
            ),
            str,
        )(),
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("since") and cleaned.get("until"):
            problem = period_problem(cleaned["since"], cleaned["until"])
            if problem:
                raise forms.ValidationError(problem)
        return cleaned

    def bounds(self) -> tuple[datetime, datetime]:
        return midnight(self.cleaned_data["since"]), midnight(self.cleaned_data["until"])

    def days_named(self) -> str:
        return days_named(self.cleaned_data["since"], self.cleaned_data["until"])


def days_named(since: date, until: date) -> str:
    """The days a period covers, as a file of it is named: "2026-12-06" for one day,
    "2026-12-01-to-2026-12-06" for several, its last included (``until`` is the day after
    it). Named by ``since`` and ``until``, "2026-12-06-2026-12-07", one day read as two."""
    last = until - timedelta(days=1)
    return f"{since:%Y-%m-%d}" if last == since else f"{since:%Y-%m-%d}-to-{last:%Y-%m-%d}"


def command_period(since: str, until: str | None) -> tuple[datetime, datetime]:
    """``--since`` and ``--until`` (YYYY-MM-DD; until defaults to tomorrow) as a period."""

    def day(value: str) -> date:
        try:
            return date.fromisoformat(value)
        except ValueError as error:
            raise CommandError(f"Not a date: {value} (use YYYY-MM-DD)") from error

    start = day(since)
    end = day(until) if until else timezone.localdate() + timedelta(days=1)
    if end <= start:
        raise CommandError("--until must come after --since.")
    problem = period_problem(start, end)
    if problem:
        raise CommandError(problem)
    return midnight(start), midnight(end)


class _BoundInWords:
    """A bound on a duration that says itself as the field shows durations ("at least 1
    minute"), not as Python prints a timedelta ("greater than or equal to 0:01:00")."""

    def __call__(self, value: timedelta) -> None:
        if self.compare(value, self.limit_value):  # MinValueValidator's or MaxValueValidator's
            raise ValidationError(
                self.message,
                code=self.code,
                params={
                    "limit_value": describe_duration(self.limit_value),
                    "show_value": describe_duration(value),
                    "value": value,
                },
            )


class DurationAtLeast(_BoundInWords, MinValueValidator):
    message = "At least %(limit_value)s."


class DurationAtMost(_BoundInWords, MaxValueValidator):
    message = "At most %(limit_value)s."
