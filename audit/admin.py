"""What every page of the review console shares: lists that answer only the filters they offer,
secrets no lookup reaches, ids that are not ids refused as such, history that is read-only."""

import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers, widgets
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import flatten_fieldsets, quote, unquote
from django.contrib.admin.views.main import IGNORED_PARAMS, PAGE_VAR, ChangeList
from django.contrib.auth import get_user_model
from django.core import checks
from django.core.exceptions import (
    BadRequest,
    FieldDoesNotExist,
    ObjectDoesNotExist,
    PermissionDenied,
    ValidationError,
)
from django.core.validators import MinValueValidator
from django.db import DatabaseError, connection, models, router, transaction
from django.forms.models import model_to_dict
from django.http import Http404, HttpResponseRedirect, QueryDict
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import capfirst
from simple_history.admin import SimpleHistoryAdmin
from simple_history.manager import SIMPLE_HISTORY_REVERSE_ATTR_NAME
from simple_history.models import DeletedObject, ModelChange, ModelDelta
from simple_history.template_utils import (
    HistoricalRecordContextHelper,
    ObjDiffDisplay,
    conditional_str,
)
from simple_history.utils import get_history_model_for_model, get_m2m_reverse_field_name

from audit.actors import changed_by
from audit.chain import chain_break_recorded, last_verification_broken
from audit.history import history_manager
from audit.models import ChainVerification, version_recorded_at
from audit.secret_fields import lookup_touches_secret, sounds_secret_undeclared
from hitlproject.formats import console_time
from hitlproject.forms import PlainDecimalField, PlainIntegerField, number_box
from hitlproject.periods import describe_duration
from hitlproject.validation import (
    name_as_typed,
    name_reads_as_no_other,
    name_shows_as_itself,
    one_line,
    with_lf_line_breaks,
)
from hitlproject.vocabulary import as_sentence

logger = logging.getLogger(__name__)


class ConsoleChangeList(ChangeList):
    """A list that answers only what its own page asks: its filters' choices, its date
    hierarchy, a raw-id popup's limits (``related_fkey_lookups``). Any other lookup in the
    query string, typed by hand, is refused (400) before it runs: Django would run any lookup
    on any of the model's fields, and ``?callback_secret__startswith=whsec_a`` answers by
    listing the row or not, one character at a time; ``?rationale__regex=(a+)+$`` costs the
    database what the caller likes."""

    def get_filters(self, request):
        specs, has_filters, remaining, may_have_duplicates, has_active = super().get_filters(
            request
        )
        # What a filter used it has taken out; what is left and came from the query string
        # (not the date hierarchy's own bounds) is a lookup no page of the console makes.
        typed = self.get_filters_params()
        popups = raw_id_popup_lookups(self.model)
        for lookup in remaining:
            if lookup in typed and not all((lookup, value) in popups for value in typed[lookup]):
                raise DisallowedModelAdminLookup(f"Filtering by {lookup} not allowed")
        for spec in specs:
            if isinstance(spec, admin.ChoicesFieldListFilter):
                choice_value_refused(spec)
        return specs, has_filters, remaining, may_have_duplicates, has_active


def choice_value_refused(spec: admin.ChoicesFieldListFilter) -> None:
    """A field's choice the filter does not know (``?outcome__exact=maybe``) is refused saying
    so, as the queue's own filters refuse one: Django lists what has it, "0 decisions", as if
    there were none."""
    known = [str(value) for value, _ in spec.field.flatchoices if value is not None]
    if spec.field.blank:
        known.append("")  # stored, as a decision's reason code is where none was asked
    listed = ", ".join(value for value in known if value)
    for value in spec.lookup_val or ():
        if value not in known:
            # Empty (``?status__exact=``), Django lists what has no status, none, as "0
            # executions"; it is not the filter's "All" either, which leaves it out.
            raise IncorrectLookupParameters(
                f"the {spec.title} filter was given no value; it takes one of: {listed}."
                if value == ""
                else f"“{value}” is not one of the {spec.title} values it knows: {listed}."
            )


def raw_id_popup_lookups(model: type[models.Model]) -> set[tuple[str, str]]:
    """The (lookup, value) pairs that raw-id popups choosing ``model`` put in their URL: the
    ``limit_choices_to`` of the foreign keys that point at it."""
    pairs = set()
    for limits in model._meta.related_fkey_lookups:
        pairs |= set(
            widgets.url_params_from_lookup_dict(limits() if callable(limits) else limits).items()
        )
    return pairs


def refuse_nul(query: QueryDict) -> None:
    """PostgreSQL stores no NUL character: a filter value with one would be a 500."""
    if any("\x00" in key or "\x00" in value for key, values in query.lists() for value in values):
        raise BadRequest("The query contains a NUL character.")


#: The combining marks an address's letter keeps when quoted back: what any script puts on one
#: letter (Vietnamese two), not hundreds stacked into a tower drawn over the lines around it.
MARKS_PER_LETTER = 3


def address_words(text: str, limit: int = 100) -> str:
    """What an address said, as a page quotes it back: on one line, its direction overrides,
    isolates and marks and other invisible characters read as a space (a link made to be
    sent to an operator could otherwise turn the page's own words around them), at most
    ``MARKS_PER_LETTER`` combining marks on a letter, and cut short with "…"."""
    kept: list[str] = []
    marks = 0
    for char in unicodedata.normalize("NFC", one_line(text)):
        marks = marks + 1 if unicodedata.category(char) in ("Mn", "Me") else 0
        if marks <= MARKS_PER_LETTER:
            kept.append(char)
    text = "".join(kept)
    return f"{text[: limit - 1]}…" if len(text) > limit else text


def address_quoted(text: str, limit: int = 100) -> str:
    """``address_words`` between quotation marks, its own curly ones made straight, so that
    words an address carries ("1 was deleted by operator. No proposal #2") cannot pass for
    the page's own sentence around them."""
    words = address_words(text, limit).replace("“", '"').replace("”", '"')
    return f"“{words}”"


def refuse_nul_in_search(search_term: str) -> None:
    """A search, on a list or for an autocomplete, is a query too."""
    if "\x00" in search_term:
        raise BadRequest("The search contains a NUL character.")


def id_refusal(field: models.Field, value: str) -> str | None:
    """Why ``value`` is no id of ``field``'s kind, or None if it is one: it must read as one
    (``abc`` does not) and, for an integer, fit the column (an id past 64 bits is an
    ``OverflowError`` on SQLite and a ``DataError`` on PostgreSQL, not a record not found)."""
    try:
        parsed = field.to_python(value)
    except ValidationError:
        return f"Not an id: {address_quoted(value)}."
    if isinstance(field, models.ForeignObject):  # a one-to-one primary key: the target's column
        field = field.target_field
    try:
        low, high = connection.ops.integer_field_range(field.get_internal_type())
    except KeyError:  # not an integer column
        return None
    if isinstance(parsed, int) and (
        (low is not None and parsed < low) or (high is not None and parsed > high)
    ):
        return f"No record has the id {address_quoted(value)}: it is past what the column holds."
    return None


def valid_id(field: models.Field, value: str) -> None:
    """An id in a console URL that is no id of ``field``'s kind, or is past what its column
    holds, names no page (404)."""
    refusal = id_refusal(field, unquote(value))
    if refusal:
        raise Http404(refusal)


class ChosenByIdField(forms.ModelMultipleChoiceField):
    """Records chosen by id (an agent's accounts, a person's groups, a group's permissions): an
    id past what the column holds is no record's, a choice refused as any unknown id is, not a
    query the database refuses (``OverflowError`` on SQLite, ``DataError`` on PostgreSQL: a
    500)."""

    def _check_values(self, value):
        opts = self.queryset.model._meta
        key = opts.get_field(self.to_field_name) if self.to_field_name else opts.pk
        for pk in value:
            if isinstance(pk, str | int) and id_refusal(key, str(pk)):
                raise ValidationError(
                    self.error_messages["invalid_pk_value"],
                    code="invalid_pk_value",
                    params={"pk": pk},
                )
        return super()._check_values(value)


