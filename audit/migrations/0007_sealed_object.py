"""A link records the object whose history its record was when it was sealed and the objects
the record pointed at (a decision's proposal), and its hash covers them, so that a break is
marked on those objects' pages even if the record's id or foreign keys were altered afterwards.

The links sealed before this have no such record: their object_id and refs are filled from
their records as they are now, the best known, and their hash does not cover them
(object_sealed false). A record already moved to another object before this migration ran
stays moved; a link's object_id or refs rewritten afterwards is not noticed for them.

Links that were sealed with them (this migration taken back and applied again) are known by
their hash, which covers what their record names now if it was not altered meanwhile: they
are object_sealed again, not taken for links whose hash lost its object (every one of them
reported rewritten, with no tampering done). One whose record was altered while the migration
was taken back is reported rewritten."""

import hashlib
import json

from django.apps import apps as installed
from django.db import migrations, models
from django.db.models import CharField, OuterRef, Subquery, Value
from django.db.models.functions import Cast, Coalesce


def objects_as_they_are_now(apps, schema_editor):
    # The links name historical tables of the apps above audit, whose migrations audit's must
    # not depend on; their models are read from the installed apps, for history_id and the
    # object's id, which a historical table has from its start, and for the foreign keys it
    # has in the database now (the installed model may have more, added by a migration not
    # run yet when this one runs).
    ChainLink = apps.get_model("audit", "ChainLink")
    for table in ChainLink.objects.values_list("table", flat=True).distinct():
        try:
            history = installed.get_model(table)
        except LookupError:  # its app is gone: nothing to read them from
            continue
        of = history.instance_type._meta.pk.attname
        record = history.objects.filter(history_id=OuterRef("history_id")).values(of)[:1]
        links = ChainLink.objects.filter(table=table)
        links.update(object_id=Coalesce(Cast(Subquery(record), CharField()), Value("")))
        with schema_editor.connection.cursor() as cursor:
            columns = {
                column.name
                for column in schema_editor.connection.introspection.get_table_description(
                    cursor, history._meta.db_table
                )
            }
        pointing = [
            f.attname
            for f in history._meta.concrete_fields
            if f.is_relation and f.column in columns
        ]
        after = 0
        while batch := list(links.filter(id__gt=after).order_by("id")[:2000]):
            after = batch[-1].id
            rows = history.objects.filter(history_id__in=[link.history_id for link in batch])
            refs = {
                row["history_id"]: {n: str(row[n]) for n in pointing if row[n] is not None}
                for row in rows.values("history_id", *pointing)
            }
            for link in batch:
                link.refs = refs.get(link.history_id, {})
            ChainLink.objects.bulk_update(batch, ["refs"])
    previous, after = "0" * 64, 0
    while batch := list(ChainLink.objects.filter(id__gt=after).order_by("id")[:2000]):
        after = batch[-1].id
        covered = []
        for link in batch:
            if _hash_with_object(previous, link) == link.hash:
                covered.append(link.pk)
            previous = link.hash
        ChainLink.objects.filter(pk__in=covered).update(object_sealed=True)


def _hash_with_object(previous, link):
    # audit.chain.link_hash as this migration seals with it, kept here as it was: a later
    # change to how links are hashed does not change which links this one found sealed so.
    refs = json.dumps(link.refs or {}, sort_keys=True, separators=(",", ":"))
    sealed = f"{previous}|{link.table}|{link.history_id}|{link.digest}|{link.object_id}|{refs}"
    return hashlib.sha256(sealed.encode()).hexdigest()


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0006_every_break'),
    ]

    operations = [
        migrations.AddField(
            model_name='chainbreak',
            name='moved_to',
            field=models.CharField(blank=True, help_text='The id of the object whose history it reads as now, if another.', max_length=64),
        ),
        migrations.AddField(
            model_name='chainlink',
            name='object_id',
            field=models.CharField(blank=True, help_text='The id of the object whose history the record was when it was sealed.', max_length=64),
        ),
        migrations.AddField(
            model_name='chainlink',
            name='refs',
            field=models.JSONField(blank=True, default=dict, help_text='The objects the record pointed at when it was sealed: {"proposal_id": "2"}.'),
        ),
        migrations.AddField(
            model_name='chainbreak',
            name='refs',
            field=models.JSONField(blank=True, default=dict, help_text='The objects it pointed at when it was sealed.'),
        ),
        migrations.AddField(
            model_name='chainbreak',
            name='moved_refs',
            field=models.JSONField(blank=True, default=dict, help_text='The objects it points at now, if others.'),
        ),
        # The links there are were sealed without it: false for them, true for those to come.
        migrations.AddField(
            model_name='chainlink',
            name='object_sealed',
            field=models.BooleanField(default=False),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name='chainlink',
            name='object_sealed',
            field=models.BooleanField(default=True, help_text='Whether the hash covers object_id and refs: not for links sealed before they were recorded, whose object_id and refs were read from their records as they were then.'),
        ),
        migrations.AlterField(
            model_name='chainbreak',
            name='object_id',
            field=models.CharField(blank=True, help_text='The id of the object whose history it was when it was sealed.', max_length=64),
        ),
        migrations.RunPython(objects_as_they_are_now, migrations.RunPython.noop),
    ]
