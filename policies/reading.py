"""What a reader sees in a text, for matching brand guidelines against it.

A creative can display a banned word without containing it: written with look-alike letters
of another script (Cyrillic "а" for Latin "a"), full-width letters, invisible characters inside
it (a zero-width joiner, a soft hyphen), a non-breaking hyphen, or reversed in the text and put
back in order on screen by a right-to-left override. Matching is therefore done on what is seen:

- **Invisible characters** (Unicode format characters, category Cf, which include the bidi
  controls, and the other default-ignorable code points) are left out; a run of whitespace
  counts as one space.
- **Display order**: a run after U+202E RIGHT-TO-LEFT OVERRIDE, up to U+202C POP DIRECTIONAL
  FORMATTING, U+2069 POP DIRECTIONAL ISOLATE or the end of the paragraph, is shown reversed,
  so it is read reversed.
- **Folding**: a character whose Unicode name says it is a Latin letter in another dress (a
  small capital "ɢ", a letter with a hook or stroke "ɠ", a circled, squared, parenthesized or
  negative squared letter "🅶", a regional indicator letter "🇬") reads as that letter; this is
  done before NFKC, which turns "⒢" into "(g)"; so is a letter TR39 names a look-alike of
  an ASCII letter ("ϲ" GREEK LUNATE SIGMA SYMBOL reads as "c", where NFKC made it a final
  sigma "ς", read as "o"). Any other character is normalized (NFKC),
  every dash (Unicode category Pd, and the minus sign, hyphen bullet and hyphenation point)
  becomes "-", and confusable characters are folded to one representative of their Unicode
  TR39 confusable class (the *skeleton*), ignoring case.
- **Accents and lines**: combining marks (categories Mn, Me) on a character that reads as a
  Latin letter are left out, whether written apart ("g̲", "g̶") or precomposed ("ä", "ġ"): a
  reader sees the letter under them. On letters of other scripts they are kept (a Japanese
  dakuten or a Devanagari vowel sign changes the word).
- **Words**: a term that begins (ends) with a Latin letter is found where no Latin letter is
  read just before (after) it: an underscore, a digit or a word of another script next to it
  does not hide it, "unguaranteed" is not "guaranteed". A term's other ends must not touch a
  word character. A hyphen inside a term reads as an optional hyphen with optional spaces
  around it: "risk free", "riskfree" and "risk - free" are "risk-free".

The skeleton is ``hitlproject.confusables``' (TR39's data, one representative for each
confusable class, folded character by character), the one names are compared by too.

A text is compared with a term only after both went through the same folding, so a word in
another script is never compared with a Latin term letter by letter: it matches only if it
displays as the term.

Case folding and look-alike folding do not commute (Cyrillic "Т" looks like "T", but its
lowercase "т" looks like a small capital; Latin "I" looks like "l", but is "i" ignoring case),
so a text is read twice, folding case before and after the look-alikes, and a term is found if
either reading shows it.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Sequence
from functools import cache, cached_property, lru_cache
from itertools import accumulate

from hitlproject.confusables import describe, representatives, skeleton

RIGHT_TO_LEFT_OVERRIDE = "\u202e"
# Characters that change the direction a text is displayed in; see also is_direction_control.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# What ends an override's run besides the end of its paragraph: PDF and PDI.
_OVERRIDE_ENDS = frozenset("\u202c\u2069")
# Every dash (category Pd: Armenian, Hebrew, Mongolian, wave dashes…) and the other
# characters drawn as one: minus sign, hyphen bullet, hyphenation point. (Pd as of the
# Unicode data Python ships; a test checks every Pd character unicodedata knows.)
HYPHENS = str.maketrans(
    dict.fromkeys(
        "\u058a\u05be\u1400\u1806\u2010\u2011\u2012\u2013\u2014\u2015\u2e17\u2e1a\u2e3a"
        "\u2e3b\u2e40\u2e5d\u301c\u3030\u30a0\ufe31\ufe32\ufe58\ufe63\uff0d\U00010ead"
        "\u2212\u2043\u2027",
        "-",
    )
)
_MARKS = frozenset(("Mn", "Me"))
_LATIN_NAME = re.compile(
    r"(?:(?:NEGATIVE )?(?:PARENTHESIZED|CIRCLED|SQUARED) |TORTOISE SHELL BRACKETED )?"
    r"LATIN (?:(?:CAPITAL|SMALL) )?LETTER (?:SMALL CAPITAL )?([A-Z])(?: WITH (?!.*LETTER).+)?"
    r"|REGIONAL INDICATOR SYMBOL LETTER ([A-Z])"
)
# Default-ignorable code points that are not format characters (Cf): they display as nothing.
_IGNORABLE_RANGES = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul fillers
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),  # Mongolian variation selectors
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFA0, 0xFFA0),
    (0xE0100, 0xE01EF),
)
_WORD = re.compile(r"\w")
_HYPHEN_IN_TERM = re.compile(r" ?- ?")
_DOUBLE_SPACE = re.compile(r"\s\s")
_MAX_FOLDS = 4
_LETTERS = frozenset({"Lu", "Ll", "Lt", "Lo"})


@cache
def latin_letter(char: str) -> str:
    """The lowercase ASCII letter a non-ASCII character is named as a form of ("ɢ" LATIN
    LETTER SMALL CAPITAL G, "⒢" PARENTHESIZED LATIN SMALL LETTER G, "🇬" REGIONAL INDICATOR
    SYMBOL LETTER G), or "" (also for ASCII itself, and for turned or reversed letters)."""
    if char.isascii():
        return ""
    match = _LATIN_NAME.fullmatch(unicodedata.name(char, ""))
    return (match.group(1) or match.group(2)).lower() if match else ""


@cache
def is_mark(char: str) -> bool:
    return unicodedata.category(char) in _MARKS


@cache
def _is_latin_letter(char: str) -> bool:
    """Whether a character is a letter a reader takes for part of a Latin word."""
    return char.isalpha() and (
        char.isascii()
        or unicodedata.name(char, "").startswith("LATIN ")
        or bool(latin_letter(char))
    )


def _reads_latin(folded: str) -> bool:
    return bool(folded) and folded[-1].isascii() and folded[-1].isalpha()


def _strip_latin_marks(text: str) -> str:
    """``text`` without the combining marks on its Latin letters."""
    if not any(is_mark(char) for char in text):
        return text
    kept, latin = [], False
    for char in text:
        if is_mark(char):
            if not latin:
                kept.append(char)
            continue
        kept.append(char)
        latin = _reads_latin(char)
    return "".join(kept)


@cache
def is_direction_control(char: str) -> bool:
    """A bidi control, or any other invisible character that is itself strongly right to left
    (U+070F SYRIAC ABBREVIATION MARK): either can reorder the Latin runs around it."""
    return char in BIDI_CONTROLS or (
        unicodedata.category(char) == "Cf" and unicodedata.bidirectional(char) in ("R", "AL")
    )


@cache
def is_invisible(char: str) -> bool:
    code = ord(char)
    return unicodedata.category(char) == "Cf" or any(
        low <= code <= high for low, high in _IGNORABLE_RANGES
    )


# Unicode tag characters: TAG SPACE to TAG TILDE spell the printable ASCII characters, drawn as
# nothing; their one use in display is an emoji tag sequence (a subdivision flag: U+1F3F4
# WAVING BLACK FLAG, tags, U+E007F CANCEL TAG). Anywhere else they carry text nobody sees.
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
_FLAG_BASE, _CANCEL_TAG = "\U0001f3f4", "\U000e007f"


def hidden_tag_text(text: str) -> tuple[int, str] | None:
    """Where the first run of tag characters that is no emoji flag starts, and the text its
    tags spell (every such run's, in order), or None if ``text`` hides none."""
    first, spelled = None, []
    for run in _TAGS.finditer(text):
        flag = (
            run.start() > 0
            and text[run.start() - 1] == _FLAG_BASE
            and run.group().endswith(_CANCEL_TAG)
            and _CANCEL_TAG not in run.group()[:-1]
        )
        if flag:
            continue
        if first is None:
            first = run.start()
        spelled.append(
            "".join(
                chr(ord(char) - 0xE0000) for char in run.group() if 0xE0020 <= ord(char) <= 0xE007E
            )
        )
    return None if first is None else (first, "".join(spelled))


# Variation selectors: one after a character picks how it is drawn (an emoji's colour form,
# an ideograph's variant); a run of them draws nothing and selects nothing. "Emoji smuggling"
# writes bytes in such a run, one a byte: VS1–VS16 for 0–15, VS17–VS256 for 16–255.
_VARIATION_RUN = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]{2,}")


