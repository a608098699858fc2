"""The audit chain's migrations, run on a database whose chain is sealed: an upgrade from a
release before them, and a migration taken back and applied again, leave a chain that
verification finds whole, and that still names a record altered afterwards."""

import hashlib
import json
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from approvals.models import Decision, Proposal
from approvals.services.decisions import proposal_approve
from audit import chain
from audit.chain import chain_seal, chain_verify, chained_models, record_digest
from tests.conftest import reallocation
from tests.factories import evaluated

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_OBJECTS = ("audit", "0004_chain_verification_break")  # the release before 0005-0007
BEFORE_SEALED_OBJECT = ("audit", "0006_every_break")


def migrate_audit_to(target: tuple[str, str]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return executor


def migrate_to_latest() -> None:
    """Every app at its latest migration: going back in audit unapplied the later migrations
    of the apps that depend on it, which migrating audit alone forward left unapplied."""
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.fixture
def audit_migrations_restored() -> Iterator[None]:
    """Whatever the test does, every app is at its latest migration again after it."""
    yield
    migrate_to_latest()


def seal_as_before_objects(executor: MigrationExecutor) -> int:
    """Seal what is unsealed as the sealer did before 0007: a link's hash over the previous
    hash, the record's table and id and its digest, no object (the sealer of that release,
    with the chain's tables as that release had them)."""
    apps = executor.loader.project_state(BEFORE_OBJECTS).apps
    link_model = apps.get_model("audit", "ChainLink")
    layout_model = apps.get_model("audit", "ChainLayout")
    sealing = apps.get_model("audit", "ChainSealing")
    head = link_model.objects.order_by("-id").values_list("hash", flat=True).first()
    head = head or chain.GENESIS
    now, sealed = timezone.now(), 0
    for model in chained_models():
        table, fields = model._meta.label_lower, chain._fields(model)
        key = hashlib.sha256(json.dumps([table, fields]).encode()).hexdigest()
        layout, _ = layout_model.objects.get_or_create(
            key=key, defaults={"table": table, "fields": fields}
        )
        done = link_model.objects.filter(table=table).values_list("history_id", flat=True)
        rows = model.objects.exclude(history_id__in=list(done)).order_by(
            "history_date", "history_id"
        )
        for row in rows.values(*fields):
            digest = record_digest(row)
            head = hashlib.sha256(
                f"{head}|{table}|{row['history_id']}|{digest}".encode()
            ).hexdigest()
            link_model.objects.create(
                table=table,
                history_id=row["history_id"],
                layout=layout,
                digest=digest,
                hash=head,
                sealed_at=now,
            )
            sealed += 1
    sealing.objects.update_or_create(pk=1, defaults={"last_run_at": now})
    return sealed


def approved_proposal(amount: str) -> Proposal:
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation(amount))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    return proposal


def test_an_upgrade_over_a_chain_sealed_before_the_objects_were_recorded_verifies_clean(
    demo_world, audit_migrations_restored
):
    """A platform at audit 0004 with records written and sealed by that release's sealer,
    upgraded to the latest: the chain holds over every link, new records seal onto it, and
    a record of that release altered afterwards is named on its object's page as before."""
    executor = migrate_audit_to(BEFORE_OBJECTS)
    old = approved_proposal("280.00")
    written = sum(model.objects.count() for model in chained_models())
    sealed = seal_as_before_objects(executor)
    assert sealed >= written  # and what the session's worker wrote meanwhile

    migrate_to_latest()
    found = chain_verify()
    assert (found.holds, found.links, found.breaks) == (True, sealed, ())

    new = approved_proposal("120.00")
    assert chain_seal() > 0
    assert chain_verify().holds

    record = Decision.history.get(proposal_id=old.pk)
    Decision.history.filter(history_id=record.history_id).update(proposal_id=new.pk)
    broken = chain_verify().broken
    assert (broken.history_id, broken.what, broken.of) == (
        record.history_id,
        chain.ALTERED,
        f"decision #{record.id}",
    )
    assert broken.repointed == (
        f"it named proposal #{old.pk} when it was sealed, and names proposal #{new.pk} now"
    )


def test_taking_the_sealed_object_migration_back_and_applying_it_again_breaks_nothing(
    demo_world, audit_migrations_restored
):
    """Links sealed with their object (after 0007), the migration taken back to 0006 and
    applied again: nothing was tampered with, and verification says the chain holds (it said
    every link was rewritten, their hash no longer taken to cover the object it does). A
    record altered afterwards is still named as altered, on its object's page."""
    proposal = approved_proposal("280.00")
    assert chain_seal() > 0
    links = chain_verify().links

    migrate_audit_to(BEFORE_SEALED_OBJECT)
    migrate_to_latest()
    found = chain_verify()
    assert (found.holds, found.links, found.breaks) == (True, links, ())

    record = Proposal.history.filter(id=proposal.pk, status="approved").get()
    Proposal.history.filter(history_id=record.history_id).update(rationale="forged")
    broken = chain_verify().broken
    assert (broken.history_id, broken.what, broken.of) == (
        record.history_id,
        chain.ALTERED,
        f"proposal #{proposal.pk}",
    )
