"""A kill switch saved engaged (added engaged, engaged again, or moved to cover something
else while engaged) holds back what it covers at once, whatever saved it: the console, a
``manage.py shell``, a data script. Held only by the console's save, one engaged any other
way held each proposal only at its next attempt (a channel's backoff, up to an hour), while
its page, the API and the dashboard said it was approved and about to run. What it held is
left on the saved switch (``HELD_BACK_NOW``) for the save's caller to say (the console's
message after the save).

Released, or moved while engaged off what it covered, in the same transaction: each proposal
waiting for a person whose risk it raised, and that nothing else raises now, is re-assessed to
the risk the engine gives it without the switch, and its history says why (the queue is
ordered riskiest first: a risk whose only reason is gone put it above riskier ones). Those
re-assessed are left on the saved switch (``RISKS_LOWERED``)."""

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from policies.models import KillSwitch
from policies.services import kill_switch_holds_apply, kill_switch_risks_reassess

# What of a switch decides what it holds back: whether it is engaged, and what it covers.
COVERS_FIELDS = ("engaged", "scope", "account_id", "channel")

# The switch as it was before the save, read in ``pre_save``.
WAS = "_policies_was"

# What the save held back (``policies.services.HeldBackNow``), set on the saved switch.
HELD_BACK_NOW = "held_back_now"

# The proposals whose risk the save lowered (``kill_switch_risks_reassess``), by id.
RISKS_LOWERED = "risks_lowered"


@receiver(pre_save, sender=KillSwitch, dispatch_uid="policies.kill_switch_before")
def _kill_switch_before(sender, instance, raw=False, **kwargs) -> None:
    if raw:
        return
    was = None
    if instance.pk is not None:
        was = sender.objects.filter(pk=instance.pk).values(*COVERS_FIELDS).first()
    setattr(instance, WAS, was)


@receiver(post_save, sender=KillSwitch, dispatch_uid="policies.kill_switch_holds")
def _kill_switch_holds(sender, instance, created, raw=False, **kwargs) -> None:
    """In the save's transaction (``KillSwitch.save``): engaged now, and not engaged over the
    same scope before it, it holds back what it covers."""
    if raw or not hasattr(instance, WAS):
        return
    was = getattr(instance, WAS)
    delattr(instance, WAS)
    unchanged = was is not None and all(
        was[name] == getattr(instance, name) for name in COVERS_FIELDS
    )
    if instance.engaged and not unchanged:
        setattr(instance, HELD_BACK_NOW, kill_switch_holds_apply(switch=instance))
    if was is not None and was["engaged"] and not unchanged:
        # Released, or moved off what it covered: what it covered then is re-assessed.
        setattr(
            instance,
            RISKS_LOWERED,
            kill_switch_risks_reassess(switch=instance, covered=was),
        )
