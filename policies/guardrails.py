"""Guardrail checks: pure functions that say, in words an operator reads, what is wrong.

The service gathers the ledger and the guidelines; these only compare.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import regex

from policies import reading
from policies.reading import shown


@dataclass(frozen=True)
class BrandRules:
    banned_terms: tuple[str, ...] = ()
    banned_patterns: tuple[str, ...] = ()
    required_disclaimers: tuple[str, ...] = ()

    @classmethod
    def from_text(cls, banned_terms: str, banned_patterns: str, required_disclaimers: str):
        def lines(text: str) -> tuple[str, ...]:
            return tuple(line.strip() for line in text.splitlines() if line.strip())

        return cls(lines(banned_terms), lines(banned_patterns), lines(required_disclaimers))


def _quote(text: str, start: int, end: int, context: int = 30) -> str:
    """The text as submitted around ``start:end``, invisible characters written out."""
    left = max(0, start - context)
    right = min(len(text), end + context)
    return (
        ("…" if left else "")
        + shown(text[left:start])
        + "«"
        + shown(text[start:end])
        + "»"
        + shown(text[end:right])
        + ("…" if right < len(text) else "")
    )


# A banned term is looked for in what a reader sees, case folded before and after look-alikes;
# a pattern also in the text only normalized (a pattern written in another script) and with its
# non-ASCII characters read as the ASCII they imitate. See ``policies.reading``.
TERM_FOLDS = (reading.fold_lower_first, reading.fold_skeleton_first)
PATTERN_FOLDS = (reading.fold_normalized, reading.fold_non_ascii, reading.fold_non_ascii_lower)


@dataclass(frozen=True)
class _Found:
    start: int
    end: int
    literal: bool = False  # found in the text as submitted, ignoring only case
    displayed: bool = False  # found only in display order: an override reversed it


class _Text:
    """One text of a creative and the ways it is read, each made once, when first needed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._readings: dict = {}

    def readings(self, folds: tuple[Callable[[str], str], ...]) -> list[reading.Reading]:
        if folds not in self._readings:
            self._readings[folds] = reading.readings(self.text, folds)
        return self._readings[folds]

    def find_term(self, term: str, keys: dict) -> _Found | None:
        # As written, next to no letter of any script nor a combining mark (a strict part of
        # what the readings find, which also say how it is disguised).
        before = r"(?<![^\W\d_])" if term[:1].isalpha() else r"(?<!\w)"
        after = r"(?![^\W\d_])" if term[-1:].isalpha() else r"(?!\w)"
        match = re.search(before + re.escape(term) + after, self.text, flags=re.IGNORECASE)
        if match and not (match.end() < len(self.text) and reading.is_mark(self.text[match.end()])):
            return _Found(match.start(), match.end(), literal=True)
        for read in self.readings(TERM_FOLDS):
            found = read.find_word(keys[read.fold])
            if found:
                return _Found(*read.span(*found), displayed=read.displayed)
        return None

    def find_pattern(self, pattern: str, clock: _PatternClock) -> _Found | None:
        """Where the pattern matches the text as written or as read; raises TimeoutError
        when the pattern's searches run past its time (``_PatternClock``)."""
        match = clock.search(pattern, self.text)
        if match:
            return _Found(match.start(), match.end(), literal=True)
        searched = {self.text}
        for read in self.readings(PATTERN_FOLDS):
            if read.key in searched:
                continue
            searched.add(read.key)
            match = clock.search(pattern, read.key)
            if match:
                return _Found(*read.span(match.start(), match.end()), displayed=read.displayed)
        return None

    def shows(self, keys: dict) -> bool:
        """Whether a reader sees the folded text ``keys`` anywhere, in display order."""
        displayed = reading.RIGHT_TO_LEFT_OVERRIDE in self.text
        return any(
            keys[read.fold] and keys[read.fold] in read.key
            for read in self.readings(TERM_FOLDS)
            if read.displayed == displayed
        )


# How long a banned pattern's searches may take in all, over one proposal's texts. A pattern
# that backtracks (``(a|aa|aaa)*(b|c)``) can take years on a text written for it; the ``regex``
# library's matcher stops at its timeout, with the GIL released while it runs, where ``re``
# holds the process until it ends. Bounded in all, not each search: a text that takes just
# under a search's bound, in each of a batch's 150 texts, held the web process for seconds and
# was never said. Python's own syntax and meaning otherwise (``regex.V0``).
PATTERN_SECONDS = 0.1


class _PatternClock:
    """Each banned pattern's search time so far, over one proposal's texts."""

    def __init__(self) -> None:
        self.spent: defaultdict[str, float] = defaultdict(float)

    def ran_out(self, pattern: str) -> bool:
        return self.spent[pattern] >= PATTERN_SECONDS

    def search(self, pattern: str, text: str) -> regex.Match | None:
        """The pattern's first match in the text; TimeoutError once its time is spent."""
        left = PATTERN_SECONDS - self.spent[pattern]
        if left <= 0:
            raise TimeoutError(pattern)
        started = time.monotonic()
        try:
            return regex.search(
                pattern,
                text,
                flags=regex.IGNORECASE | regex.V0,
                timeout=left,
                concurrent=True,
            )
        finally:
            self.spent[pattern] += time.monotonic() - started


