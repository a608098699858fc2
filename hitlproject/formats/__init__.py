"""How the console writes its dates and times: its format module (``en/formats.py``, which
Django's own pages use) and, for the sentences, logs and messages that say a time in words,
``console_time``, the same format whatever language is active."""

from datetime import datetime

from django.utils import dateformat, timezone

from hitlproject.formats.en.formats import DATETIME_FORMAT


def console_time(value: datetime) -> str:
    """A time as the console writes one, in its time zone, named: "2026-12-05 19:31:56 UTC"."""
    return dateformat.format(timezone.localtime(value), DATETIME_FORMAT)
