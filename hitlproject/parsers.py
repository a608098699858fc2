import json

from rest_framework import exceptions
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    """DRF's strict JSON parser (no NaN or Infinity) that also refuses absurd nesting and text
    that is not text."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from error
        try:
            # A lone surrogate (a "\ud800" escape) is valid JSON but not text: no database
            # column or UTF-8 response can hold it.
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            raise exceptions.ParseError(
                "JSON parse error - contains an unpaired surrogate (\\ud800-\\udfff)."
            ) from error
        # Nor is a NUL character ("\u0000") in a key: PostgreSQL stores none, and a key is
        # echoed in errors ("Unknown field") that are stored for idempotent replays. (In a
        # value, the field that holds it refuses it, with a message of its own.)
        if _nul_in_a_key(data):
            raise exceptions.ParseError("JSON parse error - a key contains a NUL character.")
        return data


def _nul_in_a_key(value) -> bool:
    if isinstance(value, dict):
        return any("\x00" in key or _nul_in_a_key(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_nul_in_a_key(item) for item in value)
    return False