def pattern_error(pattern: str) -> str | None:
    """Why a banned pattern is no pattern the matcher takes, or None."""
    try:
        regex.compile(pattern, flags=regex.IGNORECASE | regex.V0)
    except (regex.error, RecursionError, OverflowError) as error:
        return f"“{pattern}” is not a valid pattern: {error}"
    return None


def _disguise(written: str, displayed: bool) -> str:
    """How a match differs from what it displays as, or "" if it is written plainly."""
    ways = []
    if displayed:
        ways.append("written backwards and displayed reversed by a right-to-left override")
    characters = reading.disguises(written)
    if characters:
        more = f" and {len(characters) - 4} more" if len(characters) > 4 else ""
        ways.append("written with " + ", ".join(characters[:4]) + more)
    return "; ".join(ways)


def _uses(where: str, what: str, text: str, found: _Found) -> str:
    written = text[found.start : found.end]
    disguise = "" if found.literal else _disguise(written, found.displayed)
    quote = _quote(text, found.start, found.end)
    if disguise:
        return f"The {where} uses {what}, disguised ({disguise}): {_closing(quote)}"
    return f"The {where} uses {what}: {_closing(quote)}"


def _closing(quote: str) -> str:
    """A quotation that ends the sentence: its own stop ends it, where it has one (“In a
    week.”, not “In a week.”.)."""
    return f"“{quote}”" if quote.endswith((".", "!", "?", "…")) else f"“{quote}”."


def _direction_controls(where: str, text: str) -> str | None:
    return _controls(
        where,
        text,
        reading.is_direction_control,
        "invisible text-direction controls ({names}), which can make it display in another "
        "order than it is written",
    )


def _control_characters(where: str, text: str) -> str | None:
    return _controls(
        where,
        text,
        reading.is_control,
        "control characters ({names}), which a screen or a terminal may act on instead of "
        "showing (hiding the words after them, or writing over those before)",
    )


def _controls(where: str, text: str, is_one, what: str) -> str | None:
    """A finding naming the characters of a kind (``is_one``) the text holds, ``what`` they
    are and do, and quoting it from the first of them; None if it holds none."""
    controls = [char for char in dict.fromkeys(text) if is_one(char)]
    if not controls:
        return None
    first = min(text.index(char) for char in controls)
    names = ", ".join(reading.describe(char) for char in controls)
    return (
        f"The {where} contains {what.format(names=names)}: "
        f"{_closing(_quote(text, first, first + 1))}"
    )


# How much of a text hidden in tag characters a finding spells out.
HIDDEN_TEXT_SHOWN = 200


def _hidden_tag_text(where: str, text: str) -> str | None:
    hidden = reading.hidden_tag_text(text)
    if hidden is None:
        return None
    first, spelled = hidden
    if len(spelled) > HIDDEN_TEXT_SHOWN:
        spelled = spelled[: HIDDEN_TEXT_SHOWN - 1] + "…"
    here = _closing(_quote(text, first, first + 1))
    if not spelled:  # tags that spell no character (U+E0001 LANGUAGE TAG, say)
        return f"The {where} carries invisible Unicode tag characters: {here}"
    return (
        f"The {where} carries text in invisible Unicode tag characters, which a reader does "
        f"not see: “{spelled}”. It starts here: {here}"
    )


def _hidden_variation_data(where: str, text: str) -> str | None:
    hidden = reading.hidden_variation_data(text)
    if hidden is None:
        return None
    first, count, spelled = hidden
    here = _closing(_quote(text, first, first + 1))
    said = (
        f"The {where} carries data in a run of {count} invisible variation selectors, which a "
        "reader does not see"
    )
    if not spelled:
        return f"{said}. It starts here: {here}"
    if len(spelled) > HIDDEN_TEXT_SHOWN:
        spelled = spelled[: HIDDEN_TEXT_SHOWN - 1] + "…"
    return f"{said}: “{spelled}”. It starts here: {here}"


