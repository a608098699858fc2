"""What every history-tracked model's writes go through, wherever they come from: the actor
stamped on each record, and a record of each link Django empties as the object it named is
deleted (``on_delete=SET_NULL`` and its kin), which it does with a plain UPDATE, and of each
many-to-many relation it deletes with the object related."""

from collections import defaultdict

from django.contrib.auth import get_user_model
from django.db import models
from django.db.models.signals import post_delete, pre_delete
from django.dispatch import receiver
from django.utils import timezone
from django.utils.text import capfirst
from simple_history.models import HistoricalRecords
from simple_history.signals import pre_create_historical_record

from audit.actors import Actor, acting_as, current_actor
from audit.exports import audited_models
from audit.history import history_insert, history_manager


@receiver(pre_create_historical_record)
def stamp_actor_on_history(sender, instance, history_instance, **kwargs) -> None:
    actor = current_actor()
    if actor is not None:
        for field, value in actor.history_stamp().items():
            setattr(history_instance, field, value)
    elif history_instance.history_user is not None:
        # A change made through an admin form: simple-history's middleware found the user.
        history_instance.history_actor_kind = "user"
        history_instance.history_actor = history_instance.history_user.get_username()


def acting_actor() -> Actor:
    """Who is acting where no service said: the current actor, else the person whose console
    request this is (simple-history's middleware keeps it), else an unnamed part of the
    platform."""
    actor = current_actor()
    if actor is not None:
        return actor
    user = getattr(getattr(HistoricalRecords.context, "request", None), "user", None)
    if isinstance(user, get_user_model()) and user.is_authenticated:
        return Actor.for_user(user)
    return Actor.system("unattributed")


# Links that stay as they are when what they name is deleted, or stop the deletion.
_LINKS_KEPT = (models.CASCADE, models.PROTECT, models.RESTRICT, models.DO_NOTHING)


def links_emptied_on_delete() -> dict[type[models.Model], list[models.ForeignKey]]:
    """The links of history-tracked models that Django empties, or sets to a value, when the
    object they name is deleted (``SET_NULL``, ``SET_DEFAULT``, ``SET(...)``): by the model
    of the object named. Django writes them with one UPDATE, which no history sees."""
    emptied = defaultdict(list)
    for model in audited_models():
        for field in model._meta.concrete_fields:
            if field.is_relation and field.remote_field.on_delete not in _LINKS_KEPT:
                emptied[field.related_model].append(field)
    return dict(emptied)


_EMPTIED = links_emptied_on_delete()


def links_about_to_empty(sender, instance, using, **kwargs) -> None:
    """Before ``instance`` is deleted: the rows whose links to it Django is about to empty,
    locked until the deletion commits, so that the rows read after it are the ones emptied."""
    instance._links_emptied = _rows_locked(
        using,
        [
            (field, {field.attname: getattr(instance, field.target_field.attname)})
            for field in _EMPTIED[sender]
        ],
    )


def _rows_locked(using, lookups: list[tuple[models.Field, dict]]) -> list[tuple]:
    """The ids of the rows each lookup finds, by field, locked until the transaction ends."""
    waiting = []
    for field, lookup in lookups:
        ids = list(
            field.model._base_manager.using(using)
            .filter(**lookup)
            .select_for_update()
            .values_list("pk", flat=True)
        )
        if ids:
            waiting.append((field, ids))
    return waiting


def _deletion_said(instance: models.Model) -> tuple[str, str]:
    """What was deleted, and the reason given for it if one was (" (the reason given: …)")."""
    deleted = f"{instance._meta.verbose_name} #{instance.pk} “{instance}”"
    why = getattr(instance, "_change_reason", None)
    return deleted, f" (the reason given: “{why}”)" if why else ""


def links_emptied_record(sender, instance, using, **kwargs) -> None:
    """After ``instance`` is deleted (its links emptied, in the same transaction): a "changed"
    record of each row whose link to it was emptied, by whoever deleted it, saying why."""
    waiting = instance.__dict__.pop("_links_emptied", ())
    if not waiting:
        return
    actor, date = acting_actor(), timezone.now()
    deleted, said = _deletion_said(instance)
    for field, ids in waiting:
        rows = list(field.model._base_manager.using(using).filter(pk__in=ids))
        for row in rows:
            now = getattr(row, field.attname)
            how = "emptied" if now is None else f"set to #{now}"
            row._change_reason = (
                f"{capfirst(field.verbose_name)}: {how}, as {deleted} was deleted{said}."
            )
        records = getattr(field.model, "_audited_history", None)
        if records is not None and records.m2m_fields:
            # The record holds the row's relations too (an agent's accounts), which only
            # simple-history's own writer copies: without them it would read as emptied.
            with acting_as(actor):
                for row in rows:
                    row._history_date = date
                    records.create_historical_record(row, "~")
        else:
            history_insert(history_manager(field.model), rows, actor=actor, date=date, update=True)


for named_model in _EMPTIED:
    pre_delete.connect(links_about_to_empty, sender=named_model, dispatch_uid="audit.links")
    post_delete.connect(links_emptied_record, sender=named_model, dispatch_uid="audit.links")


def relations_taken_off_on_delete() -> dict[type[models.Model], list[models.ManyToManyField]]:
    """The many-to-many relations whose history a tracked model keeps (a route's people and
    groups, an agent's accounts), by the model of the objects related: Django deletes an
    object's relation rows with it, which no history sees, and the record before would go on
    naming it."""
    taken = defaultdict(list)
    for model in audited_models():
        for field in getattr(model.history.model, "_history_m2m_fields", ()):
            taken[field.related_model].append(field)
    return dict(taken)


_TAKEN_OFF = relations_taken_off_on_delete()


def relations_about_to_go(sender, instance, using, **kwargs) -> None:
    """Before ``instance`` is deleted: the rows related to it that will lose it, locked until
    the deletion commits."""
    instance._relations_taken_off = _rows_locked(
        using, [(field, {field.name: instance.pk}) for field in _TAKEN_OFF[sender]]
    )


def relations_taken_off_record(sender, instance, using, **kwargs) -> None:
    """After ``instance`` is deleted, its relation rows with it: a "changed" record of each
    row that lost it (a route that no longer tells a group deleted), by whoever deleted it,
    saying why, with the relations it keeps."""
    waiting = instance.__dict__.pop("_relations_taken_off", ())
    if not waiting:
        return
    actor, date = acting_actor(), timezone.now()
    deleted, said = _deletion_said(instance)
    with acting_as(actor):
        for field, ids in waiting:
            for row in field.model._base_manager.using(using).filter(pk__in=ids):
                row._change_reason = (
                    f"{capfirst(field.verbose_name)}: {deleted} taken off, as it was deleted{said}."
                )
                row._history_date = date
                field.model._audited_history.create_historical_record(row, "~")


for related_model in _TAKEN_OFF:
    pre_delete.connect(relations_about_to_go, sender=related_model, dispatch_uid="audit.m2m")
    post_delete.connect(relations_taken_off_record, sender=related_model, dispatch_uid="audit.m2m")
