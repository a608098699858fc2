"""What a person's Slack messages offer follows what they may do, as soon as it changes: a
second factor required of a group of theirs (``access``), their groups or permissions
changed, their staff status taken away, their account deactivated (one who was sent a
message cannot be deleted: the outbox names them); and what may be done with a proposal, as
soon as its agent is stopped (deactivated, or an account taken away from it) or started
again, or a guardrail is set or lifted on its campaign or account (the console's ledger
pages). Each receiver names the people, the agents or the accounts a save touched and leaves
the rest to the services (``slack_messages_follow_people``, ``slack_messages_follow_agents``,
``slack_messages_follow_guardrail_save``). A kill switch engaged or released (or, engaged,
moved to cover something else) tells the people the routes meeting its scope name, and
those told it was engaged (``kill_switch_tell``). ``access``, ``approvals``, ``policies``,
the ledger and Django's auth know nothing of notifications."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_save, pre_delete, pre_save
from django.dispatch import receiver

from access.models import SecondFactorRequirement
from approvals.models import Agent
from ledger.models import Account, Campaign
from notifications.models import NotificationKind
from notifications.services import (
    kill_switch_tell,
    slack_messages_follow_agents,
    slack_messages_follow_guardrail_save,
    slack_messages_follow_kill_switch,
    slack_messages_follow_people,
    slack_on,
)
from policies.models import KillSwitch
from policies.services import kill_switch_called_on

User = get_user_model()

# What a save had before it, read in ``pre_save`` and acted on in ``post_save``: acted on
# before the save, a task sent at once (outside a transaction) could redraw the old state.
WAS = "_notifications_was"

# The user's fields that decide whether they may be shown proposals at all.
MAY_READ_FIELDS = ("is_active", "is_staff")


def _members(group_ids) -> list[int]:
    return list(User.objects.filter(groups__in=list(group_ids)).values_list("pk", flat=True))


@receiver(pre_save, sender=SecondFactorRequirement)
def _requirement_before(sender, instance, raw=False, **kwargs) -> None:
    if raw or instance.pk is None:
        return
    setattr(
        instance,
        WAS,
        sender.objects.filter(pk=instance.pk).values_list("group_id", flat=True).first(),
    )


@receiver(post_save, sender=SecondFactorRequirement)
def _requirement_saved(sender, instance, created, raw=False, **kwargs) -> None:
    if raw:
        return
    was = getattr(instance, WAS, None)
    if not created and was == instance.group_id:
        return
    slack_messages_follow_people(
        user_ids=_members({instance.group_id, was} - {None}),
        about=f"a second factor now required of the group “{instance.group.name}”"
        + ("" if created else " in place of another"),
    )


@receiver(pre_delete, sender=SecondFactorRequirement)
def _requirement_deleted(sender, instance, **kwargs) -> None:
    # Read before the delete: a group deleted takes its requirement and memberships with it.
    slack_messages_follow_people(
        user_ids=_members([instance.group_id]),
        about="a second factor no longer required of a group of theirs",
    )


@receiver(pre_save, sender=User)
def _user_before(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    if raw or instance.pk is None:
        return
    if update_fields is not None and not set(MAY_READ_FIELDS) & set(update_fields):
        return  # a login's last_login, say
    setattr(instance, WAS, sender.objects.filter(pk=instance.pk).values(*MAY_READ_FIELDS).first())


@receiver(post_save, sender=User)
def _user_saved(sender, instance, created, raw=False, **kwargs) -> None:
    was = getattr(instance, WAS, None)
    if raw or created or was is None:
        return
    delattr(instance, WAS)
    changed = [field for field in MAY_READ_FIELDS if was[field] != getattr(instance, field)]
    if changed:
        said = {
            ("is_active", False): "deactivated",
            ("is_active", True): "activated again",
            ("is_staff", False): "staff status taken away",
            ("is_staff", True): "staff status given",
        }
        slack_messages_follow_people(
            user_ids=[instance.pk],
            about=f"{instance.get_username()}: "
            + ", ".join(said[field, getattr(instance, field)] for field in changed),
        )


@receiver(pre_delete, sender=Group)
def _group_deleted(sender, instance, **kwargs) -> None:
    slack_messages_follow_people(
        user_ids=_members([instance.pk]), about=f"the group “{instance.name}” deleted"
    )


def _people_touched(sender, instance, pk_set) -> list[int]:
    """The people an m2m change touched (``pk_set``: those it names, None for a clear)."""
    if isinstance(instance, User):
        return [instance.pk]
    if sender is Group.permissions.through:
        if isinstance(instance, Group):
            return _members([instance.pk])
        groups = instance.group_set.values_list("pk", flat=True) if pk_set is None else pk_set
        return _members(groups)
    # People added to a group or removed from it, given a permission or refused it.
    if pk_set is None:
        return list(instance.user_set.values_list("pk", flat=True))
    return list(pk_set)


@receiver(m2m_changed, sender=User.groups.through)
@receiver(m2m_changed, sender=User.user_permissions.through)
@receiver(m2m_changed, sender=Group.permissions.through)
def _memberships_changed(sender, instance, action, pk_set, **kwargs) -> None:
    # A clear names nobody: the people it touches are read before it.
    if action not in ("post_add", "post_remove", "pre_clear") or pk_set == set():
        return
    slack_messages_follow_people(
        user_ids=_people_touched(sender, instance, None if action == "pre_clear" else pk_set),
        about="a change to its reader's groups or permissions",
    )


@receiver(pre_save, sender=Agent)
def _agent_before(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    if raw or instance.pk is None:
        return
    if update_fields is not None and "is_active" not in update_fields:
        return  # a new callback secret, say
    setattr(instance, WAS, sender.objects.filter(pk=instance.pk).values_list("is_active").first())


@receiver(post_save, sender=Agent)
def _agent_saved(sender, instance, created, raw=False, **kwargs) -> None:
    was = getattr(instance, WAS, None)
    if raw or created or was is None:
        return
    delattr(instance, WAS)
    if was[0] != instance.is_active:
        slack_messages_follow_agents(
            agent_ids=[instance.pk],
            about=f"agent {instance.name} "
            + ("activated again" if instance.is_active else "deactivated"),
        )


@receiver(m2m_changed, sender=Agent.accounts.through)
def _agent_accounts_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    """An account taken away from an agent (or given back): the messages of its proposals on
    that account. From the account's side (``reverse``), the agents it was taken from."""
    if action not in ("post_add", "post_remove", "pre_clear") or pk_set == set():
        return
    if reverse:  # instance: an account; pk_set: agents (None for a clear: all of its own)
        agent_ids = instance.agents.values_list("pk", flat=True) if pk_set is None else pk_set
        account_ids = [instance.pk]
    else:  # instance: an agent; pk_set: accounts (None for a clear: all of them)
        agent_ids, account_ids = [instance.pk], None if pk_set is None else pk_set
    whose = "its agent" if reverse else f"agent {instance.name}"
    slack_messages_follow_agents(
        agent_ids=list(agent_ids),
        account_ids=None if account_ids is None else list(account_ids),
        about=f"an account given to {whose}"
        if action == "post_add"
        else f"an account taken away from {whose}",
    )


