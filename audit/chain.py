"""The audit chain: every historical record of every audited model, sealed into one hash chain
soon after it is written, so that a record altered, inserted or deleted afterwards shows.

Sealing (``chain_seal``, run by beat every minute) is the chain's only writer: under a lock, it
appends a link for each record written since the last run, table by table, oldest first, and
digests it over the fields its table had then (``ChainLayout``), so that a migration adding a
column breaks no old digest. The transactions
that write history never wait on it, so the chain costs the platform's own work nothing; a
record is protected from its sealing on, a minute or so after it is written.

``chain_verify`` walks the chain from the start and names every link that does not hold:
its record altered (the digest differs), deleted (nothing left to digest), or the links
themselves rewritten (a hash differs). Each link records, under its hash, the object whose
history its record was when sealed and the objects it pointed at: a break is marked on those
objects' pages, and on the pages of the objects the record names now if it was altered to.
A record with no link that is older than the last sealing run was inserted behind the chain's
back. The chain proves itself consistent; to prove it is also the chain it was, not one
rebuilt after its tail was cut and resealed, keep the head hash that verification prints
somewhere else (a ticket, a mail) and pass it back:
``verify_audit_chain --head HASH``.

The chain vouches for the history; the console shows the live rows. So verification also
compares each live row of every chained model with its history's last record, over the
fields that record holds, and names a row that differs, has no record, or is recorded
deleted (``_live_rows_diverging``): a row changed in the database past the history.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from django.apps import apps
from django.core.exceptions import FieldError
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from audit.exports import as_digested, audited_models, instant
from audit.models import ChainBreak, ChainLayout, ChainLink, ChainSealing, ChainVerification
from hitlproject.vocabulary import how_many

GENESIS = "0" * 64
BATCH = 2000
# The links verification reads at once, and the records they seal with them.
VERIFY_BATCH = 5000
# A record written this long before the last sealing run, yet unsealed, was slipped in later:
# no transaction of the platform's stays open that long.
SEALING_MARGIN = timedelta(minutes=10)
# A verification asked for this long ago and not done lost its worker: another may be asked for.
VERIFICATION_LOST_AFTER = timedelta(hours=1)
# The breaks a verification keeps, to name and mark; beyond them it only counts.
BREAKS_KEPT = 1000
_SEALER_LOCK = 0x4155_4454  # "AUDT": one sealer at a time


# What the chain does not seal, as its page says it: every table the platform keeps that has
# no history of its own (``unchained_models``), each named here, so that a table added without
# history is not silently left out of what the page says.
OUTSIDE_THE_CHAIN = {
    "admin.logentry": "Django's admin log of what people did in the console (what they changed "
    "in a record that keeps a history is sealed in that history)",
    "axes.accessattempt": "sign-ins, failed sign-ins and lockouts",
    "axes.accessfailurelog": "sign-ins, failed sign-ins and lockouts",
    "axes.accesslog": "sign-ins, failed sign-ins and lockouts",
    "axes.accessattemptexpiration": "sign-ins, failed sign-ins and lockouts",
    "otp_totp.totpdevice": "the second-factor devices people enrolled",
    "sessions.session": "who is signed in now",
    "approvals.idempotencyrecord": "the answers the API keeps for an agent's retried request",
    "executors.executionround": "the requests a channel executor sent and the keys it sent "
    "them with (each execution's attempts and results are sealed)",
    "policies.countedmove": "the moves counted against cumulative ceilings, derived from "
    "the proposals (whose history is sealed)",
    "policies.rulesversion": "which state of the rules each process holds",
    "notifications.slackrequestseen": "the Slack requests already handled",
    "auth.permission": "Django's own tables (permissions, content types)",
    "contenttypes.contenttype": "Django's own tables (permissions, content types)",
}
# The chain's own tables: what it is, not what it seals.
CHAIN_TABLES = ("audit",)


def unchained_models() -> list[type[models.Model]]:
    """The tables whose rows the chain does not seal: every model with no history, not a
    historical model itself, nor one of the chain's own."""
    chained = set(audited_models())
    historical = {model.history.model for model in chained}
    return [
        model
        for model in apps.get_models()
        if model not in chained
        and model not in historical
        and not model._meta.auto_created
        and not model.__name__.startswith("Historical")
        and model._meta.app_label not in CHAIN_TABLES
    ]


def outside_the_chain() -> list[str]:
    """What the chain does not seal, in words, each once, in the order given above."""
    return list(dict.fromkeys(OUTSIDE_THE_CHAIN.values()))


def chained_models() -> list[type[models.Model]]:
    """The historical models whose records the chain seals, in a fixed order."""
    return sorted(
        (model.history.model for model in audited_models()), key=lambda m: m._meta.label_lower
    )


def _fields(model: type[models.Model]) -> list[str]:
    return [field.attname for field in model._meta.concrete_fields]


# A layout's name for a many-to-many relation a record holds (a person's groups, an agent's
# accounts), kept beside it in a table of its own: "m2m:groups".
M2M = "m2m:"


def _sealed_fields(model: type[models.Model]) -> list[str]:
    """What a record is sealed over: its fields, and the relations it holds, each as the ids
    it names (who is in which group is a person's record as much as their name is)."""
    return _fields(model) + [
        f"{M2M}{field.name}" for field in getattr(model, "_history_m2m_fields", ())
    ]