def console_acts_logged(request, acts: Iterable[tuple[models.Model, str]]) -> None:
    """Record acts a person took through the console's own views (a decision, a promotion, a
    retry, a claim) in the admin's log, each object with what was done to it ("Approved (as
    edited)"), as Django's admin records a form it saves: its "Recent actions" and every
    other reader of ``LogEntry`` see them, each linked to its object. Called once the act is
    done; the act's own record (its history, its decision) stays the source of truth, so a
    log that cannot be written (the embedded database busy) is logged as an error, and the
    person is answered as the act was done, not with an error page."""
    said: dict[str, list[models.Model]] = defaultdict(list)
    for obj, message in acts:
        said[message].append(obj)
    try:
        with transaction.atomic():
            for message, objs in said.items():
                LogEntry.objects.log_actions(
                    user_id=request.user.pk,
                    queryset=objs,
                    action_flag=CHANGE,
                    change_message=message,
                )
    except DatabaseError:
        logger.exception("The console's log of %s's acts was not written", request.user)


def console_act_logged(request, obj: models.Model, message: str) -> None:
    """One act on one object (``console_acts_logged``)."""
    console_acts_logged(request, [(obj, message)])


def lines_shown(lines: Iterable[str]) -> str:
    """Lines of text (a log's attempts in words) one under the other, escaped; "—" if none."""
    return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines)) or "—"


def keeps_history(model: type[models.Model]) -> bool:
    """Whether django-simple-history records the model (a callback event keeps its own log)."""
    return hasattr(model._meta, "simple_history_manager_attribute")


def least_allowed(db_field: models.IntegerField) -> int | None:
    """The least whole number a field's own validators allow, for its form field to say: a
    positive field's form field says "greater than or equal to 0" of -1, although the field
    refuses 0 too (a policy's required approvals, a digest's minutes are at least 1)."""
    bounds = [
        validator.limit_value
        for validator in db_field.validators
        if isinstance(validator, MinValueValidator) and isinstance(validator.limit_value, int)
    ]
    return max(bounds, default=None)


class ConsoleAdmin(admin.ModelAdmin):
    """The guards every admin of the console has, ours and the ones other apps register."""

    def get_changelist(self, request, **kwargs):
        return ConsoleChangeList

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # A number typed in plain digits, or refused saying so: Python reads "٩٥", "９５"
        # and "9_5" as 95, and a browser's number box rewrites or drops what it is given.
        # The admin's own number widgets (vIntegerField) are number boxes too.
        if not db_field.choices and "form_class" not in kwargs:
            if isinstance(db_field, models.DecimalField):
                kwargs |= {"form_class": PlainDecimalField, "widget": number_box()}
            elif isinstance(db_field, models.IntegerField):
                kwargs |= {"form_class": PlainIntegerField, "widget": number_box(whole=True)}
                least = least_allowed(db_field)
                if least is not None:
                    kwargs.setdefault("min_value", least)
        # An address typed without a scheme is taken as https (Django 6's default; 5 warns).
        if isinstance(db_field, models.URLField):
            kwargs.setdefault("assume_scheme", "https")
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        kwargs.setdefault("form_class", ChosenByIdField)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_form(self, request, *args, **kwargs):
        # Who reads the page, for its read-only references (``reference_as_its_reader_may``),
        # kept on the class Django's modelform_factory made for this request alone.
        form = super().get_form(request, *args, **kwargs)
        form.console_request = request
        return form

    def delete_view(self, request, object_id, extra_context=None):
        if request.method != "POST" or not self.has_delete_permission(request):
            # Nothing locked for whom Django refuses (403) before it reads the record.
            return super().delete_view(request, object_id, extra_context)
        # The record locked before Django looks for what protects it: a proposal routed by a
        # policy as it is deleted holds the policy (``FOR KEY SHARE``) until it commits, and
        # is then found, so the deletion is refused as it would have been a moment later,
        # rather than failing at its commit (500).
        with transaction.atomic(using=router.db_for_write(self.model)):
            with contextlib.suppress(ValueError, ValidationError):
                self.model._base_manager.filter(pk=unquote(object_id)).select_for_update().first()
            return super().delete_view(request, object_id, extra_context)

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        # Refused here too, so that not even a filter the page offered could reach a secret.
        return not lookup_touches_secret(self.model, lookup) and super().lookup_allowed(
            lookup, value, request
        )

    def changelist_view(self, request, extra_context=None):
        refuse_nul(request.GET)
        # A list is posted to for its bulk actions alone. Django answers a post by one who has
        # none (an auditor's bulk approval, typed by hand) with the list, as if it had been
        # read: refused, as every other change the person may not make is.
        if request.method == "POST" and not self.get_actions(request):
            raise PermissionDenied
        return super().changelist_view(request, extra_context)

    def get_changelist_instance(self, request):
        # Django sends a reader whose address it cannot read to ``?e=1``: the whole list,
        # unfiltered, with no word that what was asked for was dropped.
        try:
            return super().get_changelist_instance(request)
        except IncorrectLookupParameters as error:
            if error.args:  # a filter's value the list cannot read (``?reviewer__id__exact=abc``)
                asked = ", ".join(
                    f"{address_words(name)}={address_words(value)}"
                    for name, values in request.GET.lists()
                    if name not in (*IGNORED_PARAMS, PAGE_VAR)
                    for value in values
                )
                raise BadRequest(
                    f"The list cannot be filtered as the address asks "
                    f"({address_words(asked, 300)}): {address_words(str(error), 300)}"
                ) from error
        # A page past the end (the list shrank under a bulk decision on its last page, say):
        # its last page, filters kept.
        request.GET = request.GET.copy()
        request.GET.pop(PAGE_VAR, None)
        request.GET[PAGE_VAR] = str(super().get_changelist_instance(request).paginator.num_pages)
        return super().get_changelist_instance(request)

    def get_search_results(self, request, queryset, search_term):
        # Also what the autocomplete endpoint searches with.
        refuse_nul_in_search(search_term)
        return super().get_search_results(request, queryset, search_term)

    def response_action(self, request, queryset):
        """A bulk action on ids that are not ids (``_selected_action=abc``), or ids past what
        the column holds (``99999999999999999999999``), is a bad request, not a query that
        fails."""
        for selected in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            refusal = id_refusal(self.model._meta.pk, selected)
            if refusal:
                raise BadRequest(refusal)
        return super().response_action(request, queryset)


_reference_linked = helpers.AdminReadonlyField.get_admin_url


def reference_as_its_reader_may(field, remote_field, remote_obj):
    """A read-only reference on a console page (a decision's reviewer, a notification's
    recipient) links to its record's page only for a reader who may open it. Django links it
    for everyone (it has no request there), and a role without the permission followed it to
    "403 Forbidden"; they read the name alone."""
    request = getattr(field.form, "console_request", None)
    if request is not None:
        site = field.model_admin.admin_site
        if not site.is_registered(remote_field.model) or not site.get_model_admin(
            remote_field.model
        ).has_view_permission(request, remote_obj):
            return str(remote_obj)
    return _reference_linked(field, remote_field, remote_obj)


helpers.AdminReadonlyField.get_admin_url = reference_as_its_reader_may


