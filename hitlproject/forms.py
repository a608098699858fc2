import json

from django import forms
from django.forms.fields import InvalidJSONInput


class IndentedJSONField(forms.JSONField):
    """JSON in a textarea, laid out for a person to read and edit."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 10, "cols": 60}))
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
        except RecursionError:
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
