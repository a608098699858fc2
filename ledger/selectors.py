from django.db.models import QuerySet

from ledger.models import Account, Campaign, Channel


def campaign_list_for_agent(*, agent) -> QuerySet[Campaign]:
    """The campaigns on the accounts an agent may act on."""
    return Campaign.objects.filter(account__agents=agent).select_related("account")


def channels_with_accounts() -> list[tuple[str, str]]:
    """(channel, label) for each channel some account is on, in the order of ``Channel``."""
    used = set(Account.objects.values_list("channel", flat=True).distinct())
    return [(value, label) for value, label in Channel.choices if value in used]
