"""An index for each person's newest entries in the admin's log (``django_admin_log``): the
console's home page lists them on every visit, and the console's own acts (a bulk decision
logs each proposal) make the log grow by the thousand. Without it, a person with 120,000
entries of 300,000 waited 150 ms on PostgreSQL for their ten newest, every time: a scan of
the whole table and a sort. The log is Django's table (django.contrib.admin), so the index
is made here, by name, rather than on a model this project does not own."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("audit", "0007_sealed_object"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS admin_log_by_person "
            "ON django_admin_log (user_id, action_time DESC)",
            "DROP INDEX IF EXISTS admin_log_by_person",
        )
    ]