def empty_structure(value) -> bool:
    """Whether a value holds nothing: None, "", or lists and dicts of nothing
    (``{"block": [], "review": []}`` says no more than ``{}``)."""
    if isinstance(value, dict):
        return all(empty_structure(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(empty_structure(item) for item in value)
    return value is None or value == ""


class WholeValues(ObjDiffDisplay):
    """Each value of a change as recorded, whatever its length: django-simple-history cuts
    one past 100 characters in the middle ("Approvals | agent API key[1099 chars]rsion"), and
    the history is where an auditor reads what a record held (a group's permissions, a
    policy's description)."""

    def common_shorten_repr(self, *args) -> tuple[str, ...]:
        return tuple(map(conditional_str, args))


class ConsoleHistoryValues(HistoricalRecordContextHelper):
    """A change's values as a person reads them: an empty reference or value is "—" (not
    "Deleted policy (pk=None)", "None" or nothing), and a reference to a record since deleted
    says so. A JSON field reads whole, as JSON (not a truncated Python dict), or as
    ``json_in_words`` says it; a JSON field that went from nothing to a structure of nothing
    did not change. ``delta`` is the change being shown (its records, older and newer), for
    a value that reads by another field of its record."""

    delta = None
    # Each field's place on the record's form (``AuditedHistoryAdmin.form_order``): the
    # changes are listed in it, as the form lists the settings, not by their names A to Z.
    form_order: dict[str, int] = {}

    def context_for_delta_changes(self, delta):
        self.delta = delta
        changed = [
            change
            for change in delta.changes
            if not (
                self._is_json(change.field)
                and empty_structure(change.old)
                and empty_structure(change.new)
            )
        ]
        changed.sort(key=lambda change: self.form_order.get(change.field, len(self.form_order)))
        return super().context_for_delta_changes(dataclasses.replace(delta, changes=changed))

    def get_obj_diff_display(self) -> ObjDiffDisplay:
        return WholeValues()

    def _is_json(self, field_name: str) -> bool:
        return isinstance(self.model._meta.get_field(field_name), models.JSONField)

    def json_in_words(self, field_name: str, value) -> str | None:
        """A JSON field's value in words, where the model has them; None for JSON."""
        return None

    def stringify_delta_change_values(self, change, old, new):
        if not self._is_json(change.field):
            return super().stringify_delta_change_values(change, old, new)
        return tuple(
            "—"
            if empty_structure(value)
            else (
                self.json_in_words(change.field, value)
                or json.dumps(value, ensure_ascii=False, sort_keys=True)
            )
            for value in (old, new)
        )

    def prepare_delta_change_value(self, change, value):
        value = super().prepare_delta_change_value(change, value)
        field = self.model._meta.get_field(change.field)
        if isinstance(value, DeletedObject):
            return related_in_words(value)
        if field.many_to_many:  # the accounts an agent may act on: "demo, spring-sale"
            return ", ".join(related_in_words(item) for item in value) or "—"
        if self._is_json(change.field):
            return value
        if value is None or value == "":
            return "—"
        if field.choices and not isinstance(value, list):  # "Pending review", not pending_review
            return dict(field.flatchoices).get(value, value)
        if isinstance(value, datetime):  # as the console writes a time, not Python's repr
            return console_time(value)
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, timedelta):
            return describe_duration(value)
        if isinstance(value, str) and "\n" in value.strip():
            # A text of several lines (banned terms, one a line) reads line by line, each as
            # written (a blank one as “”): a page joins its lines with spaces, and "guaranteed
            # risk-free free money" does not say whether "free money" is one term or two.
            return " · ".join(f"“{line}”" for line in value.strip("\n").splitlines())
        return value


def related_in_words(value) -> str:
    """A related record as the history reads it; one since deleted says so."""
    if isinstance(value, DeletedObject):
        if value.pk is None:
            return "—"
        return f"{value.model._meta.verbose_name} #{value.pk} (since deleted)"
    return str(value)


def m2m_as_recorded(field: models.ManyToManyField):
    """A past version's many-to-many field (the accounts an agent could act on, whom a route
    told), shown by its version page as that version recorded it: the model instance that page
    is built from reads its relations as they are now."""
    related = get_m2m_reverse_field_name(field)

    def as_recorded(obj) -> str:
        version = getattr(obj, SIMPLE_HISTORY_REVERSE_ATTR_NAME, None)
        if version is None:
            return "—"
        names = []
        for row in getattr(version, field.name).order_by(related):
            try:
                names.append(str(getattr(row, related)))
            except ObjectDoesNotExist:
                pk = getattr(row, f"{related}_id")
                names.append(related_in_words(DeletedObject(field.related_model, pk)))
        return ", ".join(names) or "—"

    as_recorded.short_description = field.verbose_name
    return as_recorded


def created_delta(record) -> ModelDelta:
    """A "created" record's values as changes from nothing, in the form ``diff_against``
    gives (related records as objects, many-to-many rows as their through rows), leaving out
    what it was created without."""
    m2m = {field.name for field in record._history_m2m_fields}
    values = model_to_dict(record, fields=[f.name for f in record.tracked_fields if f.editable])
    changes = []
    for name, value in values.items():
        field = record._meta.get_field(name)
        if name in m2m or empty_structure(value) or name == record.instance_type._meta.pk.name:
            continue
        if isinstance(field, models.ForeignKey):
            try:
                related = getattr(record, name)
            except ObjectDoesNotExist:
                related = None
            value = related if related is not None else DeletedObject(field.related_model, value)
        changes.append(ModelChange(name, None, value))
    for name in sorted(m2m):
        original = record.instance_type._meta.get_field(name)
        rows = getattr(record, name).order_by(get_m2m_reverse_field_name(original))
        through = rows.model._meta
        columns = [
            f.name
            for f in through.fields
            if f.editable and f.name not in ["id", "m2m_history_id", "history"]
        ]
        related = [c for c in columns if isinstance(through.get_field(c), models.ForeignKey)]
        new = [{c: getattr(row, c) for c in columns} for row in rows.select_related(*related)]
        if new:
            changes.append(ModelChange(name, [], new))
    changes.sort(key=lambda change: change.field)
    return ModelDelta(changes, [change.field for change in changes], record, record)


def shown_as_of(obj: models.Model) -> datetime:
    """The time a page shows a record as of: a past version's page, that version's own time
    (``version_recorded_at``); else now. What a record says of time ("waiting to be tried
    again at …") it says as it was then."""
    return version_recorded_at(obj) or timezone.now()


def said_as_recorded(record) -> str:
    """A historical record's object in words as it read at the record's own time: its model's
    ``said_at(when)`` where it says something of time (a callback event waiting to be tried
    again), else its ``str``, which may read the record's time (``version_recorded_at``).
    ``history_object`` carries no ``history_date`` of its own: it is given its record, as
    ``record.instance`` gives it, without that one's read of the fields the history leaves out."""
    obj = record.history_object
    setattr(obj, SIMPLE_HISTORY_REVERSE_ATTR_NAME, record)
    # What the record was read with (its ``select_related``), its object names without a
    # query a row: a kill switch's account.
    recorded = {field.name: field for field in record._meta.concrete_fields}
    for field in obj._meta.concrete_fields:
        kept = recorded.get(field.name)
        if field.many_to_one and kept is not None and kept.is_cached(record):
            field.set_cached_value(obj, kept.get_cached_value(record))
    said_at = getattr(obj, "said_at", None)
    return said_at(record.history_date) if callable(said_at) else str(obj)


def chain_broken_as_last_verified(request) -> ChainVerification | None:
    """The last verification of the audit chain, if it found it broken
    (``last_verification_broken``), read once for a request: a page that says what it found
    in more than one place (a proposal's, of its own records and of the policy version that
    routed it) says it of one verification, asked once."""
    if not hasattr(request, "chain_broken_as_last_verified"):
        request.chain_broken_as_last_verified = last_verification_broken()
    return request.chain_broken_as_last_verified


def is_history_page(request) -> bool:
    match = request.resolver_match
    return bool(match and match.url_name and match.url_name.endswith("_simple_history"))


class AuditedHistoryAdmin(ConsoleAdmin, SimpleHistoryAdmin):
    """History that is read, never rewritten.

    django-simple-history's version page saves a POST from anyone who may view history; here
    a past version is shown, read-only, and never restored: every change goes through the
    platform's services or a change form, and is recorded with its actor.

    Who made each change is one column in words ("the executor (system)"), from the actor
    stamped on the record (templates/simple_history/object_history_list.html).
    """

    history_values = ConsoleHistoryValues

    def __init__(self, model, admin_site):
        super().__init__(model, admin_site)
        # Each many-to-many field the history records, and the name its version page shows
        # it by, as that version recorded it.
        self.m2m_recorded: dict[str, str] = {}
        if keeps_history(model):
            for field in get_history_model_for_model(model)._history_m2m_fields:
                name = f"{field.name}_as_recorded"
                setattr(self, name, m2m_as_recorded(field))
                self.m2m_recorded[field.name] = name

    # The history list's "Created" entry shows the values the record was created with, as
    # the entries after it show their changes (a route: whom it tells, what it covers), not
    # only on the version's own page.
    history_shows_created_values = False

    def get_historical_record_context_helper(self, request, historical_record):
        helper = self.history_values(self.model, historical_record)
        helper.form_order = self.form_order()
        return helper

    def form_order(self) -> dict[str, int]:
        """Each field's place on the record's form: as its fieldsets (or fields) list it,
        then the model's other fields in the model's order."""
        declared = flatten_fieldsets(self.fieldsets) if self.fieldsets else list(self.fields or ())
        opts = self.model._meta
        in_model = [field.name for field in sorted([*opts.fields, *opts.many_to_many])]
        return {name: place for place, name in enumerate(dict.fromkeys([*declared, *in_model]))}

    # The list reads an object's changes in the order they were written, newest first, and
    # each entry's changes against the one written before it: a record's date is the clock of
    # the host that wrote it (simple-history orders by it), and a web host's and a worker's
    # can disagree by seconds.
    def get_history_queryset(self, request, history_manager, pk_name, object_id):
        return (
            super()
            .get_history_queryset(request, history_manager, pk_name, object_id)
            .order_by("-history_id")
        )

    def set_history_delta_changes(self, request, historical_records, foreign_keys_are_objs=True):
        super().set_history_delta_changes(request, historical_records, foreign_keys_are_objs)
        if not self.history_shows_created_values or not historical_records:
            return
        oldest = list(historical_records)[-1]  # of this page: no entry after it to diff with
        if hasattr(oldest, "history_delta_changes"):
            return
        earlier = (
            type(oldest)
            .objects.filter(
                **{self.model._meta.pk.attname: getattr(oldest, self.model._meta.pk.attname)},
                history_id__lt=oldest.history_id,
            )
            .order_by("-history_id")
            .first()
        )
        if earlier is not None:  # on the next page
            delta = oldest.diff_against(earlier, foreign_keys_are_objs=foreign_keys_are_objs)
        elif oldest.history_type == "+":
            delta = created_delta(oldest)
        else:
            return
        helper = self.get_historical_record_context_helper(request, oldest)
        oldest.history_delta_changes = helper.context_for_delta_changes(delta)

    # One save of a change form is one historical record. django-simple-history writes one
    # when the row is saved and another for each many-to-many relation the form then sets
    # (a route's users and groups): an auditor would read one change as several. Here the
    # record waits until the relations are saved too, and is written once, with them.
    def save_model(self, request, obj, form, change) -> None:
        records = getattr(type(obj), "_audited_history", None)
        if records is not None and records.m2m_fields:
            obj.skip_history_when_saving = True
            obj._history_record_waits = True
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        obj = form.instance
        super().save_related(request, form, formsets, change)
        if getattr(obj, "_history_record_waits", False):
            del obj.skip_history_when_saving, obj._history_record_waits
            type(obj)._audited_history.create_historical_record(obj, "~" if change else "+")

    def revert_disabled(self, request, obj=None) -> bool:
        return True

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # Django's words guess ("… doesn't exist. Perhaps it was deleted?") and lead home;
        # the history knows. A deleted record leads to its history, saying who deleted it,
        # when and why; one never recorded is said so, on its list. One that is there but
        # not this person's to open (another's channels) keeps Django's words.
        key = unquote(object_id)
        try:
            pk = opts.pk.to_python(key)
        except ValidationError:
            pk = None
        if not keeps_history(self.model) or (
            pk is not None and self.model._default_manager.filter(pk=pk).exists()
        ):
            # Django's words, quoting the address's key as ``address_words`` does: raw, a
            # direction override in it turned "doesn't exist" around.
            return super()._get_obj_does_not_exist_redirect(
                request, opts, quote(address_words(key))
            )
        deletion = last_deletion(self.model, pk) if pk is not None else None
        if deletion is None:
            # An address that is no id is quoted: its words could pass for the page's own.
            said = (
                f"No {opts.verbose_name} #{address_words(key)} was ever recorded."
                if pk is not None
                else f"No {opts.verbose_name} was ever recorded at {address_quoted(key)}: "
                f"that is not a {opts.verbose_name}'s id."
            )
            self.message_user(request, said, messages.WARNING)
            return HttpResponseRedirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
            )
        when = console_time(deletion.history_date)
        reason = deletion.history_change_reason
        self.message_user(
            request,
            f"{capfirst(opts.verbose_name)} #{key} was deleted at {when} by "
            f"{changed_by(deletion)}; this is its history."
            f"{f' The reason given: “{reason}”' if reason else ''}",
            messages.WARNING,
        )
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[object_id])
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # What the last verification of the audit chain found of this record, or of one
        # belonging to it (a decision's, on its proposal's page), is said where it is read,
        # not only on its history page: an auditor read a decision's note altered in the
        # database on its proposal's page with no word of it.
        # An address that is no id is the admin's to answer (below), saying so.
        if request.method == "GET" and not id_refusal(self.model._meta.pk, unquote(object_id)):
            found = chain_break_recorded(
                model=self.model,
                object_id=unquote(object_id),
                broken=chain_broken_as_last_verified(request),
            )
            if found is not None:
                opts = self.model._meta
                extra_context = {
                    **(extra_context or {}),
                    "chain_break_here": found,
                    "chain_break_here_history": reverse(
                        f"admin:{opts.app_label}_{opts.model_name}_history", args=[object_id]
                    ),
                }
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        valid_id(self.model._meta.pk, object_id)
        # The person who made a change links to their page only for those who may open it:
        # an auditor following "policy-owner (person)" was shown "Not allowed".
        people = (
            self.admin_site.get_model_admin(get_user_model())
            if self.admin_site.is_registered(get_user_model())
            else None
        )
        # A record the last verification of the audit chain found altered is said so on the
        # page an auditor reads it from, as of that verification.
        chain_break = chain_break_recorded(
            model=self.model,
            object_id=unquote(object_id),
            broken=chain_broken_as_last_verified(request),
        )
        chain_break_url = None
        if chain_break is not None and chain_break.of_model is not None:
            opts = chain_break.of_model.instance_type._meta
            with contextlib.suppress(NoReverseMatch):
                chain_break_url = reverse(
                    f"admin:{opts.app_label}_{opts.model_name}_history", args=[chain_break.of_id]
                )
        # Records sealed in this history that its list no longer shows: deleted, or moved to
        # another object's history (their id altered), which is named and linked.
        chain_break_missing = []
        for history_id, (what, moved_to) in (chain_break.missing if chain_break else {}).items():
            moved_url = None
            if moved_to:
                with contextlib.suppress(NoReverseMatch):
                    opts = self.model._meta
                    moved_url = reverse(
                        f"admin:{opts.app_label}_{opts.model_name}_history", args=[moved_to]
                    )
            whose = chain_break.whose(moved_to) if moved_to else ""
            chain_break_missing.append((history_id, what, whose, moved_url))
        extra_context = {
            **(extra_context or {}),
            "people_viewable": people is not None and people.has_view_permission(request),
            "chain_break": chain_break,
            "chain_break_url": chain_break_url,
            "chain_break_missing": chain_break_missing,
        }
        return super().history_view(request, object_id, extra_context)

    def history_form_view_title(self, request, obj):
        # The version's title as it read then: "View “Approved” on #3: waiting to be tried
        # again at 12:04:35", not "since 12:04:35" for a record written at 12:04:05.
        version = getattr(obj, SIMPLE_HISTORY_REVERSE_ATTR_NAME, None)
        if version is None:
            return super().history_form_view_title(request, obj)
        return f"View {said_as_recorded(version)}"

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method == "POST":
            raise PermissionDenied("History is read-only.")
        if not keeps_history(self.model):
            raise Http404("No history is kept of these records.")
        valid_id(self.model._meta.pk, object_id)
        history = get_history_model_for_model(self.model)
        valid_id(history._meta.pk, version_id)
        # Which moment the page shows, above it: each version's title is the record's, and
        # eight versions of one proposal read alike, with nothing saying when each stood.
        version = history._default_manager.filter(
            **{self.model._meta.pk.attname: unquote(object_id)}, history_id=version_id
        ).first()
        if version is not None:
            # One deleted since has no page showing it as it is now (its change page leads
            # to its history): the line says so, and leads there.
            deletion = last_deletion(self.model, unquote(object_id))
            if (
                deletion is not None
                and self.model._base_manager.filter(pk=unquote(object_id)).exists()
            ):
                deletion = None
            extra_context = {
                **(extra_context or {}),
                "version_as_of": (
                    f"This is {self.model._meta.verbose_name} #{unquote(object_id)} as it stood "
                    f"at {console_time(version.history_date)}, as recorded by "
                    f"{changed_by(version)}."
                ),
                "version_deleted": (
                    f"It was deleted at {console_time(deletion.history_date)} by "
                    f"{changed_by(deletion)}."
                    if deletion is not None
                    else ""
                ),
                "version_history_url": reverse(
                    f"admin:{self.model._meta.app_label}_{self.model._meta.model_name}_history",
                    args=[object_id],
                ),
            }
        return super().history_form_view(request, object_id, version_id, extra_context)

    def get_readonly_fields(self, request, obj=None):
        if is_history_page(request):
            if self.fieldsets:
                # As the version's page lays them out (``get_fieldsets``), which may depend on
                # the version (a proposal's timeline rows on its status then): a field missing
                # here is asked of the model's form, and the page answered 500.
                shown = flatten_fieldsets(self.get_fieldsets(request, obj))
            elif self.fields:
                # As the record's own page shows it, its values read by the admin's own
                # methods (an execution's states in words) where it names them.
                shown = flatten_fieldsets([(None, {"fields": self.fields})])
            else:
                hidden = set(self.exclude or ())  # secrets (a key's digest) stay hidden
                opts = self.model._meta
                shown = [
                    field.name
                    for field in sorted([*opts.fields, *opts.many_to_many])
                    if field.name not in hidden
                    and (not field.many_to_many or field.name in self.m2m_recorded)
                ]
            return [self.m2m_recorded.get(name, name) for name in shown]
        return super().get_readonly_fields(request, obj)

    def get_exclude(self, request, obj=None):
        # A past version's relations are shown as recorded (``m2m_as_recorded``), never in
        # a chooser that looks as if it could change them.
        exclude = super().get_exclude(request, obj)
        if not is_history_page(request):
            return exclude
        return [*(exclude or ()), *(field.name for field in self.model._meta.many_to_many)]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if not self.m2m_recorded or not is_history_page(request):
            return fieldsets

        def as_recorded(names):
            if isinstance(names, str):
                return self.m2m_recorded.get(names, names)
            return tuple(self.m2m_recorded.get(name, name) for name in names)

        return [
            (
                title,
                {**options, "fields": list(dict.fromkeys(map(as_recorded, options["fields"])))},
            )
            for title, options in fieldsets
        ]


