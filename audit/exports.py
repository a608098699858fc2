"""The audit trail of a period, streamed as CSV or JSON Lines.

Every historical record of every audited model, with who acted (user, agent or system), when,
why, the record's fields after the change, which of them it changed, and what the last
verification of the audit chain found of it, if it found it not as it was sealed. Records
come in order of model, record and time, from server-side cursors, so an export of any size
streams in constant memory. A time is written one way in both formats: ISO 8601, in UTC, to the
microsecond, as recorded ("2026-12-03T22:54:14.121073Z"), a notification's or a callback
event's log too.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from django.apps import apps
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Expression, Model

from audit.secret_fields import SECRET_FIELDS
from hitlproject.vocabulary import PEOPLE_PERMISSION

AUDITED_APPS = (
    # People and roles: their history is kept in ``access`` (``access.models``).
    "auth",
    "ledger",
    "approvals",
    "policies",
    "feedback",
    "notifications",
    "access",
    "executors",
)
COLUMNS = [
    "at",
    "model",
    "object_id",
    "history_id",
    "change",
    "actor_kind",
    "actor",
    "user",
    "reason",
    "changed",
    "fields",
    "chain",
]
CHANGE = {"+": "created", "~": "changed", "-": "deleted"}
# What the export calls a model's records where its console name is a person's own view.
EXPORTED_AS = {
    "notifications.reachedby": "the channels each person chose",
    "feedback.callbackevent": "the callback events sent to agents (each attempt to deliver "
    "one, what the agent's endpoint answered, and whether it was retried or given up)",
}
# JSON fields holding a log: entries each stamped "at" with when it was written, as Python
# writes a time ("…+00:00"). The export writes those times as it writes every other.
LOGS = {"notifications.notification": ("log",), "feedback.callbackevent": ("log",)}

# Values an app above adds to its model's records as the export writes them, each read in the
# record's own statement (no query per record), beside the field it reads: a proposal's
# ``verdict_policy_number``, the number among its policy's own versions of the version its
# ``verdict_policy_version`` (that version's history record) names, as the console and the
# API's ``verdict.policy.number`` count them. Keyed by model label, then by the added key:
# (the field it follows, a function making the expression over the historical record).
EXPORT_ADDED: dict[str, dict[str, tuple[str, Callable[[], Expression]]]] = {}


def export_adds(label: str, name: str, *, after: str, expression: Callable[[], Expression]):
    """Adds ``name`` to the exported fields of the records of the model ``label``, after the
    field ``after``: additive, the field it reads stays as it was."""
    EXPORT_ADDED.setdefault(label, {})[name] = (after, expression)


# ``json.dumps(value, sort_keys=True, default=str)``, its encoder made once: the same text,
# without a new encoder for each of the millions of values a verification compares.
_AS_DIGESTED = json.JSONEncoder(sort_keys=True, default=str)


def as_digested(value: object) -> str:
    """A value as a record's digest reads it: JSON's true is not its 1, nor 1.0 its 1, though
    Python holds them equal (a payload's ``true`` forged to ``1`` went unnamed)."""
    return _AS_DIGESTED.encode(value)


def audited_models():
    for app_label in AUDITED_APPS:
        for model in apps.get_app_config(app_label).get_models():
            if hasattr(model, "history") and hasattr(model.history, "model"):
                yield model


def exported_models(reader: AbstractBaseUser | None = None) -> list[type[Model]]:
    """The audited models whose records ``reader`` exports: those whose pages they may read
    in the console. One who reads people (the auditors) exports every one, those no role
    reads there too (each person's own channels, a group's second factor, the Google Ads
    links); an operator, who may not read people, exports no person's record, nor anyone's
    channels. With no reader (``manage.py export_audit``, on the server), every one."""
    if reader is None or reader.has_perm(PEOPLE_PERMISSION):
        return list(audited_models())
    return [
        model
        for model in audited_models()
        if reader.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")
    ]


def exported_kinds(models: Iterable[type[Model]]) -> list[str]:
    """What the export of ``models`` (``exported_models``) holds the changes of, in words,
    one for each."""
    return [
        EXPORTED_AS.get(model._meta.label_lower, str(model._meta.verbose_name_plural))
        for model in models
    ]


def instant(value: datetime) -> str:
    """A time as the export writes it, in both formats: ISO 8601 in UTC, to the microsecond
    (as recorded; JSON's usual milliseconds would make two records of one millisecond look
    simultaneous), "Z" for UTC, as the API writes one."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    written = value.isoformat(timespec="microseconds")
    return written.removesuffix("+00:00") + "Z" if value.tzinfo is not None else written


# The times a log's entry may hold: when it was written, and when it is retried.
LOG_TIMES = ("at", "retry_at")


def log_as_exported(entries: object) -> object:
    """A log's entries with their times ("at", "retry_at") written as ``instant`` writes a
    time; one that is not a time with its zone is left as it was written."""
    if not isinstance(entries, list):
        return entries
    exported = []
    for entry in entries:
        if isinstance(entry, dict):
            entry = {**entry}
            for key in LOG_TIMES:
                if not isinstance(entry.get(key), str):
                    continue
                try:
                    at = datetime.fromisoformat(entry[key])
                except ValueError:
                    continue
                if at.tzinfo is not None:
                    entry[key] = instant(at)
        exported.append(entry)
    return exported


class ExportEncoder(DjangoJSONEncoder):
    """Django's JSON, with times written as ``instant`` writes them."""

    def default(self, o):
        if isinstance(o, datetime):
            return instant(o)
        return super().default(o)


def audit_records(
    *,
    since: datetime,
    until: datetime,
    found: dict[tuple[str, int], str] | None = None,
    models: Iterable[type[Model]] | None = None,
) -> Iterator[dict]:
    """The records of the period, of ``models`` (``exported_models``; all by default).
    ``found``: what the last verification found of records it named, by their historical
    model's label and history id (``audit.chain.records_found_broken``), given in each one's
    ``chain``; empty where it named none."""
    found = found or {}
    for model in audited_models() if models is None else models:
        historical = model.history.model
        secret = SECRET_FIELDS.get(model._meta.label_lower, set())
        logs = LOGS.get(model._meta.label_lower, ())
        fields = [
            f.attname
            for f in historical._meta.concrete_fields
            if not f.attname.startswith("history_") and f.attname not in secret
        ]
        added = EXPORT_ADDED.get(model._meta.label_lower, {})
        for name, (after, _) in added.items():
            fields.insert(fields.index(after) + 1 if after in fields else len(fields), name)
        rows = (
            # Recorded in the period by their dates; each object's records in the order they
            # were written (a record's date is its writer's clock, which can disagree with
            # another host's by seconds), so that ``changed`` compares a record with the one
            # written before it.
            historical.objects.filter(history_date__gte=since, history_date__lt=until)
            .annotate(**{name: expression() for name, (_, expression) in added.items()})
            .order_by("id", "history_id")
            .values(
                *fields,
                "history_id",
                "history_date",
                "history_type",
                "history_change_reason",
                "history_actor_kind",
                "history_actor",
                "history_user_id",
                "history_user__username",
            )
            .iterator(chunk_size=2000)
        )
        # Many-to-many fields (the accounts an agent may act on) have history of their own:
        # each historical record's set is read and exported as a field, sorted.
        m2m = {
            field.name: (
                apps.get_model(
                    historical._meta.app_label, f"Historical{model.__name__}_{field.name}"
                ),
                f"{field.related_model._meta.model_name}_id",
            )
            for field in getattr(historical, "_history_m2m_fields", [])
        }
        previous_id, previous = None, None
        for row in rows:
            values = {name: row[name] for name in fields}
            for name in logs:
                values[name] = log_as_exported(values[name])
            for name, (through, column) in m2m.items():
                values[name] = sorted(
                    through.objects.filter(history_id=row["history_id"]).values_list(
                        column, flat=True
                    )
                )
            changed = None
            if previous_id == row["id"]:
                # As the chain's digest reads them: JSON's true is not its 1.
                changed = [
                    name
                    for name in values
                    if as_digested(values[name]) != as_digested(previous[name])
                ]
            previous_id, previous = row["id"], values
            yield {
                "at": row["history_date"],
                "model": model._meta.label_lower,
                "object_id": row["id"],
                "history_id": row["history_id"],
                "change": CHANGE.get(row["history_type"], row["history_type"]),
                "actor_kind": row["history_actor_kind"],
                "actor": row["history_actor"],
                # A person since deleted: their record keeps their id, and their name as actor.
                "user": row["history_user__username"]
                or (row["history_actor"] if row["history_user_id"] else ""),
                "reason": row["history_change_reason"] or "",
                "changed": changed,
                "fields": values,
                "chain": found.get((historical._meta.label_lower, row["history_id"]), ""),
            }


# Line breaks JSON leaves as they are in a string but that readers of lines (Python's
# ``splitlines``, editors) break a line at: written escaped, each record stays one line.
_LINE_BREAKS_IN_TEXT = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def as_jsonl(records: Iterator[dict]) -> Iterator[str]:
    for record in records:
        line = json.dumps(record, cls=ExportEncoder, ensure_ascii=False)
        yield line.translate(_LINE_BREAKS_IN_TEXT) + "\n"


# What a spreadsheet takes for the start of a formula in a cell it opens (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def as_text_cell(value):
    """A cell a spreadsheet shows as the text it is: one that would start a formula (a
    reason typed as ``=HYPERLINK(…)``, run when the auditor opens the file) is written with
    a leading apostrophe, as OWASP advises; the JSON Lines export keeps it as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def as_csv(records: Iterator[dict]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(COLUMNS)
    yield flush()
    for record in records:
        row = dict(record)
        row["at"] = instant(record["at"])
        row["changed"] = "" if record["changed"] is None else " ".join(record["changed"])
        row["fields"] = json.dumps(record["fields"], cls=ExportEncoder, ensure_ascii=False)
        writer.writerow([as_text_cell(row[column]) for column in COLUMNS])
        yield flush()