def _columns(fields: list[str]) -> list[str]:
    """The columns of a layout's fields: the relations it holds are read apart."""
    return [name for name in fields if not name.startswith(M2M)]


def _with_relations(model: type[models.Model], rows: list[dict], fields: list[str]) -> list[dict]:
    """``rows`` (records of ``model``, as ``values`` reads them) with each relation their
    layout holds, as the sorted ids it named: one query a relation."""
    names = [name.removeprefix(M2M) for name in fields if name.startswith(M2M)]
    if not names or not rows:
        return rows
    ids = [row["history_id"] for row in rows]
    for name in names:
        related = model.instance_type._meta.get_field(name).related_model
        through = apps.get_model(model._meta.app_label, f"{model.__name__}_{name}")
        column = f"{related._meta.model_name}_id"
        named: dict[int, list] = defaultdict(list)
        for history_id, related_id in through.objects.filter(history_id__in=ids).values_list(
            "history_id", column
        ):
            named[history_id].append(related_id)
        for row in rows:
            row[f"{M2M}{name}"] = sorted(named.get(row["history_id"], []), key=str)
    return rows


# ``json.dumps(row, sort_keys=True, separators=(",", ":"), default=str)``, its encoder made
# once: the same text, so the same digests, without a new encoder for each record.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def record_digest(row: dict) -> str:
    """A record's fields, as the database returns them, hashed."""
    return hashlib.sha256(_CANONICAL.encode(row).encode()).hexdigest()


def link_hash(
    previous: str,
    table: str,
    history_id: int,
    digest: str,
    object_id: str | None = None,
    refs: dict[str, str] | None = None,
) -> str:
    """A link's hash: the previous link's, the record's table and id, its digest, and, as
    the link recorded them, the id of the object whose history it was when sealed and the
    objects it pointed at (``object_id`` None for the links sealed before the chain recorded
    them, whose hash they are not part of)."""
    sealed = f"{previous}|{table}|{history_id}|{digest}"
    if object_id is not None:
        sealed += f"|{object_id}|{json.dumps(refs or {}, sort_keys=True, separators=(',', ':'))}"
    return hashlib.sha256(sealed.encode()).hexdigest()


def _object_field(model: type[models.Model]) -> str:
    """The column of a historical record holding the id of the object whose history it is."""
    return model.instance_type._meta.pk.attname


@functools.cache
def _ref_fields(model: type[models.Model]) -> tuple[str, ...]:
    """The columns of a historical record pointing at other objects (a decision's proposal)."""
    return tuple(f.attname for f in model._meta.concrete_fields if f.is_relation)


def record_refs(model: type[models.Model], row: dict) -> dict[str, str]:
    """The objects a record points at, as text: {"proposal_id": "2"}."""
    return {name: str(row[name]) for name in _ref_fields(model) if row.get(name) is not None}


def _unsealed(model: type[models.Model]) -> models.QuerySet:
    sealed = ChainLink.objects.filter(
        table=model._meta.label_lower, history_id=OuterRef("history_id")
    )
    # In the order written: a record's date is the clock of the host that wrote it.
    return model.objects.filter(~Exists(sealed)).order_by("history_id")


def _layout(model: type[models.Model]) -> ChainLayout:
    table, fields = model._meta.label_lower, _sealed_fields(model)
    key = hashlib.sha256(json.dumps([table, fields]).encode()).hexdigest()
    layout, _ = ChainLayout.objects.get_or_create(
        key=key, defaults={"table": table, "fields": fields}
    )
    return layout


def chain_seal() -> int:
    """Seal the historical records written since the last run. Returns how many were sealed.

    A record older than the last run (by more than ``SEALING_MARGIN``) is left unsealed: it
    was slipped in behind the chain, and verification says so."""
    sealed = 0
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SEALER_LOCK])
        head = ChainLink.objects.order_by("-id").values_list("hash", flat=True).first()
        head = head or GENESIS
        last_run = _last_run()
        now = timezone.now()
        for model in chained_models():
            table, layout = model._meta.label_lower, _layout(model)
            of = _object_field(model)
            unsealed = _unsealed(model)
            if last_run is not None:
                unsealed = unsealed.filter(history_date__gte=last_run - SEALING_MARGIN)
            links = []
            for row in _rows_with_relations(model, unsealed, layout.fields):
                digest, object_id = record_digest(row), str(row[of])
                refs = record_refs(model, row)
                head = link_hash(head, table, row["history_id"], digest, object_id, refs)
                links.append(
                    ChainLink(
                        table=table,
                        history_id=row["history_id"],
                        layout=layout,
                        digest=digest,
                        object_id=object_id,
                        refs=refs,
                        hash=head,
                        sealed_at=now,
                    )
                )
                if len(links) == BATCH:
                    sealed += len(ChainLink.objects.bulk_create(links))
                    links = []
            sealed += len(ChainLink.objects.bulk_create(links))
        ChainSealing.objects.update_or_create(pk=1, defaults={"last_run_at": now})
    return sealed


def _rows_with_relations(
    model: type[models.Model], records: models.QuerySet, fields: list[str]
) -> Iterator[dict]:
    """``records``' values of ``fields``, the relations they hold with them, by batches."""
    batch = []
    for row in records.values(*_columns(fields)).iterator(chunk_size=BATCH):
        batch.append(row)
        if len(batch) == BATCH:
            yield from _with_relations(model, batch, fields)
            batch = []
    yield from _with_relations(model, batch, fields)


