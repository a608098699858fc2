from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group, Permission
from django.db import models
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from access.models import SecondFactorRequirement
from access.selectors import Membership, memberships
from audit.admin import (
    AuditedHistoryAdmin,
    ChangeReasonAdmin,
    ChangeReasonForm,
    NamedRecordForm,
    is_history_page,
    other_names,
)
from audit.models import history_model_permissions
from hitlproject.formats import console_time
from hitlproject.validation import name_reads_as_no_other, name_shows_as_itself
from hitlproject.vocabulary import how_many


@admin.register(SecondFactorRequirement)
class SecondFactorRequirementAdmin(AuditedHistoryAdmin):
    """Which groups must use a second factor: an administrator's to set (no role group has
    any permission on this app)."""

    list_display = ["group", "created_at"]
    fields = ["group"]


def memberships_shown(found: list[Membership], *, name_of) -> str:
    """Memberships one a line: "operators: since 2026-12-06 03:55:26 UTC, given by admin
    (person)", and the reason given, if one was."""
    if not found:
        return "—"

    def line(membership: Membership) -> tuple[str, str]:
        if membership.since is None:
            return name_of(membership), ": not recorded in the history"
        if membership.before_history:
            return name_of(membership), (
                f": before {console_time(membership.since)}, when the history of people and "
                "roles began (who gave it is not recorded)"
            )
        said = f": since {console_time(membership.since)}, given by {membership.by}"
        if membership.reason:
            said += f" (“{membership.reason}”)"
        return name_of(membership), said

    return format_html_join("", "<div>{}{}</div>", (line(m) for m in found))


class ReadOnlyForWhomMayNotChange:
    """People and roles read by whom may only view them (auditors): no password hash, not even
    its summary, and on a past version no field the history does not keep."""

    hidden_read_only = ("password",)
    not_recorded = ("password", "last_login")

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        hidden = ()
        if is_history_page(request):
            hidden = self.not_recorded
        elif not self.has_change_permission(request, obj):
            hidden = self.hidden_read_only
        return [
            (title, {**options, "fields": [f for f in options["fields"] if f not in hidden]})
            for title, options in fieldsets
        ]


class WithoutHistoryPermissions:
    """The permission choosers offer no permission of a history model ("Can change historical
    user"): none is in the console, and nothing asks for one."""

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)
        if formfield is not None and db_field.related_model is Permission:
            formfield.queryset = formfield.queryset.exclude(history_model_permissions())
        return formfield


class PersonForm(ChangeReasonForm):
    """A person's username is how every record names them ("Approved by operator"): one
    that would show as another's (Django takes any script's letters, so "operatоr" with a
    Cyrillic "о") is refused when it is given or changed, as a policy's or a role's name is;
    so is one that reads as another person's ("расе", in Cyrillic letters, beside "pace"),
    ignoring case as Django does for a new person ("Admin" beside "admin"), and for a person
    renamed too, which Django's own check does not see. (Django writes a username in NFKC
    itself: a full-width "ａdmin" is "admin".)"""

    def clean_username(self) -> str | None:
        own = getattr(super(), "clean_username", None)  # a new person's: not taken already
        username = own() if own else self.cleaned_data["username"]
        if username is not None and "username" in self.changed_data:  # None: refused already
            name_shows_as_itself(username)
            name_reads_as_no_other(
                username,
                other_names(self, "username"),
                kind=self._meta.model._meta.verbose_name,
                ignoring_case=True,
            )
        return username


class PersonChangeForm(PersonForm, UserChangeForm):
    """A person changed in the console says why, as a policy or a route does."""


class PersonCreationForm(PersonForm, AdminUserCreationForm):
    """A person added in the console says why."""


def before_why(fieldsets: list, added: tuple) -> list:
    """``added`` placed before the form's "Why" (``ChangeReasonAdmin``), which goes last."""
    if fieldsets and fieldsets[-1][0] == "Why":
        return [*fieldsets[:-1], added, fieldsets[-1]]
    return [*fieldsets, added]


