from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import models
from simple_history import register

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
