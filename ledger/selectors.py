from django.db.models import QuerySet

from ledger.models import Campaign


def campaign_list_for_agent(*, agent) -> QuerySet[Campaign]:
    """The campaigns on the accounts an agent may act on."""
    return Campaign.objects.filter(account__agents=agent).select_related("account")
