import codecs
import json
import sys
from collections import Counter

from django.utils.http import parse_header_parameters
from rest_framework import exceptions
from rest_framework.parsers import JSONParser
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
        _check_sent_as_utf8(media_type, parser_context or {})
        decoded = codecs.getreader("utf-8")(stream)
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


def _check_sent_as_utf8(media_type: str | None, parser_context: dict) -> None:
    """Refuse (415) a body that is not JSON's own bytes: compressed (``Content-Encoding``),
    or said to be in a charset other than UTF-8, the one JSON is exchanged in (RFC 8259,
    8.1). Read in the charset it names (as DRF would), the same bytes become other text than
    a gateway, a log or the agent's own retry reads: UTF-8 "café" said to be latin-1 was
    recorded as "cafÃ©", and UTF-7 can spell a quote where a reader of UTF-8 sees none; a
    charset Python does not know was read as UTF-8 without a word; gzip was a parse error
    about byte 0x8b."""
    request = parser_context.get("request")
    coding = request.headers.get("Content-Encoding", "") if request is not None else ""
    if coding.strip().lower() not in ("", "identity"):
        raise exceptions.UnsupportedMediaType(
            media_type,
            detail=f"The body is sent with Content-Encoding {_quoted(coding)}, which the API "
            "does not take: send the JSON as it is, uncompressed.",
        )
    _, params = parse_header_parameters(media_type or "")
    charset = params.get("charset")
    if charset is None:
        return
    try:
        known = codecs.lookup(charset).name
    except LookupError:
        known = None
    if known != "utf-8":
        raise exceptions.UnsupportedMediaType(
            media_type,
            detail=f"The body is said to be in charset {_quoted(charset)}; JSON is read in "
            "UTF-8 alone: send it in UTF-8, saying charset=utf-8 or no charset.",
        )


def _quoted(value: str) -> str:
    return json.dumps(value if len(value) <= 60 else value[:60] + "…", ensure_ascii=False)


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