# The guardrails a console's save of a campaign or an account sets or lifts (``ledger.admin``):
# what each proposal that waits on its account may be approved for turns on them.
GUARDRAIL_FIELDS = {
    Campaign: ("max_daily_budget", "strategy_locked"),
    Account: ("max_total_daily_budget",),
}


def _guardrails_said(instance, was: dict) -> str:
    """What a save changed of the guardrails, as an update's record says what it is for:
    "generic-search's daily budget cap set to 550.00", "account demo's total daily budget
    cap lifted", "generic-search's bidding strategy locked"."""
    said = []
    if isinstance(instance, Account):
        whose, caps = (
            f"account {instance.external_id}'s total daily budget cap",
            ["max_total_daily_budget"],
        )
    else:
        whose, caps = f"{instance.external_id}'s daily budget cap", ["max_daily_budget"]
        if was["strategy_locked"] != instance.strategy_locked:
            said.append(
                f"{instance.external_id}'s bidding strategy "
                + ("locked" if instance.strategy_locked else "unlocked")
            )
    for name in caps:
        if was[name] != getattr(instance, name):
            value = getattr(instance, name)
            said.insert(0, f"{whose} lifted" if value is None else f"{whose} set to {value}")
    return "; ".join(said)


@receiver(pre_save, sender=Campaign)
@receiver(pre_save, sender=Account)
def _guardrails_before(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    fields = GUARDRAIL_FIELDS[sender]
    if raw or instance.pk is None or not slack_on():
        return
    if update_fields is not None and not set(fields) & set(update_fields):
        return
    was = sender.objects.filter(pk=instance.pk).values(*fields).first()
    if was is None or all(was[name] == getattr(instance, name) for name in fields):
        return
    setattr(instance, WAS, was)


@receiver(post_save, sender=Campaign)
@receiver(post_save, sender=Account)
def _guardrails_saved(sender, instance, created, raw=False, **kwargs) -> None:
    was = getattr(instance, WAS, None)
    if raw or created or was is None:
        return
    delattr(instance, WAS)
    if sender is Account:
        slack_messages_follow_guardrail_save(
            account_id=instance.pk, account_was=was, about=_guardrails_said(instance, was)
        )
    else:
        slack_messages_follow_guardrail_save(
            account_id=instance.account_id,
            campaign_was=(instance.external_id, was),
            about=_guardrails_said(instance, was),
        )


# What of a kill switch, changed, is told: whether it is engaged, and what it covers.
SWITCH_FIELDS = ("engaged", "scope", "account_id", "channel")


@receiver(pre_save, sender=KillSwitch)
def _kill_switch_before(sender, instance, raw=False, **kwargs) -> None:
    if raw or instance.pk is None:
        return
    setattr(instance, WAS, sender.objects.filter(pk=instance.pk).values(*SWITCH_FIELDS).first())


@receiver(post_save, sender=KillSwitch)
def _kill_switch_saved(sender, instance, created, raw=False, **kwargs) -> None:
    """Engaged (added engaged, or engaged again), or moved while engaged to cover something
    else: the people it now reaches are told it is engaged, and, moved, those told it was
    engaged whom it no longer reaches that it no longer covers what it did; released: those
    it covers and those told it was engaged."""
    if raw:
        return
    was = getattr(instance, WAS, None)
    if hasattr(instance, WAS):
        delattr(instance, WAS)
    if created or was is None:
        if instance.engaged:
            kill_switch_tell(switch=instance, kind=NotificationKind.SWITCH_ENGAGED)
            slack_messages_follow_kill_switch(
                about=f"the kill switch on {instance.called()} engaged", covered=[instance]
            )
        return
    before = KillSwitch(
        pk=instance.pk, scope=was["scope"], account_id=was["account_id"], channel=was["channel"]
    )
    if any(was[name] != getattr(instance, name) for name in SWITCH_FIELDS):
        # What Slack messages say of it (a risk it raised, a retry that runs past it), as it
        # covered things before the save and as it covers them now.
        # Its update names what happened: engaged (where it is now), released or moved (from
        # what it covered, which a message on it was told of: a move read "engaged").
        if not was["engaged"]:
            about = f"the kill switch on {instance.called()} engaged"
        elif not instance.engaged:
            about = f"the kill switch on {kill_switch_called_on(instance, before)} released"
        else:
            about = (
                f"the kill switch on {kill_switch_called_on(instance, before)} moved to "
                f"{instance.called()}"
            )
        slack_messages_follow_kill_switch(
            about=about,
            covered=[
                *([before] if was["engaged"] else []),
                *([instance] if instance.engaged else []),
            ],
        )
    if instance.engaged != was["engaged"]:
        if instance.engaged:
            kill_switch_tell(switch=instance, kind=NotificationKind.SWITCH_ENGAGED)
        elif before.scope_in_words() != instance.scope_in_words():
            # Released and moved in one save: what it held back was what it covered before.
            kill_switch_tell(
                switch=instance,
                kind=NotificationKind.SWITCH_RELEASED,
                moved_from=kill_switch_called_on(instance, before),
                covered=before,
            )
        else:
            kill_switch_tell(switch=instance, kind=NotificationKind.SWITCH_RELEASED)
    elif instance.engaged and any(was[name] != getattr(instance, name) for name in SWITCH_FIELDS):
        kill_switch_tell(
            switch=instance,
            kind=NotificationKind.SWITCH_ENGAGED,
            moved_from=kill_switch_called_on(instance, before),
        )