def _last_run() -> datetime | None:
    return ChainSealing.objects.filter(pk=1).values_list("last_run_at", flat=True).first()


@dataclass(frozen=True)
class Break:
    """Where the chain first fails to hold, and how."""

    table: str
    history_id: int
    what: str
    link: int | None = None
    # Whose history the record is, where it can still be read ("proposal #2"): a history
    # record's own number reads like the object's otherwise.
    of: str = ""
    object_id: object = None
    # The object whose history the record reads as now, when it is not the one it was sealed
    # in (its id, or the column it hangs on, altered): "proposal #3".
    moved_to: str = ""
    moved_to_id: object = None
    # The objects it pointed at when sealed, and those it points at now if others (None for
    # a reference emptied since).
    refs: dict = field(default_factory=dict)
    moved_refs: dict = field(default_factory=dict)
    # Those changes, as a person reads them: "it named proposal #2 when it was sealed, and
    # names no proposal now".
    repointed: str = ""
    # A live row that is not what its history last recorded (``what`` says how, whole):
    # ``history_id`` is that last record's, 0 if it has none.
    live: bool = False

    def __str__(self) -> str:
        if self.live:
            return f"{self.what}."
        where = f"link #{self.link}: " if self.link else ""
        of = f" (in the history of {self.of})" if self.of else ""
        if self.moved_to:
            of = f" (sealed in the history of {self.of}, now in that of {self.moved_to})"
        how = f": {self.repointed}" if self.repointed else ""
        return f"{where}{self.table} record {self.history_id}{of} {self.what}{how}."


def _whose(model: type[models.Model], object_id: object) -> str:
    """The object a historical record is of, as a person names it: "proposal #2"."""
    return f"{model.instance_type._meta.verbose_name} #{object_id}"


@dataclass(frozen=True)
class Verification:
    links: int  # those that held
    head: str
    unsealed: int
    # Every break found, in the chain's order (records slipped in last), up to
    # ``BREAKS_KEPT``; ``breaks_found`` counts them all.
    breaks: tuple[Break, ...] = ()
    passed: bool = False  # through the head hash it was asked about
    breaks_found: int = 0
    # The live rows compared with the last record of their history, and of how many models.
    live_rows: int = 0
    live_models: int = 0
    # Of ``breaks_found``, the live rows not as their history last recorded them: the rest
    # are records not as they were sealed (the chain broken at them).
    rows_found: int = 0

    @property
    def broken(self) -> Break | None:
        """The first break: where the chain stops being what it was."""
        return self.breaks[0] if self.breaks else None

    @property
    def holds(self) -> bool:
        return not self.breaks

    def verdict(self, through: str | None = None) -> tuple[bool, str]:
        """Whether the chain holds, through the head hash asked about if one was, and what
        verification found, in a sentence."""
        if not self.holds:
            first = (
                f"The platform's data is not what its history recorded: {self.broken}"
                if self.broken.live
                else f"The audit chain is broken at {self.broken}"
            )
            # In all, counted as the export's page counts them: a live row is in no order
            # of the chain's, and is no break of it.
            records = self.breaks_found - self.rows_found
            return False, first + (
                f" In all it found {found_in_all(records, self.rows_found)}, each marked on "
                "the history page of its record."
                if self.breaks_found > 1
                else ""
            )
        if through and not self.passed:
            return False, (
                f"The audit chain holds, but does not pass through {through}: it is not the "
                "chain whose head was recorded then."
            )
        if not self.links:  # a new platform, before its first sealing run
            if not self.unsealed:
                return True, "Nothing is sealed yet: no record has been written."
            wait, they_are = ("waits", "it is") if self.unsealed == 1 else ("wait", "they are")
            return True, (
                f"Nothing is sealed yet: {how_many(self.unsealed, 'record')} written {wait} for "
                f"the first sealing, a minute or so after {they_are} written."
            )
        return True, (
            f"The audit chain holds: {how_many(self.links, 'record')} sealed, head "
            f"{self.head}; {self.unsealed} written since the last sealing; "
            f"{how_many(self.live_rows, 'live row')} of "
            f"{how_many(self.live_models, 'kind')} of record "
            f"{'is' if self.live_rows == 1 else 'are'} as their history last recorded them."
        )


def found_in_all(records: int, rows: int) -> str:
    """What a verification found, counted as the chain's page and the export's say it: the
    records not as they were sealed apart from the live rows not as their history last
    recorded them (whose records may be as they were sealed): "the chain broken at 1 record,
    and 1 live row not as its history last recorded it"."""
    said = [f"the chain broken at {how_many(records, 'record')}"] if records else []
    if rows:
        said.append(
            "1 live row not as its history last recorded it"
            if rows == 1
            else f"{rows} live rows not as their history last recorded them"
        )
    return ", and ".join(said)


class _Link(NamedTuple):
    """A link as verification reads it: its columns, not a model instance (a verification
    reads hundreds of thousands)."""

    pk: int
    table: str
    history_id: int
    layout_id: int
    digest: str
    object_id: str | None
    refs: dict
    object_sealed: bool
    hash: str


def _links_in_batches() -> Iterator[list[_Link]]:
    after = 0
    links = ChainLink.objects.order_by("id").values_list(*_Link._fields)
    while batch := [_Link(*values) for values in links.filter(id__gt=after)[:VERIFY_BATCH]]:
        yield batch
        after = batch[-1].pk


