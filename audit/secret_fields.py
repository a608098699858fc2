"""The fields that hold a secret or signing material, declared once.

Whoever holds an account's execution secret can sign requests to its channel; an agent's
callback secret, events to the agent; a password hash or an API key's digest identifies its
secret. None is shown to auditors, and none may be filtered, searched or ordered by anywhere in
the console: a list that answers ``?execution_secret__startswith=whsec_a`` by showing the row
or not gives the secret away a character at a time. The console's admin (``audit.admin``),
its system check and the audit export read this list.
"""

import re

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.constants import LOOKUP_SEP

SECRET_FIELDS: dict[str, frozenset[str]] = {
    "auth.user": frozenset({"password"}),
    "ledger.account": frozenset({"execution_secret"}),
    "approvals.agent": frozenset({"callback_secret"}),
    "approvals.agentapikey": frozenset({"digest"}),
    "otp_totp.totpdevice": frozenset({"key"}),
    "executors.googleadslink": frozenset({"developer_token", "client_secret", "refresh_token"}),
}

# A field so named is taken for a secret until it is declared above (the system check says so)
# or declared no secret below.
SECRET_SOUNDING = re.compile(r"secret|password|passwd|digest|token|private|signing")

NOT_SECRET_FIELDS: dict[str, frozenset[str]] = {
    # How often a digest of notifications is sent, in minutes.
    "notifications.route": frozenset({"digest_minutes"}),
    # Whether a message went in a digest of notifications.
    "notifications.notification": frozenset({"in_digest"}),
}


def sounds_secret_undeclared(model: type[models.Model], name: str) -> bool:
    """Whether a field's name sounds secret and it is declared neither a secret nor not one."""
    return (
        SECRET_SOUNDING.search(name) is not None
        and name not in secret_fields(model)
        and name not in NOT_SECRET_FIELDS.get(model._meta.label_lower, frozenset())
    )


def secret_fields(model: type[models.Model]) -> frozenset[str]:
    return SECRET_FIELDS.get(model._meta.label_lower, frozenset())


def lookup_touches_secret(model: type[models.Model], lookup: str) -> bool:
    """Whether a lookup path (``agent__callback_secret__startswith``, ``callback_secret``)
    reaches a secret field, directly or through relations."""
    for part in lookup.lstrip("-").split(LOOKUP_SEP):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            return False  # a transform or a lookup (startswith, regex): the path ended
        if field.name in secret_fields(model):
            return True
        if not field.is_relation or field.related_model is None:
            return False
        model = field.related_model
    return False