def _variation_byte(char: str) -> int:
    code = ord(char)
    return code - 0xFE00 if code <= 0xFE0F else code - 0xE0100 + 16


def hidden_variation_data(text: str) -> tuple[int, int, str | None] | None:
    """Where the first run of two or more variation selectors starts, how many such
    selectors ``text`` holds, and the text their bytes spell (every run's, in order) if it is
    printable UTF-8; None if it holds no such run."""
    runs = list(_VARIATION_RUN.finditer(text))
    if not runs:
        return None
    data = bytes(_variation_byte(char) for run in runs for char in run.group())
    try:
        spelled: str | None = data.decode()
    except UnicodeDecodeError:
        spelled = None
    if spelled is not None and not spelled.isprintable():
        spelled = None
    return runs[0].start(), len(data), spelled


# What str.splitlines() breaks a line at: in a quote, each would start a line of the
# agent's own in the message that quotes it (a "reason" the platform never gave).
LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def is_control(char: str) -> bool:
    """A control character (Unicode's Cc) other than a tab or a line break, which a text of
    several lines holds: no screen shows it as what it is, and a terminal acts on it (an
    escape sequence that hides what follows, a backspace that writes over what precedes)."""
    return unicodedata.category(char) == "Cc" and char != "\t" and char not in LINE_BREAKS


