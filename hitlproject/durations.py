"""Durations in words, as a policy owner types and reads them ("90 minutes", "36 hours",
"1 day"): the standard library only, so that the policy engine, which is, says its windows in
the words the policy's form shows them in."""

from datetime import timedelta

_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
# Past this many of its largest whole unit, a duration reads better in parts: "1 day 11 hours
# 59 minutes 59 seconds", not "129,599 seconds"; up to it, in one: "36 hours", "1,000 minutes".
_MOST_IN_ONE_UNIT = 1000


def describe_duration(duration: timedelta) -> str:
    """A window as a policy owner reads it: "90 days", "1 minute", "36 hours", "1 day 11
    hours 59 minutes 59 seconds"."""
    seconds = int(duration.total_seconds())
    for unit, size in _UNITS:
        if seconds % size == 0 and abs(seconds) >= size:
            count = seconds // size
            if count <= _MOST_IN_ONE_UNIT or seconds < 0:
                return _counted(count, unit)
            break
    else:
        return str(duration)
    parts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(_counted(count, unit))
    return " ".join(parts)


def _counted(count: int, unit: str) -> str:
    return f"{count:,} {unit}{'' if abs(count) == 1 else 's'}"


def elapsed_said(value: timedelta | None) -> str:
    """A time gone by (or to go) as a person says it: 45 s, 2.7 min, 12 min, 3.5 h, 2.1 d.
    Each reads within a few percent of the truth: under ten minutes to a tenth of a minute
    (whole minutes would make 91 s "2 min", and 1.8 min "1 min"). The one way the console
    says a duration it measured: the dashboard's oldest waiting, the queue's ages and how
    overdue a decision is read alike."""
    if value is None:
        return "—"
    seconds = value.total_seconds()
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        minutes = round(seconds / 60, 1)
        return f"{minutes:.1f} min" if minutes < 10 else f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
