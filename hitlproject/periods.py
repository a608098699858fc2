"""A period of days, as the console's reports and the commands take it: from the start of the
first day to the start of the day after the last."""

from datetime import date, datetime, time, timedelta

from django import forms
from django.core.management.base import CommandError
from django.utils import timezone


def midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time()))


class PeriodForm(forms.Form):
    since = forms.DateField(
        initial=lambda: timezone.localdate() - timedelta(days=30),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    until = forms.DateField(
        initial=lambda: timezone.localdate() + timedelta(days=1),
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The day after the last.",
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("since") and cleaned.get("until") and cleaned["until"] <= cleaned["since"]:
            raise forms.ValidationError("The period must end after it starts.")
        return cleaned

    def bounds(self) -> tuple[datetime, datetime]:
        return midnight(self.cleaned_data["since"]), midnight(self.cleaned_data["until"])


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
    return midnight(start), midnight(end)
