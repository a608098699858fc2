from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from ledger.models import Account, Campaign, Creative

HISTORY_COLUMNS = ["history_actor_kind", "history_actor"]


@admin.register(Account)
class AccountAdmin(SimpleHistoryAdmin):
    list_display = ["external_id", "name", "channel", "currency"]
    list_filter = ["channel"]
    search_fields = ["external_id", "name"]
    history_list_display = HISTORY_COLUMNS


@admin.register(Campaign)
class CampaignAdmin(SimpleHistoryAdmin):
    list_display = [
        "external_id",
        "account",
        "name",
        "daily_budget",
        "bid",
        "bidding_strategy",
        "status",
        "strategy_locked",
    ]
    list_filter = ["account", "status", "bidding_strategy"]
    list_select_related = ["account"]
    search_fields = ["external_id", "name"]
    history_list_display = HISTORY_COLUMNS


@admin.register(Creative)
class CreativeAdmin(SimpleHistoryAdmin):
    list_display = ["headline", "campaign", "deployed_by_proposal", "created_at"]
    list_select_related = ["campaign"]
    raw_id_fields = ["deployed_by_proposal"]
    history_list_display = HISTORY_COLUMNS

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
