"""The three roles of the review console, as permission groups.

Operators read everything and decide proposals; policy owners read everything, edit policies
and the autonomy rules, and decide the platform's proposed policy changes; auditors read
everything, history included, people and their roles too, and change nothing. Policy owners
also keep the routes that say
who is told about what. Each person's own channels (``notifications.ReachedBy``) are theirs
alone: no role reads or edits another's, and the console shows each person only their own.
"""

from django.apps import apps as global_apps
from django.db.models import Q
from django.utils import timezone

from audit.models import history_model_permissions

OPERATORS = "operators"
POLICY_OWNERS = "policy owners"
AUDITORS = "auditors"

VISIBLE_APPS = ("ledger", "approvals", "policies", "feedback", "notifications")
# Read by no role: each person sees their own alone (notifications.admin.MyChannelsAdmin).
PRIVATE_MODELS = (("notifications", "reachedby"),)

ROLE_EXTRA_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    OPERATORS: [("approvals", "decide_proposal")],
    POLICY_OWNERS: [
        ("policies", "add_policy"),
        ("policies", "change_policy"),
        ("policies", "add_killswitch"),
        ("policies", "change_killswitch"),
        ("policies", "add_brandguidelines"),
        ("policies", "change_brandguidelines"),
        # Only the guardrail fields (caps, strategy locks) are editable in the admin.
        ("ledger", "change_account"),
        ("ledger", "change_campaign"),
        # When the platform recommends more or less autonomy for an agent.
        ("feedback", "change_autonomyrules"),
        # Who is told about what: routes are added, changed and deactivated, never deleted.
        ("notifications", "add_route"),
        ("notifications", "change_route"),
    ],
    # Who has which role, since when and given by whom, and each person's history: read, never
    # changed (no password hash shown, access.admin).
    AUDITORS: [("auth", "view_user"), ("auth", "view_group")],
}


def _permissions_missing(apps) -> bool:
    """Whether a model of ``apps`` lacks one of its permissions (its default ones, and those
    its Meta names), read in one statement: create_permissions, which makes them, reads each
    app's again (some 40 statements), as after every database flush a test makes."""
    have = set(
        apps.get_model("auth", "Permission").objects.values_list(
            "content_type__app_label", "content_type__model", "codename"
        )
    )
    for model in apps.get_models():
        opts = model._meta
        wanted = [f"{action}_{opts.model_name}" for action in opts.default_permissions]
        wanted += [codename for codename, _ in opts.permissions]
        if any((opts.app_label, opts.model_name, codename) not in have for codename in wanted):
            return True
    return False


def sync_role_groups(apps=global_apps) -> None:
    """Create the role groups and give each exactly its permissions. Safe to run again.

    A group whose permissions this changes gets one record of its history saying so, by
    whoever runs it (``seed_demo``) or, in a migration, by "an upgrade of the platform": a
    migration's models write no history of their own, and verification of the audit chain
    would name the group as not as recorded."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs() if _permissions_missing(apps) else ():
        # A migration's apps have no models modules, and create_permissions skips an app
        # without one; the project's own keep theirs (Django's post-migrate handlers need it).
        kept = getattr(app_config, "models_module", None)
        app_config.models_module = kept or True
        try:
            create_permissions(app_config, apps=apps, verbosity=0)
        finally:
            app_config.models_module = kept

    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    private = Q(pk__in=[])
    for app_label, model in PRIVATE_MODELS:
        private |= Q(content_type__app_label=app_label, content_type__model=model)
    view_all = list(
        permission_model.objects.filter(
            content_type__app_label__in=VISIBLE_APPS, codename__startswith="view_"
        )
        .exclude(private)
        .exclude(history_model_permissions(apps))  # histories are read through their records
    )
    for role, extras in ROLE_EXTRA_PERMISSIONS.items():
        group, created = group_model.objects.get_or_create(name=role)
        # A migration runs this against the schema of its time: a permission whose model does
        # not exist yet is skipped here and granted by the later migration that syncs again.
        wanted = Q(pk__in=[])
        for app_label, codename in extras:
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        permissions = [*view_all, *permission_model.objects.filter(wanted)]
        had = set(group.permissions.values_list("pk", flat=True))
        if created or had != {permission.pk for permission in permissions}:
            permissions_set_recorded(apps, group, permissions)


def permissions_set_recorded(apps, group, permissions) -> None:
    """Set a role group's permissions, and write one record of its history holding them."""
    reason = f"Permissions set to what the {group.name} role grants."
    if apps is global_apps:
        # One record of the change, not one of the permissions taken off and one of those
        # given (``set`` is both), by the current actor.
        group.skip_history_when_saving = True
        try:
            group.permissions.set(permissions)
        finally:
            del group.skip_history_when_saving
        group._change_reason = reason
        type(group)._audited_history.create_historical_record(group, "~")
        return
    group.permissions.set(permissions)
    try:
        history = apps.get_model("access", "HistoricalGroup")
        recorded_permissions = apps.get_model("access", "HistoricalGroup_permissions")
    except LookupError:
        return  # before the history of roles began: its first record holds them (access 0004)
    record = history.objects.create(
        id=group.pk,
        name=group.name,
        history_date=timezone.now(),
        history_type="~" if history.objects.filter(id=group.pk).exists() else "+",
        history_change_reason=reason,
        history_actor_kind="system",
        history_actor="migration",
    )
    through = type(group).permissions.through
    recorded_permissions.objects.bulk_create(
        recorded_permissions(
            history_id=record.pk,
            id=row["id"],
            group_id=group.pk,
            permission_id=row["permission_id"],
        )
        for row in through.objects.filter(group_id=group.pk)
        .order_by("id")
        .values("id", "permission_id")
    )
