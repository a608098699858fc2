"""Input bounds shared by the agent API and the action types."""

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_EVEN, Context, Decimal
from functools import cached_property
from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from hitlproject.confusables import describe, representatives, skeleton
from hitlproject.errors import InvalidInput
from hitlproject.parsers import NumberAsWritten
from hitlproject.schema import docstring_for_code_readers

MAX_JSON_DEPTH = 8
MAX_SUPPORTING_DATA_BYTES = 64 * 1024


class ListedChoiceField(serializers.ChoiceField):
    """A choice an agent sends, refused naming the valid ones, as an unknown action type is
    refused with the known ones: DRF's own said only “"positive" is not a valid choice.”,
    and an agent had to read the schema to find improved, no_change and hurt."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        valid = ", ".join(str(value) for value in self.choices)
        self.error_messages["invalid_choice"] = (
            "“{input}” is not a valid choice. Valid choices: "
            + valid.replace("{", "{{").replace("}", "}}")
            + "."
        )


@docstring_for_code_readers
class StrictSerializer(serializers.Serializer):
    """A serializer that refuses fields it does not know, instead of silently dropping them,
    and a number where it takes text (a rationale of 5, which DRF's own text field takes as
    "5"): the agent meant something else, or sent the wrong field. They are told with the
    faults of the fields it knows, in one refusal: a field misspelt beside a blank rationale
    had hidden the rationale until the next try."""

    known_elsewhere: frozenset[str] = frozenset()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)
        faults: dict[str, Any] = {
            name: ["Unknown field."]
            for name in sorted(set(data) - set(self.fields) - self.known_elsewhere)
        }
        faults |= {
            name: [not_text(data[name])]
            for name in self._text_fields
            if name in data and is_number(data[name])
        }
        if not faults:
            return super().to_internal_value(data)
        try:
            super().to_internal_value(data)
        except serializers.ValidationError as error:
            if isinstance(error.detail, Mapping):
                faults = {**error.detail, **faults}
        raise serializers.ValidationError(faults)

    @cached_property
    def _text_fields(self) -> tuple[str, ...]:
        """The fields it takes text in (DRF's ``CharField`` and those made from it: a slug,
        a creative's headline)."""
        return tuple(
            name
            for name, field in self.fields.items()
            if isinstance(field, serializers.CharField) and not field.read_only
        )


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def not_text(number: int | float) -> str:
    """What a text field given a number says: the number as the request wrote it."""
    written = getattr(number, "written", None) or str(number)
    return f'Must be text (a JSON string), not a number: "{written}", not {written}.'


class StrictFloatField(serializers.FloatField):
    """A number, and only a number: ``true`` is not 1.0 here, nor is text other than a JSON
    number's (``float`` took "٠.٥", "0.0_5" and " 0.5 " as numbers, which no amount of the
    API takes). Held as a 64-bit float: a whole number too large for one is refused in words
    (it read "Integer value too large to convert to float"), and -0 is kept as 0 (it was
    stored, and read back to its agent, as -0.0)."""

    default_error_messages = {
        "overflow": "Must be a number a 64-bit float holds (up to about 1.8e308).",
        "not_kept": (
            "{written} cannot be kept as written: it would be stored, and shown to the "
            "reviewer, as {kept}. A number is held as a 64-bit float (about 15 significant "
            "digits, down to about 1e-308); send it rounded to that."
        ),
    }

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or (isinstance(data, str) and not JSON_NUMBER.fullmatch(data)):
            self.fail("invalid")
        value = super().to_internal_value(data) + 0.0  # -0.0 + 0.0 is 0.0
        # As written, not as the float it became: 1.0000…01 (40 digits) is above a maximum
        # of 1 that its float, 1.0, is not, and was stored and shown as 1.0.
        written = data if isinstance(data, str) else getattr(data, "written", None)
        if written is not None and any(mark in written for mark in ".eE"):
            as_written = NumberAsWritten.read(written)
            if (kept := float_kept(as_written)) is not None:
                self.fail("not_kept", written=written, kept=kept)
        return value


# A JSON number (RFC 8259's grammar), as the text of one may write it too.
JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


@extend_schema_field(
    {"oneOf": [{"type": "number"}, {"type": "string", "pattern": f"^{JSON_NUMBER.pattern}$"}]}
)
class FigureField(serializers.Field):
    """A measured figure, kept as the agent wrote it: a JSON number (or the text of one, as
    the Python client sends a ``Decimal``), stored and read back as that number, a whole one
    as a whole number. It is held as JSON readers hold a number, a 64-bit float (I-JSON, RFC
    7493, 2.2): one that this would change (``1e-400`` read as 0.0, a 38-digit whole number
    as 1e+38, ``0.1000000000000000000001`` as 0.1) is refused, saying what it would become,
    not kept as another figure."""

    default_error_messages = {
        "invalid": 'Must be a number (a JSON number, or its text such as "41.5").',
        "not_kept": (
            "{written} cannot be kept as written: it would be stored, and read back, as "
            "{kept}. A figure is held as a JSON reader holds a number (a 64-bit float: about "
            "15 significant digits, sizes up to about 1.8e308 and down to about 1e-308); send "
            "it rounded to that."
        ),
    }

    def to_internal_value(self, data: Any) -> int | float:
        if isinstance(data, bool) or not isinstance(data, int | float | str):
            self.fail("invalid")
        written = getattr(data, "written", None)  # as the request wrote it (its JSON)
        if written is None:
            if isinstance(data, float) and not math.isfinite(data):
                raise serializers.ValidationError("Must be a finite number.")
            written = str(data)
        if isinstance(data, str) and not JSON_NUMBER.fullmatch(data):
            self.fail("invalid")
        if isinstance(data, int) or not any(mark in written for mark in ".eE"):
            whole = int(written)
            try:
                kept = float(whole)
            except OverflowError:
                self.fail("not_kept", written=written, kept="infinity, which JSON cannot hold")
            if kept != whole:
                self.fail("not_kept", written=written, kept=repr(kept))
            return whole
        kept = float(written)
        if not math.isfinite(kept):
            self.fail("not_kept", written=written, kept="infinity, which JSON cannot hold")
        if Decimal(repr(kept)) != Decimal(written):
            self.fail("not_kept", written=written, kept=repr(kept))
        return kept

    def to_representation(self, value: Any) -> Any:
        return value


# What one line of text may not hold: a control character (Unicode's category Cc: CR, LF and
# tab among them) or Unicode's line and paragraph separators.
NOT_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# Every line break Unicode knows (those ``str.splitlines`` splits at), CRLF as one.
_LINE_BREAKS = re.compile("\r\n|[\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def with_lf_line_breaks(text: str) -> str:
    """Text of several lines with each line break a line feed (LF), however it was sent (CRLF,
    CR, a Unicode line or paragraph separator...): a browser sends a textarea's line breaks
    back as CRLF, and text a reviewer left as it was must read as untouched."""
    return _LINE_BREAKS.sub("\n", text)


def one_line(text: str) -> str:
    """Text written elsewhere (an agent's note, an endpoint's answer) on one line, to be
    shown among a message's own lines: each run of spaces, line breaks, control and invisible
    format characters (a direction override among them) read as one space."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


# Letters that show as blank space, though Unicode does not call them space: the Hangul
# fillers and the blank Braille pattern.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def shows_nothing(text: str) -> bool:
    """Whether text would show as blank: only spaces, invisible format characters (a
    zero-width space, joiners, direction marks, tag characters), variation selectors and
    blank letters."""
    return all(
        char.isspace()
        or char in _BLANK_LETTERS
        or unicodedata.category(char) == "Cf"
        or 0xFE00 <= ord(char) <= 0xFE0F
        or 0xE0100 <= ord(char) <= 0xE01EF
        for char in text
    )


# Scripts whose letters look alike (Latin "c", Cyrillic "с", Greek "ϲ"): a name that mixes
# them reads as a name written in one.
_LOOK_ALIKE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK"})


# How Unicode marks a character drawn raised, lowered or as a fraction ("™", "m²", "CO₂",
# "1ª", "½"): it reads as itself, not as the letters or digits it is made of.
_DRAWN_AS_ITSELF = ("<super>", "<sub>", "<fraction>")
# Characters keyboards type that NFKC makes another: the micro sign ("µs"; a name with the
# Greek "μ" NFKC makes of it reads as one with it, ``reads_as``), and the Hangul letters a
# Korean keyboard types for a letter standing alone ("ㄱ").
_TYPED_AS_THEMSELVES = re.compile("[\u00b5\u3131-\u318e]")
_SMALL_CAPITAL = re.compile("LATIN LETTER SMALL CAPITAL ([A-Z])")


def letters_in_disguise(text: str) -> dict[str, str]:
    """The characters of a name that are a letter or digit in another one's dress, each with
    the letter or digit it shows as: full-width ("ｃ" shows as "c"), half-width ("ｶ" as
    "カ"), mathematical ("𝐜"), circled ("ⓒ", "①"), squared, ligatures ("ﬁ" as "fi"),
    Roman numerals ("Ⅳ" as "IV"), presentation forms, and letters one may tell from another
    only by name (the Kelvin sign as "K"): the characters NFKC makes letters or digits of
    (Unicode's compatibility forms, there for the old encodings that had them); and the
    Latin small capitals ("ᴄ" as "C"), which it leaves. A letter with an accent, written as
    one character or as a letter and a combining mark, is itself."""
    found: dict[str, str] = {}
    for char in dict.fromkeys(text):
        if char.isascii() or _TYPED_AS_THEMSELVES.match(char):
            continue
        small_capital = _SMALL_CAPITAL.fullmatch(unicodedata.name(char, ""))
        if small_capital:
            found[char] = small_capital.group(1)
            continue
        normalized = unicodedata.normalize("NFKC", char)
        if normalized == char or unicodedata.decomposition(char).startswith(_DRAWN_AS_ITSELF):
            continue
        if any(each.isalnum() for each in normalized):
            # What it shows as: the ASCII letter TR39 names it a look-alike of, where NFKC
            # gives it another meaning ("ϲ" GREEK LUNATE SIGMA SYMBOL shows as "c", NFKC
            # makes it a final sigma "ς").
            ascii_ = representatives().get(char, "")
            ascii_letter = len(ascii_) == 1 and ascii_.isascii() and ascii_.isalpha()
            found[char] = ascii_ if ascii_letter and not normalized.isascii() else normalized
    return found


# How Unicode marks the full- and half-width forms East Asian keyboards type ("２０２６",
# "ｶﾝﾍﾟｰﾝ"): the same letters and digits, drawn to the width of the text around them.
_WIDTH_FORMS = ("<wide>", "<narrow>")


def name_as_typed(name: str) -> str:
    """A name given or changed, kept as the text it shows: composed (NFC: "Café" typed as a
    letter and a combining accent, as macOS writes it in a file's name, is the letter with its
    accent), and its full- and half-width letters and digits kept as the plain ones they show
    (a Japanese keyboard types "２０２６年" for "2026年", "ｃpc" for "cpc"): the same name to
    its readers, kept as the one a search for it finds, not refused for a difference no one
    can see, nor kept as one that reads as "cpc" and is not found by it."""
    folded: list[str] = []
    for char in name:
        plain = char
        if unicodedata.decomposition(char).startswith(_WIDTH_FORMS):
            plain = unicodedata.normalize("NFKC", char)
        if plain != char and unicodedata.combining(plain):
            # A half-width sound mark ("ﾞ") is a combining one once plain: kept so only where
            # it makes one letter with the one before ("ﾍﾟ" as "ペ"); after a letter it does
            # not mark ("Bid adjustmentsﾞ"), or first, it stays the mark typed, which shows.
            composed = unicodedata.normalize("NFC", folded[-1] + plain) if folded else ""
            if len(composed) == 1:
                folded[-1] = composed
                continue
            plain = char
        folded.append(plain)
    return unicodedata.normalize("NFC", "".join(folded))


def may_show_as_another(text: str) -> bool:
    """Whether a name may show as another name does: it shows nothing, or holds an
    invisible, blank or unprintable character (a zero-width space, a direction override, a
    no-break space, a variation selector, a Hangul filler), or spaces at its ends or two
    together (a page draws them as one, or as none), or a word mixing letters of scripts
    that look alike ("сtr", a Cyrillic "с" before Latin letters, shows as "ctr"), or a letter
    or digit in another's dress ("ｃtr", a full-width "ｃ": ``letters_in_disguise``)."""
    if shows_nothing(text) or text != text.strip(" ") or "  " in text:
        return True
    scripts: set[str] = set()  # of the word being read
    for char in text:
        if char != " " and (not char.isprintable() or shows_nothing(char)):
            return True
        if not char.isalpha():
            scripts = set()
            continue
        scripts.add(unicodedata.name(char, "").split(" ", 1)[0])
        if len(scripts & _LOOK_ALIKE_SCRIPTS) > 1:
            return True
    return bool(letters_in_disguise(text))


NAME_SHOWS_AS_ANOTHER = (
    "This name would show as another name does: write it without invisible or blank "
    "characters, spaces at either end or two together, or a word mixing Latin, Cyrillic or "
    "Greek letters."
)


def disguises_said(disguised: dict[str, str]) -> str:
    """Letters in disguise, as a refusal names them: "“ｃ” (U+FF43 FULLWIDTH LATIN SMALL
    LETTER C) shows as “c”, “𝐭” (U+1D42D MATHEMATICAL BOLD SMALL T) as “t”"."""
    return ", ".join(
        f"“{char}” ({describe(char)}) {'shows as ' if index == 0 else 'as '}“{shown}”"
        for index, (char, shown) in enumerate(disguised.items())
    )


def name_shows_as_itself(name: str) -> None:
    """A form's validator of a name people tell records apart by (a policy's, a route's, a
    role's): one that may show as another name does (``may_show_as_another``) is refused,
    naming each letter in disguise it holds."""
    disguised = letters_in_disguise(name)
    shown = name.translate(str.maketrans(disguised))
    if disguised and not may_show_as_another(shown):
        raise ValidationError(
            f"This name would show as “{shown}”, which it is not: "
            + disguises_said(disguised)
            + ". Write each as the letter or digit it shows as.",
            code="shows_as_another",
        )
    if may_show_as_another(name):
        raise ValidationError(NAME_SHOWS_AS_ANOTHER, code="shows_as_another")


def reads_as(name: str, *, ignoring_case: bool = False) -> tuple[str, ...]:
    """What a name reads as, to tell whether two names read alike: its TR39 skeleton
    (``hitlproject.confusables``: "сор" in Cyrillic reads as "cop", "Віԁ" as "Bid"), with
    its compatibility forms read as the letters they show ("ｃ" as "c", as a name saved
    before they were refused may hold them). ``ignoring_case``: two names that differ only in
    case read alike too; look-alikes and case do not commute (Latin "I" reads as "l", but is
    "i" ignoring case), so it is read both ways, and two names read alike if either does."""

    def read(text: str) -> str:
        return skeleton(unicodedata.normalize("NFKC", skeleton(text)))

    if not ignoring_case:
        return (read(name),)
    return read(name).casefold(), read(name.casefold())


def read_alike(
    name: str, named: Iterable[tuple[Any, str]], *, ignoring_case: bool = False
) -> tuple[Any, str] | None:
    """The first of ``named`` (each a key, a record's id, and a name) whose name is not
    ``name`` yet reads as it does (``reads_as``); None if none does."""
    mine = reads_as(name, ignoring_case=ignoring_case)
    for key, other in named:
        theirs = reads_as(other, ignoring_case=ignoring_case)
        if other != name and any(a == b for a, b in zip(mine, theirs, strict=True)):
            return key, other
    return None


def name_reads_as_no_other(
    name: str, named: Iterable[tuple[Any, str]], *, kind: str, ignoring_case: bool = False
) -> None:
    """A form's validator of a name given or changed, against the names of the other records
    of its ``kind`` (``named``: each record's id and name): one that is not another's name
    yet reads as it (``read_alike``) is refused, naming that record and the characters that
    make it read so. A name the same as another's is not this check's to refuse: a draft
    policy has the name of the policy it was duplicated from, and where a name must be
    unique (a person's, a role's) the database says so."""
    alike = read_alike(name, named, ignoring_case=ignoring_case)
    if alike is None:
        return
    key, other = alike
    raise ValidationError(
        f"This name would show as another name does: it reads as the {kind} “{other}” "
        f"(#{key}){reading_as_said(name, other)}. Name it so that it reads as itself.",
        code="reads_as_another",
    )


def reading_as_said(name: str, other: str) -> str:
    """Why ``name`` reads as ``other``, to follow the words saying it does: ", differing from
    it only in case", or the characters that differ at their places (": its “В” (U+0412
    CYRILLIC CAPITAL LETTER VE) shows as “B”"); nothing if the two differ in length."""
    if name.casefold() == other.casefold():
        return ", differing from it only in case"
    if len(name) != len(other):
        return ""
    differ = {mine: theirs for mine, theirs in zip(name, other, strict=True) if mine != theirs}
    return ": its " + disguises_said(differ)


class ShownTextField(serializers.CharField):
    """Text a person reads (a creative's): refused if it would show as blank, whatever
    invisible characters it is made of; as a field of spaces alone already is."""

    default_error_messages = {
        "shows_nothing": "Shows nothing: it is made only of invisible or blank characters."
    }

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if shows_nothing(value):
            self.fail("shows_nothing")
        return value


class SingleLineCharField(ShownTextField):
    """Text shown on one line (a headline, a call to action). A line break or another control
    character in it would be shown differently wherever it is shown (a form's one-line field
    drops line breaks), so what a reviewer sees would not be what runs: it is refused."""

    default_error_messages = {
        "not_one_line": "Must be one line: no line breaks, tabs or other control characters."
    }

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if NOT_ONE_LINE.search(str(data)):
            self.fail("not_one_line")
        return value


class MultiLineCharField(ShownTextField):
    """Text of several lines (a creative's body), taken with its line breaks as line feeds."""

    def to_internal_value(self, data: Any) -> str:
        return with_lf_line_breaks(super().to_internal_value(data))


def finite_number(value: float) -> None:
    if not math.isfinite(value):
        raise serializers.ValidationError("Must be a finite number.")


#: What supporting data's number says when a 64-bit float cannot hold it as written.
NUMBER_NOT_KEPT = (
    "{written} cannot be kept as written: it would be stored, and shown to the reviewer, as "
    "{kept}. A number with a fraction or an exponent is held as a JSON reader holds one (a "
    "64-bit float: about 15 significant digits, sizes up to about 1.8e308 and down to about "
    '1e-308); send it rounded to that, or as text ("{written}") to keep every digit. '
    "Whole numbers are kept as written at any size."
)

#: How many numbers a refusal names, at most (the rest are refused with them).
NUMBERS_NAMED = 20


def float_kept(number: float) -> str | None:
    """What a number with a fraction or an exponent, as the request wrote it
    (``NumberAsWritten.written``), would be kept as, if that is another number: ``repr`` of
    the float (``"0.0"`` for ``1e-400``), or "infinity, …"; None if the float is the number
    written: its shortest form, or its value correctly rounded to as many significant digits
    as were written (``0.10000000000000001``, as C's ``%.17g`` writes 0.1), which is how
    every JSON writer spells a float. A number the parser did not read (no ``written``) is
    the float it is."""
    written = getattr(number, "written", None)
    if written is None:
        return None
    kept = float(number)
    if not math.isfinite(kept):
        return "infinity, which JSON cannot hold"
    exact = Decimal(written)
    if Decimal(repr(kept)) == exact:
        return None
    digits = len(exact.as_tuple().digits)
    if Context(prec=digits, rounding=ROUND_HALF_EVEN).create_decimal(Decimal(kept)) == exact:
        return None
    return repr(kept)


def bounded_json(value: Any) -> None:
    """Free-form JSON an agent sends (supporting data): bounded in size and depth, storable,
    and kept as sent: a whole number at any size; a number with a fraction or an exponent as
    the 64-bit float it is stored as, so one that float would change (``1e-400`` is 0.0,
    ``0.1000000000000000000001`` is 0.1) is refused, each named by its place
    (``{"series": {"2": ["1e-400 cannot be kept as written: …"]}}``), rather than shown to
    the reviewer as another number."""
    not_kept: list[tuple[list[str], str]] = []

    def walk(node: Any, depth: int, path: list[str]) -> None:
        if depth > MAX_JSON_DEPTH:
            raise serializers.ValidationError(f"Nested deeper than {MAX_JSON_DEPTH} levels.")
        if isinstance(node, dict):
            for key, item in node.items():
                walk(key, depth, path)
                walk(item, depth + 1, [*path, str(key)])
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, depth + 1, [*path, str(index)])
        elif isinstance(node, float) and (kept := float_kept(node)) is not None:
            written = getattr(node, "written", repr(node))
            not_kept.append((path, NUMBER_NOT_KEPT.format(written=written, kept=kept)))
        elif isinstance(node, float) and not math.isfinite(node):
            raise serializers.ValidationError("Numbers must be finite.")
        elif isinstance(node, str) and "\x00" in node:
            raise serializers.ValidationError("Text must not contain NUL characters.")

    walk(value, 1, [])
    if not_kept:
        faults: dict[str, Any] = {}
        for path, message in not_kept[:NUMBERS_NAMED]:
            if not path:  # the value itself a number (not an object, as supporting data is)
                raise serializers.ValidationError(message)
            place = faults
            for part in path[:-1]:  # a number is a leaf: no path runs through another's
                place = place.setdefault(part, {})
            place[path[-1]] = [message]
        raise serializers.ValidationError(faults)
    if len(json.dumps(value, separators=(",", ":"))) > MAX_SUPPORTING_DATA_BYTES:
        raise serializers.ValidationError(
            f"Larger than {MAX_SUPPORTING_DATA_BYTES // 1024} KiB once encoded."
        )


def detail_text(detail: Any) -> str:
    """Messages nested as a serializer reports them, as one readable line, each with the path
    of the field it is about."""

    def lines(detail: Any, path: str) -> list[str]:
        if isinstance(detail, dict):
            return [
                line
                for key, item in detail.items()
                for line in lines(item, f"{path}.{key}" if path else str(key))
            ]
        if isinstance(detail, list):
            return [line for item in detail for line in lines(item, path)]
        return [f"{path}: {detail}" if path and path != "non_field_errors" else str(detail)]

    return " ".join(lines(detail, ""))


def invalid_input(field_errors: Mapping[str | int, Any]) -> InvalidInput:
    """Input refused, field by field: the domain's ``InvalidInput`` with ``field_errors``
    nested as a serializer reports them (``{"amount": ["Exceeds …"]}``), and a message that
    says them all on one line. The API answers it as a serializer's refusal would be
    (``hitlproject.api.as_api_exception``)."""
    return InvalidInput(detail_text(field_errors), field_errors=field_errors)


def invalid_from_serializer(error: serializers.ValidationError) -> InvalidInput:
    """A serializer's refusal (a ``ValidationError`` a ``Serializer`` raised, its detail a
    mapping of fields) as the domain's ``InvalidInput``, for a service to see."""
    detail = error.detail
    return invalid_input(detail if isinstance(detail, Mapping) else {"non_field_errors": detail})


def invalid_under(field: str, error: InvalidInput) -> InvalidInput:
    """``error`` as the refusal of the ``field`` it is about: its field errors nested under it
    (``{"payload": {"amount": [...]}}``), or its message, if it names no field."""
    return invalid_input({field: error.field_errors or [error.message]})


class PlainWholeNumber(serializers.IntegerField):
    """A whole number given in a query as plain ASCII digits: not other scripts' digits
    ("٣", "３"), signs, spaces or underscores, which ``int()`` would read (so DRF's own field
    takes them) and a person reading the request or the logs might not."""

    default_error_messages = {
        "plain": "Give a whole number in plain digits (0-9), such as 30.",
    }

    def to_internal_value(self, data: Any) -> int:
        if not (isinstance(data, str) and PLAIN_DIGITS.fullmatch(data)):
            self.fail("plain")
        return super().to_internal_value(data)


# Any run of them: a number too big for the field is refused by its bound ("less than or equal
# to 500"), which says what is wrong with it; DRF's own check refuses more than 1,000 digits.
PLAIN_DIGITS = re.compile(r"[0-9]+")


def id_asked(value: str) -> int | None:
    """A record's id as a link writes it (``?policy=3``), or None: plain digits only
    (``str.isdigit`` takes "²", which ``int`` refuses) and within a database's bigint."""
    return int(value) if PLAIN_DIGITS.fullmatch(value) and len(value) <= 18 else None


class StrictQuery(StrictSerializer):
    """An endpoint's query parameters: one it does not take is a 400 naming it (an agent that
    asked to wait, or for one account's campaigns, is not answered as if it had asked for
    something else), and so is one given twice (``?status=approved&status=executed`` would be
    answered for the last alone); DRF's own ``?format=json`` is taken, as on any DRF
    endpoint."""

    known_elsewhere = frozenset({api_settings.URL_FORMAT_OVERRIDE} - {None})

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if hasattr(data, "getlist"):  # a QueryDict: each name with every value it was given
            repeated = sorted(name for name in data if len(data.getlist(name)) > 1)
            if repeated:
                raise serializers.ValidationError(
                    {name: ["Given more than once; give it once."] for name in repeated}
                )
        return super().to_internal_value(data)
