"""An outbox's log (a notification's, a callback event's) as the console says it: each
attempt, when, what the other end did and what came of it, in words; not the log's JSON,
whose times are ISO 8601 to the microsecond.

A log is a list of entries, each ``{"at": <ISO 8601>, "result": <words>}`` and, where the
sender recorded it, ``"then"``: what followed (a notification's proposal decided as it went,
a callback event retried at a time or given up). An entry marked by one of a caller's
``notes`` keys is no attempt but a note written between them (a Slack message's update that
failed for good, a callback event an operator sent again): it is said with its time, and not
numbered."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from hitlproject.formats import console_time


def entry_time(entry: dict, key: str = "at") -> datetime | None:
    """When an entry was written (or the time it holds under ``key``), or None if it says no
    time one can read (one without its zone among them: it cannot be said in UTC, nor
    compared with now)."""
    try:
        at = datetime.fromisoformat(entry[key])
    except (KeyError, TypeError, ValueError):
        return None
    return at if at.tzinfo is not None else None


def attempts_in_words(
    log: list | None, *, notes: Iterable[str] = (), attempts: int | None = None
) -> list[str]:
    """Each attempt of ``log`` as the console says it: "Attempt 1, 2026-12-04 21:55:04 UTC:
    accepted by … for operator@example.com", and what followed it ("; retried at …"). An
    entry holding one of the ``notes`` keys is said as "2026-12-05 10:02:11 UTC: <result>",
    unnumbered, with what followed it as an attempt's is. Given ``attempts`` (how many its
    outbox counts), an entry past them is said so too: a message's end written without an
    attempt ("not sent: …", "gave up") read "Attempt 1" beside "Attempts: 0"."""
    notes = tuple(notes)
    said = []
    number = 0
    for entry in log or []:
        if isinstance(entry, dict) and (
            any(key in entry for key in notes) or (attempts is not None and number >= attempts)
        ):
            at = entry_time(entry)
            result = str(entry.get("result", "—"))
            then = f"; {entry['then']}" if entry.get("then") else ""
            said.append(f"{console_time(at)}: {result}{then}" if at else f"{result}{then}")
            continue
        number += 1
        if not isinstance(entry, dict):
            said.append(f"Attempt {number}: {entry}")
            continue
        at = entry_time(entry)
        when = f", {console_time(at)}" if at else ""
        then = f"; {entry['then']}" if entry.get("then") else ""
        said.append(f"Attempt {number}{when}: {entry.get('result', '—')}{then}")
    return said
