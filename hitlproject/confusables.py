"""What a text reads as, letter by letter: Unicode TR39's confusable classes and the skeleton
they give, for the brand guidelines' reading of a creative (``policies.reading``) and for the
names people tell records apart by (``hitlproject.validation``).

The TR39 data comes from the maintained package ``confusable-homoglyphs``, which only detects
confusables: it keeps confusables.txt as a symmetric table (each character with the characters
it may be mistaken for) and offers no skeleton. ``representatives`` rebuilds the classes from
that table (a prototype and the sources mapped to it) and picks one representative for each,
preferring a single ASCII character, so that plain Latin text is not folded at all except the
few ASCII look-alikes TR39 names ("0" for "O", "1" and "|" for "l"). TR39 maps "m" to "rn";
folding character by character, a class is never split across two characters, so "rn" in a
text is not read as "m" (nor "cl" as "d"): that would flag ordinary English words.
"""

import unicodedata
from collections import defaultdict
from functools import cache

from confusable_homoglyphs import confusables


@cache
def representatives() -> dict[str, str]:
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


def skeleton(text: str) -> str:
    """The text's TR39 skeleton: decomposed (NFD), each character read as its confusable
    class's representative, decomposed again. Two texts with one skeleton read alike: "сор"
    (Cyrillic) and "cop", "Віd" (Cyrillic "В" and "і") and "Bid". Case is kept."""
    folded = representatives()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(folded.get(char, char) for char in decomposed))


def describe(char: str) -> str:
    """A character as an operator can look it up: "U+0430 CYRILLIC SMALL LETTER A"."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} {name}".rstrip()
