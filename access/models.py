from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import models
from django.db.models.signals import pre_save
from django.dispatch import receiver
from simple_history import register
from simple_history.signals import pre_create_historical_record

from audit.models import AuditedHistoricalRecords, audited_history


class SecondFactorRequirement(models.Model):
    """Everyone in this group must confirm a code from an authenticator app (TOTP) after
    their password before they may use the console. A group with no row logs in with a
    password alone."""

    group = models.OneToOneField(
        Group, on_delete=models.CASCADE, related_name="second_factor_requirement"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = audited_history()

    class Meta:
        ordering = ["group__name"]
        verbose_name = "second factor requirement"

    def __str__(self) -> str:
        return f"{self.group.name} must use a second factor"


# People and roles: who may use the console, and as what. A person's history records their
# account (active, staff, superuser, name, email), the groups they are in (the roles) and any
# permission given to them alone; a group's, its name and its permissions. Neither keeps a
# password hash (a secret, ``audit.secret_fields``) nor the time of the last login: a login
# writes that alone, and would add a record identical to the last at every login (no record is
# written then; ``AuditedHistoricalRecords.post_save``). Their history lives in this app, which
# the audit chain seals and the audit export exports.
register(
    get_user_model(),
    app="access",
    records_class=AuditedHistoricalRecords,
    excluded_fields=["password", "last_login"],
    m2m_fields=["groups", "user_permissions"],
    **audited_history(build=False),
)
register(
    Group,
    app="access",
    records_class=AuditedHistoricalRecords,
    m2m_fields=["permissions"],
    **audited_history(build=False),
)


# A password changed (in the console, by its owner or an administrator, or by ``manage.py
# changepassword``) is a change an auditor wants to read, who changed it and when; the history
# keeps no hash, so its record says it in words, as its reason. A record with nothing in it
# changed would read as an empty change. Its hash rewritten alone as a login upgrades it
# (``update_fields``) writes no record (``AuditedHistoricalRecords.post_save``).
PASSWORD_CHANGED = "Password changed (the password itself is never recorded)."
PASSWORD_LOGIN_OFF = "Password login turned off (the person has no usable password now)."


@receiver(pre_save, sender=get_user_model(), dispatch_uid="access.password_said")
def note_a_password_changed(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    instance._password_said = None
    if raw or instance._state.adding or (update_fields and "password" not in update_fields):
        return
    before = sender._base_manager.filter(pk=instance.pk).values_list("password", flat=True)
    if before.first() in (None, instance.password):
        return
    instance._password_said = (
        PASSWORD_CHANGED if instance.has_usable_password() else PASSWORD_LOGIN_OFF
    )


@receiver(
    pre_create_historical_record,
    sender=get_user_model().history.model,
    dispatch_uid="access.password_said",
)
def say_a_password_changed(sender, instance, history_instance, **kwargs) -> None:
    said = instance.__dict__.pop("_password_said", None)  # said once, by this save's record
    if said and history_instance.history_type == "~":
        reason = history_instance.history_change_reason
        history_instance.history_change_reason = f"{reason} {said}" if reason else said