def brand_findings(texts: Iterable[tuple[str, str]], rules: BrandRules) -> list[str]:
    """Every banned term or pattern found, quoted where it stands, and every missing
    disclaimer. ``texts`` are (where, text) pairs such as ("headline of creative 2", "…").

    Terms, patterns and disclaimers are matched on what a reader sees (``policies.reading``):
    a banned term written with look-alike letters, letters in another form (small capitals,
    enclosed, with hooks or combining marks), any dash or none, invisible characters or
    reversed by a right-to-left override is found, and quoted as submitted, with how it is
    disguised. Invisible text-direction controls (and any invisible right-to-left character)
    are a finding of their own, and so is text hidden in invisible Unicode tag characters
    (outside an emoji flag) or in a run of variation selectors, which is spelled out.

    A required disclaimer counts only if a reader sees it (in display order). Seen but written
    with look-alikes or invisible characters, it is a finding too: the reader sees it, but a
    screen reader, a search or the channel's own review reads something else, and an agent
    has no honest reason to write a disclaimer that way."""
    findings = []
    clock = _PatternClock()
    read = [(where, _Text(text)) for where, text in texts]
    terms = [
        (term, {fold: reading.term_key(term, fold) for fold in TERM_FOLDS})
        for term in rules.banned_terms
    ]
    for where, text in read:
        controls = _direction_controls(where, text.text)
        if controls:
            findings.append(controls)
        for hidden in (
            _control_characters(where, text.text),
            _hidden_tag_text(where, text.text),
            _hidden_variation_data(where, text.text),
        ):
            if hidden:
                findings.append(hidden)
        # Whole words: not inside another word, whether the term starts or ends with a letter
        # or a symbol ("100%", "#1"); a Latin letter at its end only needs no Latin letter
        # next to it ("_guaranteed_", "絶対guaranteed"), see ``policies.reading``.
        for term, keys in terms:
            found = text.find_term(term, keys)
            if found:
                what = f"the banned term “{term}”"
                findings.append(_uses(where, what, text.text, found))
        for pattern in rules.banned_patterns:
            if clock.ran_out(pattern):  # not tried again on the other texts: each would wait
                findings.append(_not_checked(where, pattern, "on the texts before it"))
                continue
            try:
                found = text.find_pattern(pattern, clock)
            except TimeoutError:
                findings.append(_not_checked(where, pattern, "by this text"))
                continue
            if found:
                what = f"the banned pattern /{pattern}/"
                findings.append(_uses(where, what, text.text, found))
    bodies = [(where, text) for where, text in read if where.startswith("body of ")]
    for disclaimer in rules.required_disclaimers:
        keys = {fold: reading.term_key(disclaimer, fold) for fold in TERM_FOLDS}
        for where, text in bodies:
            written = reading.plain(disclaimer) in reading.plain(text.text)
            if not text.shows(keys):
                unseen = (
                    " It is written, but text-direction controls reorder it." if written else ""
                )
                findings.append(
                    f"The {where} lacks the required disclaimer {_closing(disclaimer)}{unseen}"
                )
            elif not written:
                findings.append(
                    f"The {where} shows the required disclaimer “{disclaimer}” only disguised "
                    "(look-alike letters, invisible characters or reversed text): a screen "
                    "reader, a search or the channel's own review may not find it."
                )
    return findings


def _not_checked(where: str, pattern: str, ran_out: str) -> str:
    return (
        f"The {where} was not checked against the banned pattern /{pattern}/, whose searches "
        f"took longer than {PATTERN_SECONDS:g} s in all {ran_out} (it backtracks: its repeats "
        "need bounds), so a person reads it."
    )


def budget_cap_findings(
    *,
    proposed_budgets: Mapping[str, Decimal],
    campaign_caps: Mapping[str, Decimal | None],
    account_total_after: Decimal | None,
    account_cap: Decimal | None,
    account: str,
    currency: str,
    counted_in_batch: int = 0,
    counted_approved: Sequence[int] = (),
    budgets_before: Mapping[str, Decimal] | None = None,
    account_total_before: Decimal | None = None,
) -> list[str]:
    """What the budget caps refuse: a campaign's daily budget above its cap, an account's
    active campaigns' total above its cap (``account_total_after``, counting the
    ``counted_in_batch`` actions approved before this one in its batch, and the proposals
    ``counted_approved``, approved earlier and not yet executed). A cap stops what takes
    spending above it, not what brings it down towards it: a budget (or a total) already
    above its cap (one lowered since) may fall, or stay, as long as it does not rise
    (``budgets_before``, ``account_total_before``: as judged, before this action)."""
    before = budgets_before or {}

    def rises(after: Decimal, was: Decimal | None) -> bool:
        return was is None or after > was

    findings = [
        f"{campaign}'s daily budget would be {budget:,.2f} {currency}, "
        f"above its cap of {campaign_caps[campaign]:,.2f} {currency}."
        for campaign, budget in proposed_budgets.items()
        if campaign_caps.get(campaign) is not None
        and budget > campaign_caps[campaign]
        and rises(budget, before.get(campaign))
    ]
    if (
        account_cap is not None
        and account_total_after is not None
        and account_total_after > account_cap
        and rises(account_total_after, account_total_before)
    ):
        counted = []
        if counted_in_batch:
            actions = "action" if counted_in_batch == 1 else "actions"
            counted.append(f"the {counted_in_batch} {actions} approved before it in its batch")
        if counted_approved:
            ids = ", ".join(f"#{pk}" for pk in counted_approved)
            counted.append(f"{ids}, approved and not yet executed")
        counting = f", counting {' and '.join(counted)}" if counted else ""
        findings.append(
            f"Account {account}'s active campaigns would spend {account_total_after:,.2f} "
            f"{currency} a day, above its cap of {account_cap:,.2f} {currency}{counting}."
        )
    return findings