def shown(text: str) -> str:
    """The text with each invisible character, line break and control character written out
    as ⟨U+XXXX⟩: so that a quote shows where they are, stays on the line that quotes it, and
    neither a bidi control nor a terminal's escape in it can reorder or hide what quotes it."""
    return "".join(
        f"⟨U+{ord(c):04X}⟩" if c in LINE_BREAKS or is_invisible(c) or is_control(c) else c
        for c in text
    )


@cache
def fold_lower_first(char: str) -> str:
    """A visible character as it reads ignoring case, case folded before its look-alikes."""
    return latin_letter(char) or _fold(char.casefold())


@cache
def fold_skeleton_first(char: str) -> str:
    """The same, its look-alike folded before its case."""
    return latin_letter(char) or _fold(char)


def _fold(char: str) -> str:
    if char.isspace():
        return " "
    # A letter TR39 names a look-alike of an ASCII letter reads as that letter, before NFKC
    # gives it another meaning: "ϲ" GREEK LUNATE SIGMA SYMBOL shows as "c", but NFKC makes it
    # a final sigma "ς", which folds on to "σ" and "o", and "ϲure" hid the banned "cure".
    own = representatives().get(char, "")
    if own.isascii() and own.isalpha() and unicodedata.category(char) in _LETTERS:
        char = own
    text = unicodedata.normalize("NFKC", char).translate(HYPHENS)
    for _ in range(_MAX_FOLDS):
        folded = unicodedata.normalize("NFKC", skeleton(text)).translate(HYPHENS).casefold()
        if folded == text:
            break
        text = folded
    return _strip_latin_marks(unicodedata.normalize("NFD", text))