class PersonAdmin(
    WithoutHistoryPermissions, ReadOnlyForWhomMayNotChange, ChangeReasonAdmin, UserAdmin
):
    """People who use the console. Each save is one record of their history, with the groups
    (roles) it leaves them in, by whoever saved it, and why (``ChangeReasonAdmin``: a save
    that changes nothing writes none); an auditor reads each person, their roles and since
    when, and their history, and changes nothing. When they joined and last logged in are the
    platform's to record, not a form's to rewrite: the history keeps no last login, and a form
    sent back without one emptied it unrecorded, or one with the joining time to the second
    recorded "Date joined" as changed to the time it was."""

    form = PersonChangeForm
    add_form = PersonCreationForm
    readonly_fields = ["roles", "last_login", "date_joined"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or is_history_page(request):
            return fieldsets
        return before_why(fieldsets, ("Roles, as the history records them", {"fields": ["roles"]}))

    @admin.display(description="Roles since")
    def roles(self, obj) -> str:
        return memberships_shown(
            memberships(users=[obj]), name_of=lambda membership: membership.group.name
        )

    # A person the record of what happened names (who decided a proposal, who was told of
    # one, who asked for a verification of the chain) is kept, as the auditor reads them
    # there: every such reference is ``PROTECT``. Django's collector
    # said so as "would require deleting the following protected related objects", listing
    # every decision and message; the page says what is so, from counts, and what to do.
    def delete_view(self, request, object_id, extra_context=None):
        # Shown only where something keeps them (the page's "protected" part, from
        # ``get_deleted_objects``): not asked of the records here again.
        person = self.get_object(request, unquote(object_id))
        if person is not None:
            extra_context = {
                **(extra_context or {}),
                "protected_said": format_html(
                    "“{}” cannot be deleted: the record of what happened names them, and "
                    "keeps naming them. To stop them using the platform, "
                    '<a href="{}">deactivate them on their page</a> instead (untick '
                    "“Active”, saying why): they can no longer log in, decide or be told of "
                    "anything, and their history says who deactivated them, when and why.",
                    person.get_username(),
                    reverse("admin:auth_user_change", args=[person.pk]),
                ),
            }
        return super().delete_view(request, object_id, extra_context)

    def get_deleted_objects(self, objs, request):
        named = [said for person in objs for said in records_naming(person)]
        if named:
            return [], {}, set(), named
        return super().get_deleted_objects(objs, request)


class RoleAdmin(
    WithoutHistoryPermissions, ReadOnlyForWhomMayNotChange, ChangeReasonAdmin, GroupAdmin
):
    """Groups, the console's roles: their permissions, their history, each change saying why,
    and who is in each, since when and given by whom."""

    form = NamedRecordForm  # a role's name is how a route says whom it tells
    # Named, as ``ChangeReasonAdmin`` needs: its read-only history page would otherwise ask
    # the form for them, and the form its read-only fields, round and round.
    fields = ["name", "permissions", "members"]
    readonly_fields = ["members"]

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if obj is None or is_history_page(request):
            return [name for name in fields if name != "members"]
        return fields

    @admin.display(description="Members since")
    def members(self, obj) -> str:
        return memberships_shown(
            memberships(group=obj), name_of=lambda membership: membership.user.get_username()
        )


def records_naming(person) -> list[str]:
    """What keeps ``person`` from being deleted, one line each: every record that names them
    and is kept (a ``PROTECT`` reference to them), counted ("3 decisions (reviewer)")."""
    said = []
    for relation in type(person)._meta.get_fields(include_hidden=True):
        # Those that name no way back too (``related_name="+"``: the outbox's recipient).
        if not relation.is_relation or relation.concrete or relation.many_to_many:
            continue
        if relation.on_delete is not models.PROTECT:
            continue
        count = relation.related_model._base_manager.filter(**{relation.field.name: person}).count()
        if count:
            said.append(
                f"{how_many(count, relation.related_model._meta.verbose_name)} "
                f"({relation.field.verbose_name})"
            )
    return said


admin.site.unregister(get_user_model())
admin.site.unregister(Group)
admin.site.register(get_user_model(), PersonAdmin)
admin.site.register(Group, RoleAdmin)
