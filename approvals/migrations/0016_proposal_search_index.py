"""The console's full-text search index, on PostgreSQL only (SQLite searches by substring).

The indexed expression is ``approvals.search.search_document()`` as Django writes it; the index
serves a search only while the two are the same (``tests/test_console_search.py`` checks it).
Built concurrently, so that agents keep submitting while it builds on a large table."""

from django.db import migrations

SEARCH_DOCUMENT = (
    "(to_tsvector('simple'::regconfig, COALESCE(\"summary\", '') || ' ' || "
    "COALESCE(\"rationale\", '') || ' ' || COALESCE(\"external_ref\", '')) "
    "|| jsonb_to_tsvector('simple'::regconfig, \"payload\", '[\"string\"]'::jsonb)) "
    "|| jsonb_to_tsvector('simple'::regconfig, \"verdict_reasons\", '[\"string\"]'::jsonb)"
)


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS proposal_search_idx "
            f"ON approvals_proposal USING gin (({SEARCH_DOCUMENT}))"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS proposal_search_idx")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("approvals", "0015_decision_summaries_open_index"),
    ]

    operations = [
        migrations.RunPython(create_index, drop_index, elidable=False),
    ]
