from datetime import datetime

from django.apps import apps as global_apps
from django.conf import settings
from django.db import models
from django.utils import timezone
from simple_history.manager import SIMPLE_HISTORY_REVERSE_ATTR_NAME
from simple_history.models import HistoricalChanges, HistoricalRecords

from hitlproject.formats import console_time


class ActorStampedHistory(models.Model):
    """Base of every historical record: who acted, whether a person, an agent or the system.

    ``history_user`` (django-simple-history's own column) holds the user when a person acted;
    these columns say what kind of actor it was and name it, so an auditor reading one row
    knows "agent:optimizer" or "system:executor" without a join.
    """

    history_actor_kind = models.CharField(max_length=8, default="system")
    history_actor = models.CharField(max_length=150, default="unattributed")
    history_agent_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        abstract = True


def history_user(instance=None, request=None, **kwargs):
    """The person who acted, if a person did: the current actor, else an admin request's user.

    An agent authenticated through the API also sits on ``request.user``; it is not a user.
    """
    from django.contrib.auth import get_user_model

    from audit.actors import current_actor

    actor = current_actor()
    if actor is not None:
        return actor.user
    user = getattr(request, "user", None)
    if isinstance(user, get_user_model()) and user.is_authenticated:
        return user
    return None


class AuditedHistoricalRecords(HistoricalRecords):
    """django-simple-history's records, kept on the model they track (``_audited_history``)
    so that a change of fields and many-to-many relations saved together is written as one
    record (``history_record_once``), not one for the fields and one per relation."""

    def _get_history_user_fields(self):
        # A record names the person who acted for good: simple-history's link empties it
        # (``SET_NULL``) when the person is deleted, which alters every record they made
        # after the audit chain sealed it, and verification names each as tampered with. The
        # record keeps their id (and ``history_actor`` their name); simple-history offers no
        # option for the link's ``on_delete``.
        return {
            "history_user": models.ForeignKey(
                self.user_model or settings.AUTH_USER_MODEL,
                null=True,
                related_name=self.user_related_name,
                on_delete=models.DO_NOTHING,
                db_constraint=False,
            )
        }

    def finalize(self, sender, **kwargs):
        super().finalize(sender, **kwargs)
        if sender is self.cls:
            sender._audited_history = self

    def post_save(self, instance, created, using=None, **kwargs):
        # A save of fields the history does not keep, and of nothing else, changes nothing it
        # records: a login stamps a user's ``last_login`` alone (``update_fields``), and
        # would otherwise write a record of the user, the same as the last, at every login.
        update_fields = kwargs.get("update_fields")
        if not created and update_fields and set(update_fields) <= set(self.excluded_fields):
            return
        super().post_save(instance, created, using=using, **kwargs)

    def m2m_changed(self, instance, action, attr, pk_set, reverse, **kwargs):
        """A relation changed from its other side (a person added to a group from the group,
        ``group.user_set.add(user)``): a record of each object of this model it changed, not
        one of the other side's object taken for one of ours."""
        if not reverse:
            return super().m2m_changed(instance, action, attr, pk_set, reverse, **kwargs)
        if action == "pre_clear":
            instance._history_m2m_cleared = list(
                self.cls._default_manager.filter(**{attr: instance}).values_list("pk", flat=True)
            )
            return None
        if action == "post_clear":
            pk_set = instance.__dict__.pop("_history_m2m_cleared", [])
        elif action not in ("post_add", "post_remove"):
            return None
        for obj in self.cls._default_manager.filter(pk__in=pk_set or []):
            self.create_historical_record(obj, "~")
        return None


def audited_history(*, build: bool = True, **options) -> HistoricalRecords | dict:
    """History for a model people or agents change, stamped with the acting actor; with
    ``build=False``, its options, for ``simple_history.register`` of a model of another app
    (a user, a group)."""
    options = {
        "bases": [ActorStampedHistory],
        "get_user": history_user,
        "history_change_reason_field": models.TextField(null=True),
        **options,
    }
    return AuditedHistoricalRecords(**options) if build else options


def version_of(obj: models.Model) -> HistoricalChanges | None:
    """Of a past version's instance (``history_form_view``'s, a history row's), the
    historical record it was built from; None for a record as it is now."""
    return getattr(obj, SIMPLE_HISTORY_REVERSE_ATTR_NAME, None)


def version_recorded_at(obj: models.Model) -> datetime | None:
    """Of a past version's instance (``version_of``), that record's own time; None for a
    record as it is now. What its page reads of other records (a proposal's attempts) it
    reads as they stood then."""
    version = version_of(obj)
    return version.history_date if version is not None else None


class ChainSealing(models.Model):
    """When the sealer last ran, whether or not it found anything to seal: a record written
    well before that, yet unsealed, was slipped in behind the chain. One row."""

    last_run_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Last sealed at {console_time(self.last_run_at)}"