@cache
def fold_non_ascii(char: str) -> str:
    """For regular expressions: a character that is ASCII once normalized stays as it is
    (digits, punctuation and letters mean what the pattern's author wrote, case is the
    pattern's to ignore); any other is read as its look-alike."""
    normalized = unicodedata.normalize("NFKC", char).translate(HYPHENS)
    if latin_letter(char):
        return latin_letter(char)
    return normalized if normalized.isascii() else fold_skeleton_first(char)


@cache
def fold_non_ascii_lower(char: str) -> str:
    normalized = unicodedata.normalize("NFKC", char).translate(HYPHENS)
    if latin_letter(char):
        return latin_letter(char)
    return normalized if normalized.isascii() else fold_lower_first(char)


@cache
def fold_normalized(char: str) -> str:
    """Normalized only: for patterns written in another script than Latin."""
    return unicodedata.normalize("NFKC", char).translate(HYPHENS)


def plain(text: str) -> str:
    """The text as written, ignoring only case, compatibility forms, hyphen shapes and
    spacing: two texts the same in this form differ in no way a reader could be fooled by."""
    normalized = unicodedata.normalize("NFKC", text).translate(HYPHENS).casefold()
    return unicodedata.normalize("NFD", re.sub(r"\s+", " ", normalized))


@cache
def is_word_character(char: str) -> bool:
    return bool(_WORD.match(unicodedata.normalize("NFKC", char) or "\0"))


@lru_cache(maxsize=512)
def visible_order(text: str, *, displayed: bool) -> Sequence[int]:
    """The positions of the characters a reader sees, in the order they are read: invisible
    characters left out and a run of whitespace counted once; ``displayed``: in display order
    too, each right-to-left override's run reversed."""
    if not _DOUBLE_SPACE.search(text) and not any(is_invisible(char) for char in set(text)):
        return range(len(text))  # most texts: every character, in order
    seen: list[int] = []
    run: list[int] | None = None
    for position, char in enumerate(text):
        if displayed and char == RIGHT_TO_LEFT_OVERRIDE:
            run = run if run is not None else []
            continue
        if run is not None and (char in _OVERRIDE_ENDS or unicodedata.bidirectional(char) == "B"):
            seen.extend(reversed(run))
            run = None
        if is_invisible(char):
            continue
        into = run if run is not None else seen
        if char.isspace() and into and text[into[-1]].isspace():
            continue
        into.append(position)
    if run:
        seen.extend(reversed(run))
    return tuple(seen)


def fold_each(read: str, fold: Callable[[str], str]) -> list[str] | None:
    """What each character of ``read`` reads as, where that depends on the character before
    it (a combining mark on a Latin letter reads as nothing); None if none does."""
    if fold is fold_normalized or not any(is_mark(char) for char in set(read)):
        return None
    folded, latin = [], False
    for char in read:
        if is_mark(char) and latin:
            folded.append("")
            continue
        folded.append(fold(char))
        if not is_mark(char):
            latin = _reads_latin(folded[-1])
    return folded


@lru_cache(maxsize=1024)
def _needle(key: str) -> re.Pattern:
    """A folded term as a pattern: a hyphen inside it is an optional hyphen with optional
    spaces around it."""
    inner = key.strip("-")
    if "-" not in inner:
        return re.compile(re.escape(key))
    lead, trail = key[: len(key) - len(key.lstrip("-"))], key[len(key.rstrip("-")) :]
    pieces = _HYPHEN_IN_TERM.split(inner)
    return re.compile(
        re.escape(lead) + " ?-? ?".join(re.escape(piece) for piece in pieces) + re.escape(trail)
    )


