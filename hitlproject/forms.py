import json

from django import forms
from django.forms.fields import InvalidJSONInput


class IndentedJSONField(forms.JSONField):
    """JSON in a textarea, laid out for a person to read and edit."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 10, "cols": 60}))
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)
