import json

from rest_framework import exceptions
from rest_framework.parsers import JSONParser

# Deeper than any request the API documents; bounded so that nothing after parsing recurses
# past Python's limit.
MAX_DEPTH = 64


class SafeJSONParser(JSONParser):
    """DRF's strict JSON parser (no NaN or Infinity) that also refuses absurd nesting and text
    that is not text."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from error
        _check_shape(data)
        try:
            # A lone surrogate (a "\ud800" escape) is valid JSON but not text: no database
            # column or UTF-8 response can hold it.
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            raise exceptions.ParseError(
                "JSON parse error - contains an unpaired surrogate (\\ud800-\\udfff)."
            ) from error
        return data


def _check_shape(data) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH``, and a NUL character ("\\u0000") in a key:
    PostgreSQL stores none, and a key is echoed in errors ("Unknown field") that are stored
    for idempotent replays. (In a value, the field that holds it refuses it, with a message of
    its own.) Walked without recursion, however deep the input."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list) and depth > MAX_DEPTH:
            raise exceptions.ParseError(
                f"JSON parse error - nested deeper than {MAX_DEPTH} levels."
            )
        if isinstance(value, dict):
            if any("\x00" in key for key in value):
                raise exceptions.ParseError("JSON parse error - a key contains a NUL character.")
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