class ChainLayout(models.Model):
    """The fields of a historical table when its records were sealed: a record is digested as
    it was laid out then, so that a column added later changes no old digest."""

    table = models.CharField(max_length=100)
    fields = models.JSONField()
    key = models.CharField(max_length=64, unique=True, help_text="SHA-256 of table and fields.")

    def __str__(self) -> str:
        return f"{self.table} ({len(self.fields)} fields)"


class ChainLink(models.Model):
    """One historical record, sealed into the audit chain.

    ``digest`` is the SHA-256 of the record's fields as stored (those of its ``layout``);
    ``object_id`` is the id of the object whose history the record was when it was sealed, so
    that a break is marked on that object's page whatever the record says now; ``hash`` is
    the SHA-256 of the previous link's hash, the record's table and id, its digest and its
    object. Altering a sealed record breaks its digest; deleting it leaves its link pointing
    at nothing; rewriting links to hide either, or to move a record to another object, breaks
    every hash after them. ``audit.chain`` seals and verifies.
    """

    table = models.CharField(max_length=100)
    history_id = models.BigIntegerField()
    layout = models.ForeignKey(ChainLayout, on_delete=models.PROTECT, related_name="+")
    digest = models.CharField(max_length=64)
    object_id = models.CharField(
        max_length=64,
        blank=True,
        help_text="The id of the object whose history the record was when it was sealed.",
    )
    refs = models.JSONField(
        default=dict,
        blank=True,
        help_text='The objects the record pointed at when it was sealed: {"proposal_id": "2"}.',
    )
    object_sealed = models.BooleanField(
        default=True,
        help_text=(
            "Whether the hash covers object_id and refs: not for links sealed before they were "
            "recorded, whose object_id and refs were read from their records as they were then."
        ),
    )
    hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField(help_text="When the sealing run that chained it ran.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["table", "history_id"], name="chain_link_record")
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.table} {self.history_id}"


class ChainVerification(models.Model):
    """A verification of the audit chain, and what it found: asked for by a person in the
    console and run by a worker (``audit.chain.chain_verification_run``), or run by
    ``manage.py verify_audit_chain`` (``requested_by`` empty)."""

    requested_at = models.DateTimeField(default=timezone.now)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
        help_text="Empty when manage.py verify_audit_chain ran it.",
    )
    through = models.CharField(
        max_length=64,
        blank=True,
        help_text="A head hash kept elsewhere, which the chain must still pass through.",
    )
    # True while it is asked for and not done: unique, so only one is under way at a time,
    # however many people ask at once; null once it is done or lost.
    under_way = models.BooleanField(null=True, unique=True, default=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    holds = models.BooleanField(null=True)
    found = models.TextField(blank=True, help_text="What it found, in a sentence.")
    links = models.PositiveBigIntegerField(null=True)
    head = models.CharField(max_length=64, blank=True)
    unsealed = models.PositiveBigIntegerField(null=True)

    class Meta:
        ordering = ["-requested_at", "-pk"]

    def __str__(self) -> str:
        return f"Verification of {console_time(self.requested_at)}"


class ChainBreak(models.Model):
    """A record a verification found altered, deleted or slipped in behind the chain, a link
    rewritten, or a live row not what its history last recorded: each one it found, so that
    every record's history page can say so without walking the chain again
    (``audit.chain.chain_break_recorded``)."""

    verification = models.ForeignKey(
        ChainVerification, on_delete=models.CASCADE, related_name="breaks"
    )
    table = models.CharField(max_length=100)
    history_id = models.BigIntegerField()
    object_id = models.CharField(
        max_length=64,
        blank=True,
        help_text="The id of the object whose history it was when it was sealed.",
    )
    moved_to = models.CharField(
        max_length=64,
        blank=True,
        help_text="The id of the object whose history it reads as now, if another.",
    )
    refs = models.JSONField(
        default=dict, blank=True, help_text="The objects it pointed at when it was sealed."
    )
    moved_refs = models.JSONField(
        default=dict, blank=True, help_text="The objects it points at now, if others."
    )
    what = models.TextField()
    live = models.BooleanField(
        default=False,
        help_text="A live row not as its history last recorded it (history_id: that record's, "
        "0 if none), not a record of the chain.",
    )

    class Meta:
        indexes = [
            models.Index(fields=["verification", "table", "object_id"], name="chain_break_of")
        ]

    def __str__(self) -> str:
        if self.live:
            return self.what
        return f"{self.table} record {self.history_id} {self.what}"


def history_model_permissions(apps=global_apps) -> models.Q:
    """The permissions of the history models (a policy's versions, a proposal's): no admin
    shows them and nothing asks for them, so no role holds them and no chooser offers them
    ("Can change historical user" read as a right to rewrite the history). ``apps`` may be a
    migration's: its history models keep their base."""
    found = models.Q(pk__in=[])
    for model in apps.get_models():
        if issubclass(model, HistoricalChanges):
            opts = model._meta
            found |= models.Q(
                content_type__app_label=opts.app_label, content_type__model=opts.model_name
            )
    return found