class Reading:
    """A text read one way: ``order`` holds the positions of the characters read, in the order
    they are read, and ``key`` what they read as, folded by ``fold``."""

    def __init__(
        self, text: str, order: Sequence[int], fold: Callable[[str], str], *, displayed: bool
    ) -> None:
        self.text, self.order, self.fold, self.displayed = text, order, fold, displayed
        read = text if order == range(len(text)) else "".join(text[i] for i in order)
        self._folds = fold_each(read, fold)
        if self._folds is None:
            self.key = read.translate({ord(char): fold(char) for char in set(read)})
        else:
            self.key = "".join(self._folds)

    def folded(self, index: int) -> str:
        """What the ``index``-th character read reads as."""
        if self._folds is not None:
            return self._folds[index]
        return self.fold(self.text[self.order[index]])

    @cached_property
    def _ends(self) -> list[int]:
        """For each character read, where its folded form ends in the key."""
        return list(accumulate(len(self.folded(index)) for index in range(len(self.order))))

    def _through_marks(self, last: int) -> int:
        """``last``, or the last of the marks read as nothing right after it."""
        while last + 1 < len(self.order) and not self.folded(last + 1):
            last += 1
        return last

    def _read_at(self, key_position: int) -> int:
        """The index, in ``order``, of the character the key's ``key_position`` was read from."""
        return bisect_right(self._ends, key_position)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The part of the text as submitted that the key's ``start:end`` was read from."""
        if not self.order:
            return 0, 0
        first = self._read_at(min(start, len(self.key) - 1))
        last = self._through_marks(self._read_at(end - 1)) if end > start else first
        positions = self.order[first : last + 1]
        return min(positions), max(positions) + (end > start)

    def _joins(self, index: int, latin: bool, side: int) -> bool:
        """Whether the character read at ``index`` continues a word on that ``side`` (-1
        before, 1 after): a letter read as Latin for a Latin end, else any word character."""
        if not 0 <= index < len(self.order):
            return False
        char = self.text[self.order[index]]
        if not latin:
            return is_word_character(char)
        folded = self.folded(index)
        return _is_latin_letter(char) or _reads_latin(folded[-1:] if side < 0 else folded[:1])

    def whole_words_at(self, start: int, end: int) -> bool:
        """Whether ``start:end`` covers whole characters as read and is a whole word: a Latin
        letter at either end has no Latin letter read next to it, any other end no word
        character."""
        first, last = self._read_at(start), self._read_at(end - 1)
        if start != (self._ends[first - 1] if first else 0) or end != self._ends[last]:
            return False
        before, after = first - 1, self._through_marks(last) + 1
        while before >= 0 and not self.folded(before):
            before -= 1
        return not (
            self._joins(before, _reads_latin(self.key[start]), -1)
            or self._joins(after, _reads_latin(self.key[end - 1]), 1)
        )

    def find_word(self, needle: str) -> tuple[int, int] | None:
        if not needle:
            return None
        pattern = _needle(needle)
        match = pattern.search(self.key)
        while match:
            if match.end() > match.start() and self.whole_words_at(*match.span()):
                return match.span()
            match = pattern.search(self.key, match.start() + 1)
        return None


def readings(text: str, folds: Sequence[Callable[[str], str]]) -> list[Reading]:
    """The text read with each fold, in its written order and, where an override reverses a
    run, in its display order too."""
    displays = [False, True] if RIGHT_TO_LEFT_OVERRIDE in text else [False]
    orders = {displayed: visible_order(text, displayed=displayed) for displayed in displays}
    return [
        Reading(text, orders[displayed], fold, displayed=displayed)
        for displayed in displays
        for fold in folds
    ]


def term_key(term: str, fold: Callable[[str], str]) -> str:
    read = "".join(term[position] for position in visible_order(term, displayed=False))
    folded = fold_each(read, fold)
    return "".join(folded) if folded is not None else "".join(fold(char) for char in read)


def disguises(written: str) -> list[str]:
    """The characters that make ``written`` display as something it is not: invisible ones,
    and look-alikes from outside ASCII (a full-width letter or a non-breaking hyphen is only
    another form of the same character, and an ASCII digit is what it looks like)."""
    found = []
    for char in dict.fromkeys(written):
        normalized = unicodedata.normalize("NFKC", char).translate(HYPHENS)
        if (
            is_invisible(char)
            or is_mark(char)
            or (not normalized.isascii() and fold_lower_first(char) != plain(char))
            or (latin_letter(char) and latin_letter(char) != plain(char))
        ):
            found.append(describe(char))
    return found