def chain_verify(*, through: str | None = None) -> Verification:
    """Walk the chain and the records it seals; name every break, the first first.
    ``through``: a head hash recorded earlier, which the chain must pass through.

    A break does not stop the walk: past a record altered or deleted, the links still vouch
    for the records after it; past a rewritten link, each link after it is checked against
    the one before it as it stands. So a second record altered is named too, and its history
    page marked, at no more cost than a walk of a chain that holds."""
    by_table = {model._meta.label_lower: model for model in chained_models()}
    previous, count, passed = GENESIS, 0, through == GENESIS
    breaks: list[Break] = []
    found = 0
    named: set[tuple[str, str]] = set()  # the objects whose history the chain found broken

    def broken(link: _Link, what: str, row: dict | None = None) -> None:
        """A break, marked on the page of the object whose history the record was when it
        was sealed (what its link recorded), and on that of the object whose history it
        reads as now, if another: a record whose id was altered stays on its own page. A
        rewritten link vouches for nothing, not even the object it records: its break is
        marked on the page of the object whose history the record reads as now (the one the
        link names if the record is gone), where the auditor finds the row the chain no
        longer vouches for."""
        nonlocal found
        found += 1
        model = by_table[link.table]
        if link.object_id:
            named.add((link.table, str(link.object_id)))
        if row is not None:
            named.add((link.table, str(row.get(_object_field(model)))))
        if len(breaks) >= BREAKS_KEPT:
            return
        now = None if row is None else row.get(_object_field(model))
        if what == REWRITTEN:
            if row is None:
                what = REWRITTEN_GONE
            sealed, refs = (link.object_id, link.refs) if row is None else (now, None)
            breaks.append(
                Break(
                    link.table,
                    link.history_id,
                    what,
                    link.pk,
                    _whose(model, sealed) if sealed else "",
                    sealed or None,
                    refs=record_refs(model, row) if refs is None else refs,
                )
            )
            return
        sealed = link.object_id or now
        if sealed is None:
            breaks.append(Break(link.table, link.history_id, what, link.pk))
            return
        moved = now is not None and str(now) != str(sealed)
        refs = link.refs if link.object_id else record_refs(model, row or {})
        moved_refs = {}
        if row is not None and (refs_now := record_refs(model, row)) != refs:
            moved_refs = refs_now | {name: None for name in refs if name not in refs_now}
        breaks.append(
            Break(
                link.table,
                link.history_id,
                what,
                link.pk,
                _whose(model, sealed),
                sealed,
                _whose(model, now) if moved else "",
                now if moved else None,
                refs,
                moved_refs,
                _repointed(model, refs, moved_refs),
            )
        )

    layouts = ChainLayout.objects.in_bulk()  # a few a table: read once, not with each link
    for batch in _links_in_batches():
        wanted: dict[ChainLayout, list[int]] = defaultdict(list)
        for link in batch:
            wanted[layouts[link.layout_id]].append(link.history_id)
        rows, unreadable = {}, set()
        for layout, ids in wanted.items():
            model = by_table.get(layout.table)
            try:
                found_rows = _with_relations(
                    model,
                    list(model.objects.filter(history_id__in=ids).values(*_columns(layout.fields))),
                    layout.fields,
                )
                rows.update({(layout.table, row["history_id"]): row for row in found_rows})
            except (AttributeError, FieldError, LookupError):  # a table, or a column, is gone
                unreadable.add(layout.pk)
        for link in batch:
            row = rows.get((link.table, link.history_id))
            # Whether a link's hash covers its object is not for its row to say: the hash of
            # a link sealed with its object, computed without it, differs.
            of, refs = (link.object_id, link.refs) if link.object_sealed else (None, None)
            hashed = link_hash(previous, link.table, link.history_id, link.digest, of, refs)
            if hashed != link.hash:
                broken(link, REWRITTEN, row)
            elif link.layout_id in unreadable:
                broken(link, UNREADABLE)
            elif row is None:
                broken(link, DELETED)
            elif record_digest(row) != link.digest:
                broken(link, ALTERED, row)
            else:
                count += 1
            previous = link.hash
            passed = passed or link.hash == through
    unsealed, slipped_in, slipped_count = _unsealed_since(
        _last_run(), room=BREAKS_KEPT - len(breaks)
    )
    breaks.extend(slipped_in)
    found += slipped_count
    named.update((broken.table, str(broken.object_id)) for broken in slipped_in)
    diverging, diverging_count, compared = _live_rows_diverging(
        room=BREAKS_KEPT - len(breaks), named=named
    )
    breaks.extend(diverging)
    found += diverging_count
    return Verification(
        count,
        previous,
        unsealed,
        tuple(breaks),
        passed,
        found,
        live_rows=compared,
        live_models=len(by_table),
        rows_found=diverging_count,
    )


REWRITTEN = "is not where the chain says: its links were rewritten, inserted or removed here"
REWRITTEN_GONE = (
    "is not where the chain says (its links were rewritten, inserted or removed here) and is gone"
)
DELETED = "was deleted after it was sealed"
ALTERED = "was altered after it was sealed"
INSERTED = "was inserted after its time had been sealed"
UNREADABLE = "can no longer be read as it was sealed: a field it had is gone"


