import json
import math
import re
import sys
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django import forms
from django.forms.fields import InvalidJSONInput

from hitlproject.periods import describe_duration


def _integer(text: str) -> int:
    limit = sys.get_int_max_str_digits()
    if limit and len(text.lstrip("-")) > limit:
        raise forms.ValidationError(f"A number has more than {limit} digits.", code="invalid")
    return int(text)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise forms.ValidationError(f"Too large a number: {text[:40]}", code="invalid")
    return number


def _constant(name: str):
    raise forms.ValidationError(f"{name} is not a number JSON can hold.", code="invalid")


class StoredJSONDecoder(json.JSONDecoder):
    """JSON as a database column stores it and Python reads it: no NaN or Infinity, no number
    too large for a float, no integer past Python's digit limit (whose ValueError would be a
    500). Each is refused with a message that says which."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("parse_int", _integer)
        kwargs.setdefault("parse_float", _finite_float)
        kwargs.setdefault("parse_constant", _constant)
        super().__init__(**kwargs)


class IndentedJSONField(forms.JSONField):
    """JSON in a textarea, laid out for a person to read and edit."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 10, "cols": 60}))
        kwargs.setdefault("decoder", StoredJSONDecoder)
        super().__init__(**kwargs)

    def to_python(self, value):
        try:
            parsed = super().to_python(value)
        except RecursionError as error:
            raise forms.ValidationError("Nested too deeply.", code="invalid") from error
        try:
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            raise forms.ValidationError(
                "Contains an unpaired surrogate (\\ud800-\\udfff).", code="invalid"
            ) from error
        return parsed

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except (RecursionError, forms.ValidationError):  # echoed as typed, with the error
            return InvalidJSONInput(data)

    def prepare_value(self, value):
        if isinstance(value, InvalidJSONInput):
            return value
        text = json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # echo text that is not text as escapes, not as a 500
            text = json.dumps(value, ensure_ascii=True, indent=2, cls=self.encoder)
        return text


# A count, with commas between thousands ("1,000") and an optional decimal point ("1.5"),
# and its unit: parts of a duration as a policy owner types them ("1 day", "36 hours").
_PART = re.compile(
    r"((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)\s*(week|day|hour|minute|second)s?", re.IGNORECASE
)
# Between parts: a space, a comma or "and" ("1 day 2 hours", "1 day, 2 hours and 30 minutes").
_BETWEEN_PARTS = re.compile(r"\s*,\s*(?:and\s+)?|\s+(?:and\s+)?", re.IGNORECASE)
_UNIT_SECONDS = {"week": 604_800, "day": 86_400, "hour": 3_600, "minute": 60, "second": 1}
_LONGEST_SECONDS = Decimal(timedelta.max.days) * 86_400 + 86_399
# Any count past the longest duration overflows alike; capped there, a count of a million
# digits cannot take the arithmetic past what a Decimal holds (an error, not a form's).
_PAST_LONGEST = _LONGEST_SECONDS + 1


def seconds_in_words(text: str) -> Decimal | None:
    """The exact number of seconds ``text`` says in words ("1.5 days", "1 week and 2 days"),
    or None if it does not say a duration in words."""
    text, position, seconds = text.strip(), 0, Decimal(0)
    while True:
        part = _PART.match(text, position)
        if part is None:
            return None
        count = min(Decimal(part[1].replace(",", "")), _PAST_LONGEST)
        seconds += count * _UNIT_SECONDS[part[2].lower()]
        if part.end() == len(text):
            return seconds
        between = _BETWEEN_PARTS.match(text, part.end())
        if between is None:
            return None
        position = between.end()


