from django.contrib import admin

from audit.admin import (
    AuditedHistoryAdmin,
    ChangeReasonAdmin,
    ConsoleHistoryValues,
    NamedRecordForm,
)
from hitlproject.vocabulary import NOT_SET
from ledger.models import MONEY_FIELDS, Account, Campaign, Creative


class GuardrailFieldsOnly:
    """The ledger's figures change only through approved actions; in the admin a policy owner
    edits only the guardrails on them. A new record is entered whole."""

    guardrail_fields: list[str]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [f.name for f in self.model._meta.fields if f.name not in self.guardrail_fields]


class LedgerHistoryValues(ConsoleHistoryValues):
    """The ledger's history says a setting that may hold no value (a target CPA, a budget cap,
    an account's total cap) and held none was "not set", as a proposal's page and its
    executions say of the same field, and as the ledger's own pages do
    (``empty_value_display``). Any other field empty reads "—", as elsewhere: a record's
    creation said "External id: not set → demo"."""

    def prepare_delta_change_value(self, change, value):
        if value is None and self.model._meta.get_field(change.field).null:
            return NOT_SET
        said = super().prepare_delta_change_value(change, value)
        if value is not None and change.field in MONEY_FIELDS.get(self.model._meta.model_name, ()):
            return f"{said} {self._currency()}"  # "1000.00 USD", as a proposal's page says it
        return said

    def _currency(self) -> str:
        record = self.delta.new_record
        if isinstance(record, Account.history.model):
            return record.currency
        return record.account.currency


@admin.register(Account)
class AccountAdmin(GuardrailFieldsOnly, ChangeReasonAdmin):
    # A cap set or lifted says why, in its history; a new account's name reads as itself.
    form = NamedRecordForm
    history_values = LedgerHistoryValues
    empty_value_display = NOT_SET
    guardrail_fields = ["max_total_daily_budget"]
    list_display = ["external_id", "name", "channel", "currency", "execution_endpoint"]
    list_filter = ["channel"]
    search_fields = ["external_id", "name"]
    # Where approved actions are sent, and the secret that signs them, are an administrator's:
    # a policy owner may cap spending, not redirect execution.
    integration_fields = ["execution_endpoint"]

    def get_fields(self, request, obj=None):
        fields = [name for name in super().get_fields(request, obj) if name != "execution_secret"]
        if obj is not None and request.user.is_superuser:
            fields.append("execution_secret")
        return fields

    def get_readonly_fields(self, request, obj=None):
        readonly = [*super().get_readonly_fields(request, obj), "execution_secret"]
        if request.user.is_superuser:
            return [name for name in readonly if name not in self.integration_fields]
        # Once each: a field listed twice is shown twice.
        return list(dict.fromkeys([*readonly, *self.integration_fields]))


@admin.register(Campaign)
class CampaignAdmin(GuardrailFieldsOnly, ChangeReasonAdmin):
    # A cap or a strategy lock set or lifted says why, in its history; a new campaign's name
    # reads as itself.
    form = NamedRecordForm
    history_values = LedgerHistoryValues
    empty_value_display = NOT_SET
    guardrail_fields = ["max_daily_budget", "strategy_locked"]
    list_display = [
        "external_id",
        "account",
        "name",
        "daily_budget",
        "bid",
        "bidding_strategy",
        "status",
        "max_daily_budget",
        "strategy_locked",
    ]
    list_filter = ["account", "status", "bidding_strategy"]
    list_select_related = ["account"]
    search_fields = ["external_id", "name"]


@admin.register(Creative)
class CreativeAdmin(AuditedHistoryAdmin):
    list_display = ["headline", "campaign", "deployed_by_proposal", "created_at"]
    list_select_related = ["campaign"]
    raw_id_fields = ["deployed_by_proposal"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # what a proposal's execution deployed, as its page and history say