def _repointed(model: type[models.Model], refs: dict, moved_refs: dict) -> str:
    """What a record pointed at when it was sealed and points at now, for each reference
    altered since, as a person reads it: "it named proposal #2 when it was sealed, and names
    no proposal now" (a reference emptied is said so, not left out)."""
    said = []
    for field_ in model._meta.concrete_fields:
        name = field_.attname
        if not field_.is_relation or name not in moved_refs or moved_refs[name] == refs.get(name):
            continue
        kind = field_.related_model._meta.verbose_name
        then, now = refs.get(name), moved_refs[name]
        said.append(
            f"it named {f'{kind} #{then}' if then else f'no {kind}'} when it was sealed, and "
            f"names {f'{kind} #{now}' if now else f'no {kind}'} now"
        )
    return "; ".join(said)


def _unsealed_since(last_run: datetime | None, *, room: int) -> tuple[int, list[Break], int]:
    """How many records wait for the next sealing; those that cannot be waiting, written
    well before the last sealing run yet not sealed by it, the earliest first (up to
    ``room`` of them); and how many of these there are in all."""
    waiting, slipped_in, slipped_count = 0, [], 0
    for model in chained_models():
        unsealed = _unsealed(model)
        waiting += unsealed.count()
        if last_run is None:
            continue
        early = unsealed.filter(history_date__lt=last_run - SEALING_MARGIN)
        slipped_count += early.count()
        records = early.values("history_id", "id", *_ref_fields(model))
        for record in records[: max(0, room - len(slipped_in))]:
            slipped_in.append(
                Break(
                    model._meta.label_lower,
                    record["history_id"],
                    INSERTED,
                    of=_whose(model, record["id"]),
                    object_id=record["id"],
                    refs=record_refs(model, record),
                )
            )
    return waiting, slipped_in, slipped_count


LIVE_DIFFERS = "differs from its last recorded version"
LIVE_UNRECORDED = "has no recorded version: it was written past the history"
LIVE_DELETED = "is there, though its history last recorded it deleted"
# How much of a value a break quotes.
QUOTED = 80


def _compared_fields(model: type[models.Model]) -> list[str]:
    """The fields of a live row its history records, as the chain digests them: those the
    history does not copy (a secret), and those the platform writes without a record (a
    notification's delivery lease, declared as the model's ``history_unrecorded``), left
    out. Many-to-many relations are recorded apart, and not compared."""
    tracked = model.instance_type
    live = {f.attname for f in tracked._meta.concrete_fields}
    unrecorded = set(getattr(tracked, "history_unrecorded", ()))
    return [name for name in _fields(model) if name in live and name not in unrecorded]


def _quoted(value: object) -> str:
    if value is None or value == "":
        return "empty"
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True, default=str)
    elif isinstance(value, datetime):
        value = value.isoformat()
    text = str(value)
    return f"“{text[:QUOTED]}…”" if len(text) > QUOTED else f"“{text}”"


def _live_differences(model: type[models.Model], row: dict, record: dict) -> str:
    """How a live row differs from a record of its history, field by field, as a person
    reads it: "reason code is “too_aggressive”, recorded “contradicts_strategy”"."""
    opts = model.instance_type._meta
    said = []
    for name in row:
        if as_digested(row[name]) == as_digested(record[name]):
            continue
        now, then = row[name], record[name]
        if name.startswith(M2M):  # by name: "groups is “auditors, operators”"
            said.append(_relation_differences(opts.get_field(name.removeprefix(M2M)), now, then))
            continue
        label = next((f.verbose_name for f in opts.concrete_fields if f.attname == name), name)
        said.append(f"{label} is {_quoted(now)}, recorded {_quoted(then)}")
    return "; ".join(said)


def _relation_differences(field: models.ManyToManyField, now: list, then: list) -> str:
    """How a live relation differs from its record, by name: whole, "groups is “auditors,
    operators”, recorded “auditors”", where both read whole; else by what it has and lacks
    ("permissions lacks “… Can view user”, which its record holds"): a group's 60
    permissions cut short alike read the same, one taken off nowhere in them."""
    label = field.verbose_name
    whole_now, whole_then = _related_named(field, now), _related_named(field, then)
    whole = f"{label} is {_quoted(whole_now)}, recorded {_quoted(whole_then)}"
    if max(len(whole_now), len(whole_then)) <= QUOTED:
        return whole
    added = [pk for pk in now if pk not in then]
    taken = [pk for pk in then if pk not in now]
    said = []
    if added:
        said.append(f"{label} has {_quoted(_related_named(field, added))}, not in its record")
    if taken:
        said.append(
            f"{label} lacks {_quoted(_related_named(field, taken))}, which its record holds"
        )
    return "; ".join(said) or whole


def _as_recorded(row: dict, record: dict) -> bool:
    """Whether a live row reads as its record, every field as ``_live_differences`` compares
    them (``as_digested``), at one encoding of each whole: JSON values delimit themselves, so
    the two texts are equal exactly when each field's are. Only the row's fields are compared
    (the record holds more)."""
    return as_digested(row) == as_digested({name: record[name] for name in row})


def _related_named(field: models.ManyToManyField, ids: list) -> str:
    """The objects a relation names, as a person names them, in order, "auditors, operators";
    one since deleted by its kind and id."""
    found = field.related_model._base_manager.in_bulk(ids)
    kind = field.related_model._meta.verbose_name
    return ", ".join(
        sorted(str(found[pk]) if pk in found else f"{kind} #{pk} (since deleted)" for pk in ids)
    )


