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
        return data
