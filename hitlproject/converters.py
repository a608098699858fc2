"""Path converters of the console's own URLs."""

import re
from collections.abc import Callable

from django.http import Http404, HttpRequest
from django.urls import URLPattern, path, re_path, register_converter

BIGGEST_ID = 2**63 - 1  # the largest value a 64-bit integer column (bigint) holds


class RecordIdConverter:
    """An id that a 64-bit integer column can hold: ``<id:object_id>``. A longer number
    matches no URL, where ``<int:...>`` would hand the view a number the database refuses
    (``OverflowError`` on SQLite, ``NumericValueOutOfRange`` on PostgreSQL): a 500."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > BIGGEST_ID:
            raise ValueError(f"{value} is past what an id holds.")  # no match
        return number

    def to_url(self, value: int | str) -> str:
        return str(value)


RECORD_ID = "id"  # importing this module registers it: f"<{RECORD_ID}:object_id>/"
register_converter(RecordIdConverter, RECORD_ID)


def no_such_record(request: HttpRequest, **kwargs) -> None:
    raise Http404("No such record.")


def record_page(suffix: str, view: Callable, name: str) -> list[URLPattern]:
    """The URL ``<id>/<suffix>`` of one record's page, and a 404 for anything else before
    ``<suffix>``: an admin's catch-all would otherwise send ``99999999999999999999/approve/``
    on to a change page of a record named ``99999999999999999999/approve``."""
    return [
        path(f"<{RECORD_ID}:object_id>/{suffix}", view, name=name),
        re_path(rf"^.+/{re.escape(suffix)}\Z", no_such_record),
    ]