def _live_relations(
    model: type[models.Model], ids: list, relations: list[str]
) -> dict[str, dict[object, list]]:
    """For each relation (``M2M`` name) of the live objects ``ids``, the sorted ids each
    names now, by object: one query a relation."""
    found: dict[str, dict[object, list]] = {}
    for name in relations:
        field = model.instance_type._meta.get_field(name.removeprefix(M2M))
        through = field.remote_field.through
        owner, related = f"{field.m2m_field_name()}_id", f"{field.m2m_reverse_field_name()}_id"
        named: dict[object, list] = defaultdict(list)
        for owner_id, related_id in through.objects.filter(**{f"{owner}__in": ids}).values_list(
            owner, related
        ):
            named[owner_id].append(related_id)
        found[name] = {key: sorted(value, key=str) for key, value in named.items()}
    return found


def _live_breaks_in(
    model: type[models.Model], rows: list[dict], fields: list[str], named: set[tuple[str, str]]
) -> dict[object, Break]:
    """The rows of ``rows`` (live rows of ``model``'s object, their ``fields``) that are
    not what the last record of their history says, each with its break: two queries."""
    of = _object_field(model)
    table = model._meta.label_lower
    ids = [row[of] for row in rows]
    last: dict[object, dict] = {}
    # The last written, by history id: a record's time is its host's clock, and a host
    # whose clock runs behind would stamp a later record earlier (a false alarm).
    records = model.objects.filter(**{f"{of}__in": ids}).order_by(of, "-history_id")
    if connection.vendor == "postgresql":
        records = records.distinct(of)
    for record in records.values("history_id", "history_type", *fields):
        last.setdefault(record[of], record)
    # The relations the history records (a person's groups), as they are and as recorded.
    relations = [name for name in _sealed_fields(model) if name.startswith(M2M)]
    _with_relations(model, list(last.values()), relations)
    live_relations = _live_relations(model, ids, relations)
    breaks = {}
    for row in rows:
        whose = _whose(model, row[of])
        record = last.get(row[of])
        if (table, str(row[of])) in named:
            continue
        row_now = {**row, **{name: live_relations[name].get(row[of], []) for name in relations}}
        if record is not None and record["history_type"] != "-" and _as_recorded(row_now, record):
            continue
        if record is None:
            what, history_id = f"the live row of {whose} {LIVE_UNRECORDED}", 0
        elif record["history_type"] == "-":
            what = f"the live row of {whose} {LIVE_DELETED} (record {record['history_id']})"
            history_id = record["history_id"]
        elif differences := _live_differences(
            model, row_now, {name: record[name] for name in [*fields, *relations]}
        ):
            history_id = record["history_id"]
            what = f"the live row of {whose} {LIVE_DIFFERS} (record {history_id}): {differences}"
        else:
            continue
        breaks[row[of]] = Break(
            table,
            history_id,
            what,
            of=whose,
            object_id=row[of],
            refs=record_refs(model, row),
            live=True,
        )
    return breaks


def _snapshot():
    """One view of the database for the reads inside, where the database can give one
    without ending a transaction under way: a row and its history record written together
    are read together, never one before and the other after."""
    if connection.in_atomic_block:
        return transaction.atomic()
    atomic = transaction.atomic()
    if connection.vendor != "postgresql":
        return atomic  # SQLite reads one snapshot through a transaction

    class Snapshot:
        def __enter__(self):
            atomic.__enter__()
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

        def __exit__(self, *exc):
            return atomic.__exit__(*exc)

    return Snapshot()


def _live_rows_diverging(*, room: int, named: set[tuple[str, str]]) -> tuple[list[Break], int, int]:
    """The live rows of every chained model that are not what their history last recorded
    (a field changed past the history, or the row slipped in with none): up to ``room`` of
    them, and how many in all. Each table is read once, in batches of ``BATCH`` rows by id,
    with the last history record of each row of a batch read in one query beside it; a row
    found to differ is read again, with its record, once the table is done, and named only
    if it still differs as it did: a change committed between the two reads of a batch is
    not a break. A row whose history the chain found broken (``named``: a record of it
    altered, deleted, slipped in) is left to that break: compared with a history no longer
    vouched for, it would only be named twice. The third of what it returns: how many live
    rows it compared."""
    breaks: list[Break] = []
    count = compared = 0
    for model in chained_models():
        tracked = model.instance_type
        fields = _compared_fields(model)
        pk = tracked._meta.pk.attname
        suspects: dict[object, Break] = {}
        after = None
        while True:
            with _snapshot():
                rows = tracked._base_manager.order_by(pk)
                if after is not None:
                    rows = rows.filter(pk__gt=after)
                batch = list(rows.values(*fields)[:BATCH])
                if not batch:
                    break
                compared += len(batch)
                suspects.update(_live_breaks_in(model, batch, fields, named))
            after = batch[-1][pk]
        if not suspects:
            continue
        with _snapshot():
            again = list(tracked._base_manager.filter(pk__in=list(suspects)).values(*fields))
            still = _live_breaks_in(model, again, fields, named) if again else {}
        for key, broken in suspects.items():
            if still.get(key) == broken:
                count += 1
                if len(breaks) < room:
                    breaks.append(broken)
    return breaks, count, compared


def chain_verification_run(*, verification_id: int) -> ChainVerification | None:
    """Carry out a verification asked for in the console, and record what it found; None if
    it is not waiting to be run (taken by another worker, done, lost, or never asked): a task
    delivered twice walks the chain once."""
    taken = ChainVerification.objects.filter(
        pk=verification_id, under_way=True, started_at__isnull=True
    ).update(started_at=timezone.now())
    if not taken:
        return None
    verification = ChainVerification.objects.get(pk=verification_id)
    _record_found(verification, chain_verify(through=verification.through or None))
    return verification