class WindowField(forms.DurationField):
    """A duration as a policy owner reads and types it: "1 day", "36 hours", "90 minutes",
    "2 weeks", "1 day and 2 hours", "1.5 days" (to the nearest second), and, as Django writes
    one, "1 12:00:00" or ISO 8601's "P1DT12H"; not the form's "1 00:00:00" for a day. A number
    without a unit ("10") is refused: Django reads it as seconds, nobody typing it means that."""

    default_error_messages = {
        "invalid": "Enter a duration such as “90 minutes”, “36 hours” or “7 days”.",
        # Past what a timedelta holds (Django's own says "The number of days must be between
        # -999999999 and 999999999."): far past any window's bound.
        "overflow": "Far too long: enter a duration such as “90 minutes”, “36 hours” or “7 days”.",
    }

    def prepare_value(self, value):
        if isinstance(value, timedelta):
            said = describe_duration(value)
            # In words only when they read back as this very duration: not one with a fraction
            # of a second (words round it off), nor a negative one stored past the form.
            try:
                if self.to_python(said) == value:
                    return said
            except forms.ValidationError:
                pass
            return super().prepare_value(value)
        return value

    def to_python(self, value):
        if value in self.empty_values or isinstance(value, timedelta):
            return super().to_python(value)
        value = str(value)
        if not value.isascii():
            # Digits of other scripts ("٣ days") read as numbers to Python, not to the person
            # reading the policy after: the API refuses them too.
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        seconds = seconds_in_words(value)
        if seconds is None:
            if ":" not in value and not value.strip().lstrip("+-").startswith("P"):
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
            return super().to_python(value)
        if seconds > _LONGEST_SECONDS:
            raise forms.ValidationError(
                self.error_messages["overflow"].format(
                    min_days=timedelta.min.days, max_days=timedelta.max.days
                ),
                code="overflow",
            )
        return timedelta(seconds=int(seconds.to_integral_value(ROUND_HALF_UP)))


# A number as a person writes one in the console: the ASCII digits, an optional sign and at
# most one decimal point. Python's Decimal() and int() also read other scripts' digits
# ("٩٥"), full-width ones ("９５"), underscores ("9_5") and exponents ("1e2") as numbers:
# 95 from "9_5" is not what the person reading the policy after sees typed.
PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
# A whole number, and as Django's IntegerField takes one: "2", or "2.0".
PLAIN_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.0*)?")


def number_box(*, whole: bool = False) -> forms.TextInput:
    """A text box for a number: a browser's number box rewrites what is typed before the
    form sees it (Chromium takes "９５" and "9_5" as 95) or sends nothing for what it cannot
    read ("٩٥", which the form then took for an empty ceiling), so nothing could say so. A
    phone still offers its keypad of digits."""
    return forms.TextInput(attrs={"size": 12, "inputmode": "numeric" if whole else "decimal"})


def _refuse_unless_plain(pattern: re.Pattern, value, message: str) -> None:
    """Refuse typed text (not a number the code gave) unless ``pattern`` reads it whole."""
    if isinstance(value, str) and value.strip() and not pattern.fullmatch(value.strip()):
        raise forms.ValidationError(message, code="plain")


class PlainDecimalField(forms.DecimalField):
    """A decimal number as written in the digits 0–9, with an optional sign and at most one
    decimal point; anything else is refused, saying so."""

    default_error_messages = {
        "plain": "Enter a number in the digits 0–9, with a point for decimals (such as 12.5).",
    }

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("widget", number_box())
        super().__init__(**kwargs)

    def to_python(self, value):
        _refuse_unless_plain(PLAIN_NUMBER, value, self.error_messages["plain"])
        return super().to_python(value)


class PlainIntegerField(forms.IntegerField):
    """A whole number as written in the digits 0–9, with an optional sign; anything else is
    refused, saying so."""

    default_error_messages = {"plain": "Enter a whole number in the digits 0–9 (such as 2)."}

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("widget", number_box(whole=True))
        super().__init__(**kwargs)

    def to_python(self, value):
        _refuse_unless_plain(PLAIN_WHOLE_NUMBER, value, self.error_messages["plain"])
        return super().to_python(value)


class PercentField(PlainDecimalField):
    """A share stored as a fraction (0.95) that a person types and reads as a percentage, as
    a policy's ceilings are: 95 for 95%, from 0 to 100, to a tenth of a percent."""

    default_error_messages = {
        "plain": "Enter a percentage in the digits 0–9, with a point for decimals (95 or 95.5).",
        "out_of_range": "Enter a percentage from 0 to 100 (95 for 95%).",
        "too_precise": "Give at most one decimal place (95.5 for 95.5%).",
    }

    def prepare_value(self, value):
        if isinstance(value, Decimal):
            return f"{(value * 100).normalize():f}"
        return value

    def to_python(self, value):
        percent = super().to_python(value)
        if percent is None:
            return None
        if not percent.is_finite():  # "NaN" cannot be compared (a 500), "Infinity" is no share
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        if not 0 <= percent <= 100:
            raise forms.ValidationError(self.error_messages["out_of_range"], code="out_of_range")
        if percent.normalize().as_tuple().exponent < -1:
            raise forms.ValidationError(self.error_messages["too_precise"], code="too_precise")
        return percent / 100
