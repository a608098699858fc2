"""What an edit changed in a payload, field by field and, in a text, word by word: below the
apps, as the decisions that record an edit (``approvals``) and the feedback that tells its
agent of it (``feedback``) both say it."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from typing import Any


def _word_opcodes(before: str, after: str) -> Iterator[tuple[str, str, str]]:
    """Each run of words of ``before`` and ``after``: (operation, run before, run after)."""
    old, new = before.split(), after.split()
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for operation, i1, i2, j1, j2 in matcher.get_opcodes():
        yield operation, " ".join(old[i1:i2]), " ".join(new[j1:j2])


def word_changes(before: str, after: str) -> list[dict[str, str]]:
    """The runs of words an editor replaced, removed (``to`` empty) or added (``from``
    empty), in order."""
    return [
        {"from": old, "to": new}
        for operation, old, new in _word_opcodes(before, after)
        if operation != "equal"
    ]


def word_runs(before: str, after: str) -> list[tuple[str, str]]:
    """The same changes as ``word_changes``, among the words kept, for a person to read:
    ("kept" | "removed" | "added", words), in order; a replacement is a removal then an
    addition."""
    runs = []
    for operation, old, new in _word_opcodes(before, after):
        if operation == "equal":
            runs.append(("kept", new))
            continue
        runs += [(kind, words) for kind, words in (("removed", old), ("added", new)) if words]
    return runs


def value_said(value: Any) -> str:
    """One side of a field's change (``payload_diff``'s ``from`` or ``to``) as a person reads
    it: a text as written, another value as JSON (its characters unescaped), "nothing" where
    the field was not there."""
    if value is None:
        return "nothing"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def payload_diff(before: Any, after: Any, path: str = "") -> dict[str, dict[str, Any]]:
    """Field-level differences between two payloads, keyed by dotted path; a changed text
    (creative copy, say) also lists the words changed."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: dict[str, dict[str, Any]] = {}
        for key in sorted(set(before) | set(after), key=str):
            changes.update(
                payload_diff(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
            )
        return changes
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        changes = {}
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            changes.update(payload_diff(old, new, f"{path}[{index}]"))
        return changes
    if before == after:
        return {}
    change = {"from": before, "to": after}
    texts = (before, after)
    if all(isinstance(text, str) for text in texts) and any(" " in text for text in texts):
        change["words"] = word_changes(before, after)
    return {path: change}