def chain_verification_record(*, through: str = "") -> ChainVerification:
    """Verify the chain here and now (``manage.py verify_audit_chain``) and record what it
    found as a verification asked for in the console is recorded: listed on the chain's page,
    and a break it finds marked on the history pages it concerns."""
    verification = ChainVerification.objects.create(
        requested_by=None, through=through, under_way=None, started_at=timezone.now()
    )
    _record_found(verification, chain_verify(through=through or None))
    return verification


def _record_found(verification: ChainVerification, found: Verification) -> None:
    verification.holds, verification.found = found.verdict(verification.through or None)
    verification.links, verification.head, verification.unsealed = (
        found.links,
        found.head,
        found.unsealed,
    )
    verification.finished_at, verification.under_way = timezone.now(), None
    with transaction.atomic():
        verification.save()
        ChainBreak.objects.bulk_create(
            ChainBreak(
                verification=verification,
                table=broken.table,
                history_id=broken.history_id,
                object_id="" if broken.object_id is None else str(broken.object_id),
                moved_to="" if broken.moved_to_id is None else str(broken.moved_to_id),
                refs=broken.refs,
                moved_refs=broken.moved_refs,
                what=broken.what,
                live=broken.live,
            )
            for broken in found.breaks
        )


def chain_verification_ask(*, user, through: str = "") -> ChainVerification | None:
    """Ask for a verification, unless one is under way (None then): one at a time, however
    many people ask at once. One asked for more than ``VERIFICATION_LOST_AFTER`` ago and not
    done lost its worker, and is recorded so."""
    lost = ChainVerification.objects.filter(
        under_way=True, requested_at__lt=timezone.now() - VERIFICATION_LOST_AFTER
    )
    lost.update(under_way=None, found="Did not finish: its worker stopped before it was done.")
    try:
        with transaction.atomic():
            return ChainVerification.objects.create(requested_by=user, through=through)
    except IntegrityError:
        return None


@dataclass(frozen=True)
class RecordedBreak:
    """What the last verification found broken in one object's history: records on its own
    history page (``marked``: each record's history id, and what befell it), records sealed in
    it that its page no longer lists (``missing``: each one's history id, what befell it, and
    the id of the object whose history it reads as now, "" if none: deleted), or one of
    another object's that belongs to it (a decision's, on its proposal's page: ``of_model``,
    that history's model, and ``of_id``); ``what``: the first's."""

    verification: ChainVerification
    what: str
    marked: dict[int, str] = field(default_factory=dict)
    of_model: type[models.Model] | None = None
    of_id: str = ""
    missing: dict[int, tuple[str, str]] = field(default_factory=dict)
    history: type[models.Model] | None = None
    belongs: str = ""  # how the other object's record belongs to this one
    # This object's live row, or that of the other object belonging to it, not as its
    # history last recorded it: what verification said of it ("the live row of decision #3
    # differs from its last recorded version (record 17): reason code is …").
    live: str = ""

    @property
    def of(self) -> str:
        return _whose(self.of_model, self.of_id) if self.of_model else ""

    def whose(self, object_id: str) -> str:
        """Another object of this history's kind, as a person names it: "proposal #3"."""
        return _whose(self.history, object_id)


@dataclass(frozen=True)
class MarkedPage:
    """One break a verification recorded, as its page of the chain lists it: the object on
    whose history page it is marked (``model`` None where none can be named) and what befell
    the record."""

    model: type[models.Model] | None
    object_id: str
    table: str
    history_id: int
    what: str
    live: bool = False  # a live row not as its history last recorded it: ``what`` says all

    @property
    def whose(self) -> str:
        return _whose(self.model, self.object_id) if self.model else ""


def chain_breaks_marked(
    *, verification: ChainVerification, limit: int
) -> tuple[list[MarkedPage], int]:
    """The first ``limit`` breaks ``verification`` recorded, each with the page it is marked
    on, and how many more it recorded."""
    histories = {m._meta.label_lower: m for m in chained_models()}
    breaks = verification.breaks.order_by("pk").values_list(
        "table", "object_id", "moved_to", "history_id", "what", "refs", "moved_refs", "live"
    )
    shown = []
    for table, object_id, moved_to, history_id, what, refs, moved_refs, live in breaks[:limit]:
        history = histories.get(table)
        if live:
            shown.append(MarkedPage(history, object_id, table, history_id, what, live=True))
            continue
        if history is not None and moved_to:
            what = f"{what}, and reads as a record of {_whose(history, moved_to)} now"
        if history is not None and (repointed := _repointed(history, refs, moved_refs)):
            what = f"{what}: {repointed}"
        shown.append(MarkedPage(history if object_id else None, object_id, table, history_id, what))
    return shown, max(0, verification.breaks.count() - len(shown))


def last_verification_broken() -> ChainVerification | None:
    """The last verification that finished, if it found the chain broken; else None."""
    last = (
        ChainVerification.objects.filter(finished_at__isnull=False)
        .order_by("-finished_at", "-pk")
        .first()
    )
    return last if last is not None and last.holds is False else None


