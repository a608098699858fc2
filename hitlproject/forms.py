import json
import math
import re
import sys
from datetime import timedelta

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


_IN_WORDS = re.compile(r"\s*(\d[\d,]*)\s*(second|minute|hour|day)s?\s*", re.IGNORECASE)


class WindowField(forms.DurationField):
    """A duration as a policy owner reads and types it: "1 day", "36 hours", "90 minutes"
    (and, as Django writes one, "1 12:00:00"), not the form's "1 00:00:00" for a day."""

    default_error_messages = {
        "invalid": "Enter a duration such as “90 minutes”, “36 hours” or “7 days”.",
    }

    def prepare_value(self, value):
        if isinstance(value, timedelta):
            said = describe_duration(value)
            return said if said != str(value) else super().prepare_value(value)
        return value

    def to_python(self, value):
        if isinstance(value, str) and not value.isascii():
            # Digits of other scripts ("٣ days") read as numbers to Python, not to the person
            # reading the policy after: the API refuses them too.
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        words = _IN_WORDS.fullmatch(value) if isinstance(value, str) else None
        if words is None:
            return super().to_python(value)
        count, unit = int(words[1].replace(",", "")), words[2].lower()
        try:
            return timedelta(**{f"{unit}s": count})
        except OverflowError:
            raise forms.ValidationError(
                self.error_messages["overflow"].format(
                    min_days=timedelta.min.days, max_days=timedelta.max.days
                ),
                code="overflow",
            ) from None
