"""The campaign ledger: the platform's record of the advertising state that actions change.

Agents read it to reason, action types compute magnitudes from it (never from an agent's
claim), and the built-in ledger executor writes approved actions to it.
"""

from decimal import Decimal

from django.core.exceptions import FieldDoesNotExist
from django.core.validators import MinValueValidator
from django.db import models

from audit.models import audited_history
from hitlproject.outbound import validate_outbound_url
from hitlproject.signing import new_secret
from hitlproject.vocabulary import NOT_SET


class Channel(models.TextChoices):
    GOOGLE_ADS = "google_ads", "Google Ads"
    META = "meta", "Meta"
    LINKEDIN = "linkedin", "LinkedIn"
    TIKTOK = "tiktok", "TikTok"
    MICROSOFT_ADS = "microsoft_ads", "Microsoft Ads"
    OTHER = "other", "Other"


class Account(models.Model):
    external_id = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    channel = models.CharField(max_length=32, choices=Channel.choices)
    currency = models.CharField(max_length=3, help_text="ISO 4217 code, e.g. USD.")
    max_total_daily_budget = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],  # a cap below nothing caps nothing
        help_text="Budget cap: the most the account's active campaigns may spend per day in all.",
    )
    execution_endpoint = models.URLField(
        blank=True,
        validators=[validate_outbound_url],
        help_text=(
            "Set: approved actions are POSTed here, signed, to be carried out on the channel "
            "(the webhook executor), and the ledger records them once it answers 2xx. Empty: "
            "the built-in ledger executor carries them out."
        ),
    )
    execution_secret = models.CharField(
        max_length=64,
        default=new_secret,
        editable=False,
        help_text="Signs the webhook executor's requests (HMAC-SHA256).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # The signing secret stays out of history, which auditors read.
    history = audited_history(excluded_fields=["execution_secret"])

    class Meta:
        ordering = ["external_id"]

    def __str__(self) -> str:
        return self.external_id


class CampaignStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"


class BiddingStrategy(models.TextChoices):
    MANUAL_CPC = "manual_cpc", "Manual CPC"
    MAXIMIZE_CLICKS = "maximize_clicks", "Maximize clicks"
    MAXIMIZE_CONVERSIONS = "maximize_conversions", "Maximize conversions"
    TARGET_CPA = "target_cpa", "Target CPA"
    TARGET_ROAS = "target_roas", "Target ROAS"


MONEY = {"max_digits": 14, "decimal_places": 2}
# The fields that hold an amount of the account's money, which the console says with its
# currency ("1000.00 USD"); a target ROAS is a ratio.
MONEY_FIELDS = {
    "account": frozenset({"max_total_daily_budget"}),
    "campaign": frozenset({"daily_budget", "bid", "target_cpa", "max_daily_budget"}),
}


class Campaign(models.Model):
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="campaigns")
    external_id = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    daily_budget = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal("0"))])
    bid = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal("0"))])
    bidding_strategy = models.CharField(
        max_length=32, choices=BiddingStrategy.choices, default=BiddingStrategy.MANUAL_CPC
    )
    target_cpa = models.DecimalField("target CPA", **MONEY, null=True, blank=True)
    target_roas = models.DecimalField(
        "target ROAS", max_digits=8, decimal_places=2, null=True, blank=True
    )
    status = models.CharField(
        max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.ACTIVE
    )
    max_daily_budget = models.DecimalField(
        **MONEY,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],  # a cap below nothing caps nothing
        help_text="Budget cap: no action takes it above this.",
    )
    strategy_locked = models.BooleanField(
        default=False, help_text="A locked campaign's bidding strategy is not changed by agents."
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = audited_history()

    class Meta:
        ordering = ["account", "external_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "external_id"], name="campaign_unique_external_id"
            )
        ]

    def __str__(self) -> str:
        return self.external_id


# A campaign field and its value in the console's words: those of the edit form, the
# campaign's own pages and its history. Snapshots, executions' states and the API keep the
# field's name and the value's code; only what a person reads is put in words.
def campaign_field_label(name: str) -> str:
    """A campaign field as a sentence names it: its verbose name ("target CPA", "daily
    budget"); a capital first letter makes it a label. A field the ledger no longer has
    (named in an older record) reads as its name in words."""
    try:
        return str(Campaign._meta.get_field(name).verbose_name)
    except FieldDoesNotExist:
        return name.replace("_", " ")


def campaign_value_label(name: str, value: object) -> str:
    """A campaign field's recorded value as a person reads it: a choice by its label
    ("Manual CPC", "Paused"; a code the ledger has no label for, as recorded), a value never
    set as "not set" (a snapshot records it as null; older ones as the text "None"), a figure
    as recorded."""
    if value is None or value in ("", "None"):
        return NOT_SET
    try:
        field = Campaign._meta.get_field(name)
    except FieldDoesNotExist:
        return str(value)
    if field.choices:
        return str(dict(field.flatchoices).get(value, value))
    return str(value)


class Creative(models.Model):
    """An ad creative deployed to a campaign by an approved creative_deployment."""

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="creatives")
    headline = models.CharField(max_length=150)
    body = models.TextField(max_length=2000)
    call_to_action = models.CharField(max_length=50)
    deployed_by_proposal = models.ForeignKey(
        "approvals.Proposal", on_delete=models.PROTECT, related_name="deployed_creatives"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = audited_history()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.headline
