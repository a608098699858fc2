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
- **Folding**: each character is normalized (NFKC), hyphen-like characters become "-", and
  confusable characters are folded to one representative of their Unicode TR39 confusable
  class (the *skeleton*), ignoring case.

The TR39 data comes from the maintained package ``confusable-homoglyphs``, which only detects
confusables: it keeps confusables.txt as a symmetric table (each character with the characters
it may be mistaken for) and offers no skeleton. ``_representatives`` rebuilds the classes from
that table (a prototype and the sources mapped to it) and picks one representative for each,
preferring a single ASCII character, so that plain Latin text is not folded at all except the
few ASCII look-alikes TR39 names ("0" for "O", "1" and "|" for "l"). TR39 maps "m" to "rn";
folding character by character, a class is never split across two characters, so "rn" in a
text is not read as "m" (nor "cl" as "d"): that would flag ordinary English words.

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
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import cache, cached_property, lru_cache
from itertools import accumulate

from confusable_homoglyphs import confusables

RIGHT_TO_LEFT_OVERRIDE = "\u202e"
# Characters that change the direction a text is displayed in.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# What ends an override's run besides the end of its paragraph: PDF and PDI.
_OVERRIDE_ENDS = frozenset("\u202c\u2069")
HYPHENS = str.maketrans(
    dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d", "-")
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
_DOUBLE_SPACE = re.compile(r"\s\s")
_MAX_FOLDS = 4


@cache
def is_invisible(char: str) -> bool:
    code = ord(char)
    return unicodedata.category(char) == "Cf" or any(
        low <= code <= high for low, high in _IGNORABLE_RANGES
    )


def describe(char: str) -> str:
    """A character as an operator can look it up: "U+0430 CYRILLIC SMALL LETTER A"."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} {name}".rstrip()


def shown(text: str) -> str:
    """The text with each invisible character written out as ⟨U+XXXX⟩: so that a quote shows
    where they are, and a bidi control in it cannot reorder the page that quotes it."""
    return "".join(f"⟨U+{ord(c):04X}⟩" if is_invisible(c) else c for c in text)


@cache
def _representatives() -> dict[str, str]:
    """Each confusable character that is not its class's representative, mapped to it."""
    table = {
        key.replace("\u200e", ""): [entry["c"].replace("\u200e", "") for entry in entries]
        for key, entries in confusables.confusables_data.items()
    }
    classes: dict[str, set[str]] = defaultdict(set)
    for key, others in table.items():
        if len(others) > 1:  # a prototype, listed with every source mapped to it
            classes[key].update([key, *others])
        elif len(table.get(others[0], ())) != 1:  # a source, listed with its prototype
            classes[others[0]].update([key, others[0]])
        else:  # a pair, each listed with the other only
            pair = min(key, others[0]), max(key, others[0])
            classes[pair[0]].update(pair)

    def preference(member: str) -> tuple:
        single = len(member) == 1
        ascii_ = single and member.isascii() and member.isprintable()
        return (
            not ascii_,
            not (ascii_ and member.islower()),
            not member.isalpha(),
            not single,
            member,
        )

    folded = {}
    for prototype, members in classes.items():
        representative = min(members | {prototype}, key=preference)
        for member in members:
            if len(member) == 1 and member != representative:
                folded[member] = representative
    return folded


def _skeleton_step(text: str) -> str:
    representatives = _representatives()
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(representatives.get(char, char) for char in decomposed)


@cache
def fold_lower_first(char: str) -> str:
    """A visible character as it reads ignoring case, case folded before its look-alikes."""
    return _fold(char.casefold())


@cache
def fold_skeleton_first(char: str) -> str:
    """The same, its look-alike folded before its case."""
    return _fold(char)


def _fold(char: str) -> str:
    if char.isspace():
        return " "
    text = unicodedata.normalize("NFKC", char).translate(HYPHENS)
    for _ in range(_MAX_FOLDS):
        folded = unicodedata.normalize("NFKC", _skeleton_step(text)).translate(HYPHENS).casefold()
        if folded == text:
            break
        text = folded
    return unicodedata.normalize("NFD", text)


@cache
def fold_non_ascii(char: str) -> str:
    """For regular expressions: a character that is ASCII once normalized stays as it is
    (digits, punctuation and letters mean what the pattern's author wrote, case is the
    pattern's to ignore); any other is read as its look-alike."""
    normalized = unicodedata.normalize("NFKC", char).translate(HYPHENS)
    return normalized if normalized.isascii() else fold_skeleton_first(char)


@cache
def fold_non_ascii_lower(char: str) -> str:
    normalized = unicodedata.normalize("NFKC", char).translate(HYPHENS)
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


class Reading:
    """A text read one way: ``order`` holds the positions of the characters read, in the order
    they are read, and ``key`` what they read as, folded by ``fold``."""

    def __init__(
        self, text: str, order: Sequence[int], fold: Callable[[str], str], *, displayed: bool
    ) -> None:
        self.text, self.order, self.fold, self.displayed = text, order, fold, displayed
        read = text if order == range(len(text)) else "".join(text[i] for i in order)
        self.key = read.translate({ord(char): fold(char) for char in set(read)})

    @cached_property
    def _ends(self) -> list[int]:
        """For each character read, where its folded form ends in the key."""
        return list(accumulate(len(self.fold(self.text[position])) for position in self.order))

    def _read_at(self, key_position: int) -> int:
        """The index, in ``order``, of the character the key's ``key_position`` was read from."""
        return bisect_right(self._ends, key_position)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The part of the text as submitted that the key's ``start:end`` was read from."""
        if not self.order:
            return 0, 0
        first = self._read_at(min(start, len(self.key) - 1))
        last = self._read_at(end - 1) if end > start else first
        positions = self.order[first : last + 1]
        return min(positions), max(positions) + (end > start)

    def whole_words_at(self, start: int, end: int) -> bool:
        """Whether ``start:end`` covers whole characters as read, with no word character read
        just before or after it."""
        first, last = self._read_at(start), self._read_at(end - 1)
        if start != (self._ends[first - 1] if first else 0) or end != self._ends[last]:
            return False
        before, after = first - 1, last + 1
        return not (
            (before >= 0 and is_word_character(self.text[self.order[before]]))
            or (after < len(self.order) and is_word_character(self.text[self.order[after]]))
        )

    def find_word(self, needle: str) -> tuple[int, int] | None:
        if not needle:
            return None
        start = self.key.find(needle)
        while start != -1:
            if self.whole_words_at(start, start + len(needle)):
                return start, start + len(needle)
            start = self.key.find(needle, start + 1)
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
    return "".join(fold(term[position]) for position in visible_order(term, displayed=False))


def disguises(written: str) -> list[str]:
    """The characters that make ``written`` display as something it is not: invisible ones,
    and look-alikes from outside ASCII (a full-width letter or a non-breaking hyphen is only
    another form of the same character, and an ASCII digit is what it looks like)."""
    found = []
    for char in dict.fromkeys(written):
        normalized = unicodedata.normalize("NFKC", char).translate(HYPHENS)
        if is_invisible(char) or (
            not normalized.isascii() and fold_lower_first(char) != plain(char)
        ):
            found.append(describe(char))
    return found
