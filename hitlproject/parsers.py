import codecs
import json
import sys
from collections import Counter

from rest_framework import exceptions
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils.json import strict_constant

# Deeper than any request the API documents; bounded so that nothing after parsing recurses
# past Python's limit.
MAX_DEPTH = 64


class SafeJSONParser(JSONParser):
    """DRF's strict JSON parser (no NaN or Infinity) that also refuses absurd nesting, text
    that is not text, and a key given twice in one object (which JSON leaves to the reader:
    Python keeps the last, other readers the first, so a gateway or a log could see another
    action than the one recorded)."""

    def parse(self, stream, media_type=None, parser_context=None):
        decoded = codecs.getreader(get_encoding(parser_context or {}))(stream)
        try:
            data = json.load(
                decoded,
                parse_constant=strict_constant,
                object_pairs_hook=_object,
                parse_float=NumberAsWritten.read,
                parse_int=_whole_number,
            )
        except RecursionError as error:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from error
        except ValueError as error:  # UnicodeDecodeError among them
            raise exceptions.ParseError(f"JSON parse error - {error}") from error
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


class NumberAsWritten(float):
    """A JSON number with a fraction or an exponent: a float as ever, which also keeps how it
    was written, for a field that takes exact figures (money): 2.100000000000000000001 is not
    the float 2.1 to it, nor 1e1 a plain 10."""

    __slots__ = ("written",)

    @classmethod
    def read(cls, text: str) -> "NumberAsWritten":
        number = cls(text)
        number.written = text
        return number


def _whole_number(text: str) -> int:
    """A JSON whole number, refused in words past the digits Python reads in one (whose own
    refusal asks the reader to call ``sys.set_int_max_str_digits()``)."""
    digits = len(text.lstrip("-"))
    if digits > sys.get_int_max_str_digits():
        raise ValueError(
            f"a whole number of {digits:,} digits; none may have more than "
            f"{sys.get_int_max_str_digits():,}."
        )
    return int(text)


def _object(pairs: list[tuple[str, object]]) -> dict:
    data = dict(pairs)
    if len(data) < len(pairs):
        twice = next(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
        raise ValueError(f"the key {json.dumps(twice)} appears twice in one object.")
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