class ReadOnlyAdmin(AuditedHistoryAdmin):
    """Records written only by the platform's services: everyone reads, nobody edits here."""

    show_full_result_count = False
    # Fields shown by a method of the admin's (a log in words, not its JSON), as a
    # ChangeReasonAdmin's are on a page read only: each page of these is one.
    shown_read_only: dict[str, str] = {}

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *self.shown_read_only.values()]

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return list(dict.fromkeys(self.shown_read_only.get(name, name) for name in fields))

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def guard_registered_admins(site: admin.AdminSite) -> None:
    """Give the admins that apps installed before ours registered (users and groups, login
    attempts) the console's guards; ours have them from ``AuditedHistoryAdmin``."""
    for model, model_admin in list(site._registry.items()):
        if not isinstance(model_admin, ConsoleAdmin):
            guarded = type(
                f"Console{type(model_admin).__name__}", (ConsoleAdmin, type(model_admin)), {}
            )
            site.unregister(model)
            site.register(model, guarded)


guard_registered_admins(admin.site)


def _searched_and_sorted_paths(model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
    """(where, lookup path) for every lookup an admin's own page may run on a field: its field
    filters, search, orderings and date hierarchy."""
    model = model_admin.model
    paths = []
    for item in model_admin.list_filter:
        path = item[0] if isinstance(item, list | tuple) else item
        if isinstance(path, str):
            paths.append(("list_filter", path))
    paths += [("search_fields", name.lstrip("=^@")) for name in model_admin.search_fields]
    paths += [("ordering", name) for name in model_admin.ordering or () if isinstance(name, str)]
    if model_admin.date_hierarchy:
        paths.append(("date_hierarchy", model_admin.date_hierarchy))
    for name in model_admin.list_display:  # a column sorts by its field or its order field
        if not isinstance(name, str):
            continue
        try:
            order = model._meta.get_field(name).name
        except FieldDoesNotExist:
            shown = getattr(model_admin, name, None) or getattr(model, name, None)
            order = getattr(shown, "admin_order_field", None)
        if isinstance(order, str):
            paths.append(("list_display", order))
    return paths


@checks.register(checks.Tags.admin, checks.Tags.security)
def check_console_secrets(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    return console_secret_problems(admin.site)


def console_secret_problems(site: admin.AdminSite) -> list[checks.CheckMessage]:
    """Every admin of the console has its guards, no page of it filters, searches or sorts by
    a secret, and a field that sounds secret is declared one (``audit.secret_fields``)."""
    errors = []
    for model, model_admin in site._registry.items():
        label = f"{model._meta.label}'s admin"
        if not isinstance(model_admin, ConsoleAdmin):
            errors.append(
                checks.Error(
                    f"{label} does not have the console's guards.",
                    hint="Inherit audit.admin.AuditedHistoryAdmin.",
                    obj=type(model_admin),
                    id="audit.E001",
                )
            )
        for where, path in _searched_and_sorted_paths(model_admin):
            if lookup_touches_secret(model, path):
                errors.append(
                    checks.Error(
                        f"{label} reaches a secret through its {where}: {path}.",
                        obj=type(model_admin),
                        id="audit.E002",
                    )
                )
        for field in model._meta.concrete_fields:
            if sounds_secret_undeclared(model, field.name):
                errors.append(
                    checks.Error(
                        f"{model._meta.label}.{field.name} sounds secret but is not declared.",
                        hint="Declare it in audit.secret_fields.SECRET_FIELDS (or, if it is "
                        "none, in NOT_SECRET_FIELDS).",
                        obj=model,
                        id="audit.E003",
                    )
                )
    return errors


def change_reason_field(recorded_in: str = "the history") -> forms.CharField:
    """Why a record changes (a policy, a guardrail, a person, …): required, kept in its
    history."""
    return forms.CharField(
        label="Why this change",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=f"Required: recorded in {recorded_in} with your name.",
    )


# The form fields of a ChangeReasonForm that are no setting of its record.
NOT_SETTINGS = ("change_reason", "seen_version")
# The version a page names when its record had none recorded when it was opened.
NO_VERSION_YET = 0


class ChangeReasonForm(forms.ModelForm):
    """A form of the console that changes a rule people work under (``ChangeReasonAdmin``), a
    person or a role: it says why, and it is of the version its page showed. A save from a
    page opened before someone else's change (an edit, a draft's promotion) is refused,
    saying who changed what and when, rather than laid over it: Django's form sends every
    field as the page showed it, and its save had put the settings seen back in place of the
    newer ones, unsaid."""

    change_reason = change_reason_field()
    # The last version of the record when its page was opened (its history record's id).
    # Required of a change (``refuse_if_changed_since_seen``), not of an addition, which has
    # no version to have seen: not required here, where the field cannot tell them apart.
    seen_version = forms.IntegerField(
        widget=forms.HiddenInput, required=False, min_value=0, max_value=2**31 - 1
    )

    # Set by ``ChangeReasonAdmin.get_form``: a version of the record's history, in words, as
    # its history list reads it, against the version before it.
    version_in_words = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and keeps_history(type(self.instance)):
            self.fields["seen_version"].initial = last_version(self.instance)

    def settings_changed(self) -> list[str]:
        """The fields this save changes: its reason alone changes nothing, nor does a text
        sent back with the CRLF line breaks a browser gives the LF text it was shown."""
        return [
            name
            for name in self.changed_data
            if name not in NOT_SETTINGS
            and not (
                isinstance(self.cleaned_data.get(name), str)
                and with_lf_line_breaks(str(self.get_initial_for_field(self.fields[name], name)))
                == self.cleaned_data[name]
            )
        ]

    def clean(self):
        # A browser sends a textarea's line breaks back as CRLF: text saved as it was shown
        # (banned terms seeded one a line, say) must not be recorded, and shown in the history,
        # as changed ("Banned terms: guaranteed risk-free → guaranteed risk-free").
        cleaned = super().clean()
        for name, value in cleaned.items():
            if isinstance(value, str):
                cleaned[name] = with_lf_line_breaks(value)
        self.refuse_if_changed_since_seen()
        return cleaned

    def refuse_if_changed_since_seen(self) -> None:
        """Refuse the save if the record has a version newer than the one the page showed,
        checked with the row held until the save ends (the admin saves in one transaction):
        say who changed what and when, and show the form again with the person's own edits
        over the record as it is now, so that saving again changes only what they changed.
        A field both changed is marked, keeping what they typed. A change that names no
        version (a script's, a page from before pages named theirs) is refused too, its form
        shown again as the record is now: it was saved unchecked, over anyone's change."""
        if self.instance.pk is None or not keeps_history(type(self.instance)):
            return
        current = self.record_held()
        if current is None:
            # Deleted since its page was opened (and since the admin read it for this save):
            # saved, it would have been made again, as if created anew.
            self.add_error(None, deleted_since_said(self.instance))
            return
        seen = self.cleaned_data.get("seen_version")
        if seen is None:  # not sent, or sent as no version (not a whole number)
            self.refuse_as_no_version_said(current)
            return
        seen_record = None
        if seen != NO_VERSION_YET:
            seen_record = versions_of(self.instance).filter(history_id=seen).first()
            if seen_record is None:
                self.refuse_as_not_its_version(seen)
                return
        later = list(versions_of(self.instance).filter(history_id__gt=seen).order_by("history_id"))
        if later:
            self.refuse_as_changed_since(seen_record, later, current)

    def reload_said(self) -> str:
        """What to do about a save refused for its page's version."""
        shown = this_one(self.instance._meta)
        return f"reload the page to see {shown} as it is and make your change again"

    def refuse_as_no_version_said(self, current) -> None:
        """The page named no version (none sent, or no whole number): whatever it showed,
        saved as sent it could put back settings someone changed since. The form is shown
        again as the record is now, each setting where what was sent differs marked with it,
        so that saving again is a change made knowingly over the record as it is."""
        # Hidden, its own error was shown nowhere: "Please correct the error below" over a
        # form with none marked.
        self._errors.pop("seen_version", None)
        differing = self.put_record_as_it_is(current)
        shown = this_one(self.instance._meta)
        marked = ", and marks each setting you sent otherwise" if differing else ""
        self.add_error(
            None,
            "This page did not say which version it showed, so nothing was saved: saved as "
            "sent, it could have put back settings someone changed after the page was opened. "
            f"The form below now shows {shown} as it is{marked}: make your change again and "
            "save.",
        )

    def put_record_as_it_is(self, current) -> list[str]:
        """The form's data replaced by the record as it is now (``current``), as its page
        opened now shows it, the reason kept; a setting where what was sent differs is
        marked with what was sent. Returns the names of those."""
        now = type(self)(instance=current)
        data = self.data.copy()
        differing = {}
        for name, field in self.fields.items():
            if name in NOT_SETTINGS:
                continue
            sent = field.widget.value_from_datadict(self.data, self.files, self.add_prefix(name))
            if isinstance(sent, str):  # a textarea comes back with CRLF line breaks
                sent = with_lf_line_breaks(sent)
            if not put_back(data, self.add_prefix(name), field, now[name].value()):
                continue  # a date and a time: left as sent, and checked as such
            self._errors.pop(name, None)  # said of what was sent, no longer shown
            if field.has_changed(now[name].initial, sent):
                differing[name] = sent
        data[self.add_prefix("seen_version")] = str(last_version(current))
        self.data = data
        for name, sent in differing.items():
            self.add_error(
                name,
                f"Not saved: you sent “{shown_value(now[name], sent)}”; shown here as it is "
                "now. Type your change again if you meant it.",
            )
        return list(differing)

    def refuse_as_not_its_version(self, seen: int) -> None:
        """The version named is not one of the record's (another's, or none): the check had
        let it through unchecked, whatever had changed since."""
        self.add_error(
            None,
            f"This page named a version (#{seen}) that is not one of "
            f"{this_one(self.instance._meta)}'s, so nothing was saved: {self.reload_said()}.",
        )

    def record_held(self) -> models.Model | None:
        """The record as it is now, its row held until the save ends where the save is in a
        transaction (the admin's is); None if it was deleted."""
        model = type(self.instance)
        using = router.db_for_write(model)
        rows = model._base_manager.using(using).filter(pk=self.instance.pk)
        if transaction.get_connection(using).in_atomic_block:
            rows = rows.select_for_update()
        return rows.first()

    def refuse_as_changed_since(self, seen_record, later: list, current) -> None:
        """Refuse a save from a page older than the record's ``later`` versions: say who made
        each, put their changes in the form wherever the person left the setting as it was
        shown, and mark where both changed it. ``seen_record`` is None where the page showed
        the record before it had a version: what it showed is not known, nothing is put in
        place."""
        now = type(self)(instance=current)
        if seen_record is None:
            kept, conflicts = [], []
            self.data = self.data.copy()
            self.data[self.add_prefix("seen_version")] = str(later[-1].history_id)
        else:
            kept, conflicts = self.put_changes_since_in_place(seen_record, later[-1], now)
        said = self.versions_said(seen_record, later)
        self.add_error(None, changed_since_said(self.instance._meta, said, kept, conflicts))
        for name in conflicts:
            now_shown = now[name].value()
            self.add_error(
                name,
                f"Changed since you opened this page (to “{shown_value(now[name], now_shown)}” "
                "now); what you typed is kept: save again to put it in place of that.",
            )

    def versions_said(self, seen_record, later: list) -> list[str]:
        """Each later version, by whom, when, what it changed (against the one before it)
        and why."""
        words = self.version_in_words
        return [
            version_said(record, words(record, previous) if words and previous else "")
            for previous, record in itertools.pairwise([seen_record, *later])
        ]

    def put_changes_since_in_place(self, seen_record, last, now) -> tuple[list[str], list[str]]:
        """The form's data with the settings changed since ``seen_record`` as they are now
        (``now``, the form of the record as it is) wherever the person left them as shown,
        and naming ``last`` as the version seen, so that saving again changes only what they
        changed. Returns the labels of the settings put in place, and the names of those
        both changed (what the person typed is kept)."""
        as_seen = type(self)(instance=seen_record.instance)
        data = self.data.copy()
        kept, conflicts = [], []
        for change in last.diff_against(seen_record).changes:
            name = change.field
            if name not in self.fields or name in NOT_SETTINGS:
                continue
            field = self.fields[name]
            # A box left unticked, a list with nothing chosen, is sent as nothing at all: it is
            # what was typed all the same (it was skipped, and the colleague's ticking or
            # choosing undone by the save after).
            if field.widget.value_omitted_from_data(self.data, self.files, self.add_prefix(name)):
                continue
            typed = field.widget.value_from_datadict(self.data, self.files, self.add_prefix(name))
            if isinstance(typed, str):  # a textarea comes back with CRLF line breaks, untouched
                typed = with_lf_line_breaks(typed)
            untouched = not field.has_changed(seen_value(as_seen, name, change.old), typed)
            if untouched and put_back(data, self.add_prefix(name), field, now[name].value()):
                kept.append(str(field.label or name))
                continue
            conflicts.append(name)
        data[self.add_prefix("seen_version")] = str(last.history_id)
        self.data = data
        return kept, conflicts


class NamedRecordForm(ChangeReasonForm):
    """The form of a record operators and auditors tell apart from others by its name, as
    its label reads on other pages ("Routed by policy “Bid adjustments”", a route's group, a
    campaign's account): a name that would show as another one does is refused, when it is
    given or changed (one saved before the check keeps its record's other settings open to
    change), and so is one that reads as another record's of its kind ("Віԁ adjustments",
    in Cyrillic letters, beside the policy “Bid adjustments”).

    A name given or changed is kept as the text it shows (``name_as_typed``): composed, and its
    full- and half-width letters and digits as the plain ones ("２０２６年" as "2026年")."""

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if "name" in self.changed_data:
            name = name_as_typed(name)
            name_shows_as_itself(name)
            name_reads_as_no_other(
                name, other_names(self, "name"), kind=self._meta.model._meta.verbose_name
            )
        return name

    def named_so_apart(self, cleaned: dict) -> models.QuerySet | None:
        """The other records a name given or changed may not be the very name of, as people
        tell them apart by it (a route's, a policy's: "Routed by policy “Bid adjustments”"):
        none by default (a campaign's may be another account's campaign's, an account's is
        shown beside its id)."""
        return None

    def clean(self):
        cleaned = super().clean()
        name = cleaned.get("name")
        if name and "name" in self.changed_data:
            others = self.named_so_apart(cleaned)
            other = None if others is None else others.filter(name=name).order_by("pk").first()
            if other is not None:
                kind = self._meta.model._meta.verbose_name
                self.add_error(
                    "name",
                    ValidationError(
                        f"The {kind} “{other}” (#{other.pk}) has this name already: name it so "
                        "that people can tell the two apart.",
                        code="named_so_already",
                    ),
                )
        return cleaned


def other_names(form: forms.ModelForm, field: str) -> list[tuple[int, str]]:
    """The id and name of every record of the form's kind but its own, in one query."""
    others = form._meta.model._default_manager.all()
    if form.instance.pk is not None:
        others = others.exclude(pk=form.instance.pk)
    return list(others.values_list("pk", field))


def changed_since_said(opts, said: list[str], kept: list[str], conflicts: list[str]) -> str:
    """A save refused for the versions made since its page was opened (``said``), saying
    which settings the form now shows as they are (``kept``) and whether it marks some both
    changed (``conflicts``)."""
    message = (
        f"{capfirst(this_one(opts, 'was'))} changed after you opened this page, so nothing "
        "was saved: your save would have put back what it was then. Changed by "
        + "; then by ".join(said)
        + "."
    )
    if not kept:
        return message + (
            " Your edits are kept below: check them against these changes and save again."
        )
    message += (
        " The form below now shows those changes ("
        + ", ".join(kept)
        + ") with your own edits on top"
    )
    message += ", and marks where you both changed a setting" if conflicts else ""
    return message + ": check it and save again."


def this_one(opts, verb: str = "") -> str:
    """A record of this kind named as "this policy", or "these brand guidelines" for a name
    that is its own plural (brand guidelines, autonomy rules), with ``verb`` ("was") agreeing
    with it ("these brand guidelines were")."""
    plural = opts.verbose_name == opts.verbose_name_plural
    said = f"{'these' if plural else 'this'} {opts.verbose_name}"
    if verb:
        said += f" {'were' if plural and verb == 'was' else verb}"
    return said


def deleted_since_said(obj: models.Model) -> str:
    """A save refused because its record was deleted meanwhile: by whom, when and why, as
    its history's last record says."""
    said = (
        f"{capfirst(this_one(obj._meta, 'was'))} deleted after you opened this page, so "
        "nothing was saved"
    )
    deletion = last_deletion(type(obj), obj.pk)
    if deletion is None:
        return said + "."
    return f"{said}: deleted by {version_said(deletion)}."


def version_said(record, what: str = "") -> str:
    """A version of a record, by whom and when, what it changed (``what``, if said) and why:
    "operator (person) at 2026-12-03 22:54:14 UTC: Review window: 3 days → 2 days (why:
    “slower reviews”)"."""
    why = record.history_change_reason
    return (
        f"{changed_by(record)} at {console_time(record.history_date)}"
        + (f": {what}" if what else "")
        + (f" (why: “{why}”)" if why else "")
    )


def last_deletion(model: type[models.Model], pk):
    """The last record of the deletion of ``model``'s record ``pk``, or None."""
    return (
        history_manager(model)
        .filter(**{model._meta.pk.attname: pk}, history_type="-")
        .order_by("-history_id")
        .first()
    )


def seen_value(as_seen: forms.ModelForm, name: str, old):
    """A field's value in the version a page showed, as its form's initial: a many-to-many
    one from its history's record of it (``old``, its through rows), as the form of an old
    version reads the related records there are now, or none."""
    field = as_seen.instance._meta.get_field(name)
    if field.many_to_many:
        return [row[field.m2m_reverse_field_name()] for row in old or []]
    return as_seen[name].initial


def versions_of(obj: models.Model):
    """The history records of ``obj``."""
    return history_manager(type(obj)).filter(**{obj._meta.pk.attname: obj.pk})


def last_version(obj: models.Model) -> int:
    """The id of ``obj``'s last history record: the version a page of it shows now
    (``NO_VERSION_YET`` if it has none)."""
    last = versions_of(obj).order_by("-history_id").values_list("history_id", flat=True).first()
    return NO_VERSION_YET if last is None else last


def put_back(data: QueryDict, name: str, field: forms.Field, value) -> bool:
    """Put ``value`` (a field's value as a form shows it) in ``data`` as a browser sends it;
    False where the field's widget sends more than one plain value (a date and a time)."""
    if isinstance(field.widget, forms.MultiWidget):
        return False
    if isinstance(value, list | tuple):
        data.setlist(name, [str(item) for item in value])
    elif isinstance(value, bool):
        data[name] = "true" if value else "false"
    else:
        data[name] = "" if value is None else str(value)
    return True


def shown_value(bound: forms.BoundField, value) -> str:
    """A field's value as a person reads it in the form: a choice by its label."""
    choices = dict((str(key), label) for key, label in getattr(bound.field, "choices", ()))
    if isinstance(value, list | tuple):
        return ", ".join(str(choices.get(str(item), item)) for item in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "":
        return "—"
    return str(choices.get(str(value), value))


class ChangeReasonAdmin(AuditedHistoryAdmin):
    """An admin of the rules people work under (policies and guardrails, budget caps and
    strategy locks, routes, the autonomy rules), and of people and their roles: every change
    the console makes says why (a required field, recorded as the history's change reason),
    deletions included; there is no bulk delete, which would take one reason for many
    records."""

    delete_confirmation_template = "admin/policies/delete_confirmation.html"
    # Fields shown by a method when the page is read-only (history, an auditor).
    shown_read_only: dict[str, str] = {}
    # A rule's history starts with what it was made with (a kill switch's reason, a policy's
    # ceilings), on the list, not only on the version's own page.
    history_shows_created_values = True

    def editable(self, request, obj=None) -> bool:
        if is_history_page(request):
            return False
        if obj is None:
            return self.has_add_permission(request)
        return self.has_change_permission(request, obj)

    def get_fieldsets(self, request, obj=None):
        # The reason goes last, under "Why", wherever the form's own fields put it (an admin
        # without fieldsets of its own lists every field of its form).
        fieldsets = [
            (name, {**options, "fields": [f for f in options["fields"] if f not in NOT_SETTINGS]})
            for name, options in super().get_fieldsets(request, obj)
        ]
        if self.editable(request, obj):
            # The version the page shows goes with the reason, hidden: a save from a page
            # opened before someone else's change is refused (``ChangeReasonForm``).
            return [*fieldsets, ("Why", {"fields": ["change_reason", "seen_version"]})]
        return [
            (
                name,
                {**options, "fields": [self.shown_read_only.get(f, f) for f in options["fields"]]},
            )
            for name, options in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        if is_history_page(request):
            return flatten_fieldsets(self.get_fieldsets(request, obj))
        return super().get_readonly_fields(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_form(self, request, obj=None, change=False, **kwargs):
        if not self.editable(request, obj):
            kwargs.setdefault("help_texts", self.help_texts_read_only(request))
        form = super().get_form(request, obj, change=change, **kwargs)
        if issubclass(form, ChangeReasonForm):
            # A partial, not a method: the form calls it with the versions alone.
            form.version_in_words = functools.partial(self.version_in_words, request)
        return form

    def help_texts_read_only(self, request) -> dict[str, str]:
        """What the form says under each setting that a page read only shows by a method
        (``shown_read_only``: "50%", not the 0.500 stored), under that method's line: Django
        gives a method's line no help text, and a setting's sentence ("…of which at least
        this share approved unedited…") read broken where the form read it whole."""
        said = {}
        for name, shown in self.shown_read_only.items():
            field = self.form.base_fields.get(name)
            if field is None:
                try:
                    field = self.formfield_for_dbfield(self.model._meta.get_field(name), request)
                except FieldDoesNotExist:
                    continue
            if field is not None and field.help_text:
                said[shown] = field.help_text
        return said

    def saved_said(self, obj, form, change: bool) -> str | None:
        """What a save changes, in a subclass's own words, for the message after it (read
        before it is saved, while the form still holds what was there); None leaves Django's
        "… was changed successfully" followed by the history's own diff of the save."""
        return None

    # A save that changes nothing writes no version: a version says the rules changed (a
    # proposal routed under the one before reads "it has changed since"). The page says so.
    def save_model(self, request, obj, form, change) -> None:
        if change and not form.settings_changed():
            obj._nothing_changed = True
            return
        obj._change_reason = form.cleaned_data["change_reason"]
        said = self.saved_said(obj, form, change)
        super().save_model(request, obj, form, change)
        if said:
            request.saved_said = said

    def save_related(self, request, form, formsets, change) -> None:
        if not getattr(form.instance, "_nothing_changed", False):
            super().save_related(request, form, formsets, change)

    def construct_change_message(self, request, form, formsets, add=False):
        # The recent-actions box says what changed, not "Changed … and Why this change".
        said = super().construct_change_message(request, form, formsets, add)
        if "change_reason" not in form.fields:  # a form of the admin's own (a password's)
            return said
        labels = {
            str(form.fields[name].label or name) for name in NOT_SETTINGS if name in form.fields
        }
        for entry in said if isinstance(said, list) else []:
            fields = entry.get("changed", {}).get("fields")
            if fields:
                fields[:] = [field for field in fields if field not in labels]
        return said

    def log_change(self, request, obj, message):
        # A save refused for changing nothing is not a change: like a form refused for an
        # error, it leaves no entry (the recent-actions box listed it beside real changes).
        if getattr(obj, "_nothing_changed", False):
            return None
        return super().log_change(request, obj, message)

    def changes_in_words(self, request, obj) -> str:
        """What the save just made changed, as the record's history reads it ("Auto-execute
        ceiling: 15% → 12%; Review window: 3 days → 2 days"), against the record written
        before it (write order, not the writers' clocks)."""
        last_two = list(versions_of(obj).order_by("-history_id")[:2])
        if len(last_two) < 2:
            return ""
        return self.version_in_words(request, *last_two)

    def version_in_words(self, request, record, earlier) -> str:
        """What a version of a record changed against an earlier one, as its history reads
        it."""
        helper = self.get_historical_record_context_helper(request, record)
        # Related records by name, as the history list reads them, not by id.
        delta = record.diff_against(earlier, foreign_keys_are_objs=True)
        changes = helper.context_for_delta_changes(delta)
        return "; ".join(f"{c['field']}: {c['old']} → {c['new']}" for c in changes)

    def response_change(self, request, obj):
        if getattr(obj, "_nothing_changed", False):
            self.message_user(
                request,
                format_html(
                    "Nothing was changed in the {} “{}”: no setting differs from what was "
                    "saved, so no new version was recorded.",
                    self.opts.verbose_name,
                    obj,
                ),
                messages.WARNING,
            )
            return HttpResponseRedirect(request.path)
        if not getattr(request, "saved_said", None):
            request.changes_said = self.changes_in_words(request, obj)
        return super().response_change(request, obj)

    def message_user(self, request, message, level=messages.INFO, *args, **kwargs) -> None:
        # Django's word for a save ("The policy “…” was changed successfully."), said once as
        # the subclass's own sentence, or followed by what the save changed.
        if level == messages.SUCCESS:
            if said := getattr(request, "saved_said", None):
                message, request.saved_said = said, None
            elif changes := getattr(request, "changes_said", ""):
                message = format_html("{} What changed: {}", message, as_sentence(changes))
                request.changes_said = ""
        super().message_user(request, message, level, *args, **kwargs)

    # A deletion names no version, as a change must (``ChangeReasonForm``): its page shows no
    # setting to have gone stale, only the record's name; it puts nothing back, and the
    # history keeps the last version beside who deleted it and why.
    def delete_view(self, request, object_id, extra_context=None):
        reason = DeletionReasonForm(request.POST) if request.method == "POST" else None
        if reason is not None and not reason.is_valid():
            obj = self.get_object(request, unquote(object_id))
            if obj is None or not self.has_delete_permission(request, obj):
                # Django's own answer, before any word of a reason: 403 to whom may not
                # delete it, "does not exist" of what does not.
                return super().delete_view(request, object_id, extra_context)
            # A reason as a change form takes one: said, at most 1,000 characters, no NUL
            # (which PostgreSQL cannot store: the deletion had failed as a server error).
            problems = " ".join(reason.errors.get("change_reason", []))
            if not request.POST.get("change_reason", "").strip():
                problems = "every deletion records its reason."
            messages.error(request, f"Say why: {problems}")
            return HttpResponseRedirect(request.get_full_path())
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj) -> None:
        reason = DeletionReasonForm(request.POST)
        reason.is_valid()  # as delete_view found it
        obj._change_reason = reason.cleaned_data["change_reason"]
        super().delete_model(request, obj)


class DeletionReasonForm(forms.Form):
    """Why a record of the rules is deleted: the reason a change form asks for."""

    change_reason = change_reason_field()