def records_found_broken() -> tuple[ChainVerification | None, dict[tuple[str, int], str]]:
    """The last verification that finished, if it found the chain broken, and what it found
    of each historical record it named, as the audit export gives it: by the record's table
    (its historical model's label) and history id, worded as the chain's page words it (a
    live row not as its last record: by that record), and when that verification finished."""
    last = last_verification_broken()
    if last is None:
        return None, {}
    marked, _ = chain_breaks_marked(verification=last, limit=last.breaks.count())
    found: dict[tuple[str, int], list[str]] = defaultdict(list)
    for page in marked:
        found[page.table, page.history_id].append(page.what)
    when = f"verification finished {instant(last.finished_at)}"
    return last, {key: f"{'; '.join(said)} ({when})" for key, said in found.items()}


@dataclass(frozen=True)
class RecordBreak:
    """What the last verification found of one historical record, read elsewhere than on
    its history page (a policy's version, on the pages of the proposals it routed)."""

    verification: ChainVerification
    what: str  # "was altered after it was sealed"


def record_break_recorded(
    *, history: type[models.Model], history_id: object, broken: ChainVerification | None
) -> RecordBreak | None:
    """Whether the last verification that finished found the record ``history_id`` of
    ``history`` (a historical model) not as it was sealed: read from what it recorded.
    ``broken``: that verification, if it found the chain broken (``last_verification_broken``,
    read once for a page that says what it found in more than one place)."""
    last = broken if history_id is not None else None
    if last is None:
        return None
    what = (
        ChainBreak.objects.filter(
            verification=last,
            table=history._meta.label_lower,
            history_id=history_id,
            live=False,
        )
        .values_list("what", flat=True)
        .first()
    )
    return RecordBreak(last, what) if what else None


def chain_break_recorded(
    *, model: type[models.Model], object_id: object, broken: ChainVerification | None
) -> RecordedBreak | None:
    """Whether the last verification that finished found the chain broken at records of
    ``object_id``'s history, or of a history belonging to it (a record whose model points at
    ``model``): read from what that verification recorded, never by walking the chain. A
    record is of the history it was sealed in, whatever its row says now; one whose row was
    moved to another object's history is of that one's too. ``broken``: that verification,
    if it found the chain broken (``last_verification_broken``)."""
    last = broken
    if last is None:
        return None
    breaks = ChainBreak.objects.filter(verification=last).exclude(object_id="").order_by("pk")
    histories = {m._meta.label_lower: m for m in chained_models()}
    own = getattr(getattr(model, "history", None), "model", None)
    here = str(object_id)
    if own is not None:
        found = breaks.filter(Q(object_id=here) | Q(moved_to=here), table=own._meta.label_lower)
        marked, missing, live = {}, {}, ""
        for history_id, sealed_in, moved_to, what, refs, moved_refs, is_live in found.values_list(
            "history_id", "object_id", "moved_to", "what", "refs", "moved_refs", "live"
        ):
            if is_live:
                live = what
                continue
            if repointed := _repointed(own, refs, moved_refs):
                what = f"{what}: {repointed}"
            if moved_to == here:  # listed here, sealed elsewhere
                marked[history_id] = (
                    f"{what}: it was sealed in the history of {_whose(own, sealed_in)}, and "
                    "moved here"
                )
            elif moved_to or what in (DELETED, REWRITTEN_GONE):  # listed elsewhere, or nowhere
                missing[history_id] = (what, moved_to)
            else:
                marked[history_id] = what
        if marked or missing:
            first = next(iter(marked.values())) if marked else next(iter(missing.values()))[0]
            return RecordedBreak(
                last, first, marked=marked, missing=missing, history=own, live=live
            )
        if live:
            return RecordedBreak(last, live, history=own, live=live)
    for table, history in histories.items():
        pointing = [
            f.attname
            for f in history._meta.concrete_fields
            if f.is_relation and f.related_model is model
        ]
        if not pointing:
            continue
        # As the record pointed when it was sealed, or as it points now if it was altered to
        # point elsewhere: both pages say so.
        points_here = Q()
        for attname in pointing:
            points_here |= Q(**{f"refs__{attname}": here}) | Q(**{f"moved_refs__{attname}": here})
        hit = breaks.filter(points_here, table=table).first()
        if hit is None:
            continue
        if hit.live:  # the other object's live row, as it points now
            return RecordedBreak(
                last, hit.what, of_model=history, of_id=hit.object_id, live=hit.what
            )
        now = hit.moved_refs or hit.refs  # as the record points now
        sealed_here = any(hit.refs.get(attname) == here for attname in pointing)
        points_here_now = any(now.get(attname) == here for attname in pointing)
        belongs = "which belongs to this one"
        if sealed_here and not points_here_now:
            named = _named(model, now, pointing)
            if named == _named(model, {}, pointing):
                named += ": the reference was emptied"
            belongs = f"which belonged to this one when it was sealed (it now names {named})"
        elif points_here_now and not sealed_here:
            belongs = (
                f"which names this one now (it belonged to {_named(model, hit.refs, pointing)} "
                "when it was sealed)"
            )
        return RecordedBreak(last, hit.what, of_model=history, of_id=hit.object_id, belongs=belongs)
    return None


def _named(model: type[models.Model], refs: dict, pointing: list[str]) -> str:
    """The object of ``model`` a record's references name, as a person names it: "proposal
    #3", or "no proposal"."""
    named = next((refs[attname] for attname in pointing if refs.get(attname)), None)
    kind = model._meta.verbose_name
    return f"{kind} #{named}" if named else f"no {kind}"
