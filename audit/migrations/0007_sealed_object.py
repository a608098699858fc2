"""A link records the object whose history its record was when it was sealed, and its hash
covers it, so that a break is marked on that object's page even if the record's id (the
object it reads as) was altered afterwards.

The links sealed before this have no such record: their object_id is filled from their records
as they are now, the best known, and their hash does not cover it (object_sealed false). A
record already moved to another object before this migration ran stays moved; a link's
object_id rewritten afterwards is not noticed for them."""

from django.apps import apps as installed
from django.db import migrations, models
from django.db.models import CharField, OuterRef, Subquery, Value
from django.db.models.functions import Cast, Coalesce


def objects_as_they_are_now(apps, schema_editor):
    # The links name historical tables of the apps above audit, whose migrations audit's must
    # not depend on; their models are read from the installed apps, for two columns only
    # (history_id and the object's id), which a historical table has from its start.
    ChainLink = apps.get_model("audit", "ChainLink")
    for table in ChainLink.objects.values_list("table", flat=True).distinct():
        try:
            history = installed.get_model(table)
        except LookupError:  # its app is gone: nothing to read them from
            continue
        of = history.instance_type._meta.pk.attname
        record = history.objects.filter(history_id=OuterRef("history_id")).values(of)[:1]
        ChainLink.objects.filter(table=table).update(
            object_id=Coalesce(Cast(Subquery(record), CharField()), Value(""))
        )


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
            field=models.BooleanField(default=True, help_text='Whether the hash covers object_id: not for links sealed before it was recorded, whose object_id was read from their records as they were then.'),
        ),
        migrations.AlterField(
            model_name='chainbreak',
            name='object_id',
            field=models.CharField(blank=True, help_text='The id of the object whose history it was when it was sealed.', max_length=64),
        ),
        migrations.RunPython(objects_as_they_are_now, migrations.RunPython.noop),
    ]
