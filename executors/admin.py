"""The executors' settings in the console: administrators' (superusers') only.

A Google Ads link's secrets are written, never shown: the form asks for them as passwords,
renders none back, and keeps the stored value when a field is left empty. No list filters,
searches or sorts by them (``audit.secret_fields``)."""

from django import forms
from django.contrib import admin
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from audit.admin import AuditedHistoryAdmin
from executors.models import GOOGLE_ADS_SECRETS, GoogleAdsCampaign, GoogleAdsLink


class AdministratorsOnly:
    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    has_add_permission = has_module_permission

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    has_delete_permission = has_change_permission


SECRET_LABELS = {
    "developer_token": "Developer token",
    "client_secret": "OAuth client secret",
    "refresh_token": "OAuth refresh token",
}


def secret_field(name: str) -> forms.CharField:
    return forms.CharField(
        label=SECRET_LABELS[name],
        required=False,
        max_length=GoogleAdsLink._meta.get_field(name).max_length,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )


class GoogleAdsLinkForm(forms.ModelForm):
    """The secrets as write-only fields: required for a new link, left empty to keep."""

    new_developer_token = secret_field("developer_token")
    new_client_secret = secret_field("client_secret")
    new_refresh_token = secret_field("refresh_token")

    class Meta:
        model = GoogleAdsLink
        fields = ["account", "customer_id", "login_customer_id", "client_id"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        adding = self.instance.pk is None
        for name in GOOGLE_ADS_SECRETS:
            self.fields[f"new_{name}"].required = adding
            if not adding:
                self.fields[f"new_{name}"].help_text = "Set; never shown. Leave empty to keep it."

    def clean(self):
        cleaned = super().clean()
        for name in GOOGLE_ADS_SECRETS:
            if cleaned.get(f"new_{name}"):
                setattr(self.instance, name, cleaned[f"new_{name}"])
        return cleaned


@admin.register(GoogleAdsLink)
class GoogleAdsLinkAdmin(AdministratorsOnly, AuditedHistoryAdmin):
    form = GoogleAdsLinkForm
    exclude = GOOGLE_ADS_SECRETS  # also hidden in history, which has no such columns
    list_display = ["account", "customer_id", "login_customer_id", "client_id", "updated_at"]
    list_select_related = ["account"]
    search_fields = ["account__external_id", "customer_id"]
    readonly_fields = ["updated_at"]

    def get_fields(self, request, obj=None):
        fields = [name for name in super().get_fields(request, obj) if not name.startswith("new_")]
        return [*fields, *(f"new_{name}" for name in GOOGLE_ADS_SECRETS)]

    # A server error while saving is reported (logged, mailed) with the request: its secrets
    # starred out, as Django does for a password form.
    @method_decorator(sensitive_post_parameters(*(f"new_{name}" for name in GOOGLE_ADS_SECRETS)))
    def changeform_view(self, request, *args, **kwargs):
        return super().changeform_view(request, *args, **kwargs)


@admin.register(GoogleAdsCampaign)
class GoogleAdsCampaignAdmin(AdministratorsOnly, AuditedHistoryAdmin):
    list_display = ["campaign", "google_campaign_id", "google_ad_group_id", "final_url"]
    list_select_related = ["campaign"]
    search_fields = ["campaign__external_id", "google_campaign_id"]
