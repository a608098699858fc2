"""What an executor needs to reach an account's channel.

Google Ads: an account's link (the customer it acts on and the OAuth credentials it acts
with, set by an administrator; the developer token, client secret and refresh token are
secrets, kept out of history and out of every lookup the console makes), and each campaign's
place on Google Ads: the campaign, and the ad group whose max CPC is the ledger's bid and where
creatives are deployed as responsive search ads. The campaign's budget is the one Google Ads
says it has (``campaign.campaign_budget``), read on each execution, not stored here.
"""

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from audit.models import audited_history
from ledger.models import Account, Campaign

GOOGLE_ADS_SECRETS = ["developer_token", "client_secret", "refresh_token"]

customer_id_validator = RegexValidator(
    r"^\d{10}$", "A Google Ads customer id is ten digits, without dashes (1234567890)."
)


class GoogleAdsLink(models.Model):
    account = models.OneToOneField(
        Account, on_delete=models.PROTECT, related_name="google_ads_link"
    )
    customer_id = models.CharField(
        max_length=10,
        validators=[customer_id_validator],
        help_text="The Google Ads account acted on: ten digits, without dashes.",
    )
    login_customer_id = models.CharField(
        max_length=10,
        blank=True,
        validators=[customer_id_validator],
        help_text="The manager account the credentials log in through, if any.",
    )
    client_id = models.CharField(max_length=200, help_text="The OAuth client's id.")
    developer_token = models.CharField(max_length=200)
    client_secret = models.CharField(max_length=200)
    refresh_token = models.CharField(max_length=1000)
    updated_at = models.DateTimeField(auto_now=True)

    # The secrets stay out of history, which auditors read.
    history = audited_history(excluded_fields=GOOGLE_ADS_SECRETS)

    class Meta:
        verbose_name = "Google Ads link"
        ordering = ["account"]

    def __str__(self) -> str:
        return f"{self.account} → Google Ads {self.customer_id}"


class GoogleAdsCampaign(models.Model):
    """Where a ledger campaign lives on Google Ads. A responsive search ad needs three
    headlines and two descriptions; a deployed creative gives one of each and its call to
    action as a second headline, and this completes it."""

    campaign = models.OneToOneField(Campaign, on_delete=models.PROTECT, related_name="google_ads")
    google_campaign_id = models.PositiveBigIntegerField(help_text="The Google Ads campaign's id.")
    google_ad_group_id = models.PositiveBigIntegerField(
        help_text=(
            "The ad group whose max CPC (cpc_bid_micros) is the ledger's bid, and where "
            "creatives are deployed."
        )
    )
    final_url = models.URLField(help_text="Where the deployed ads lead.")
    extra_headline = models.CharField(
        max_length=30, help_text="The third headline of each deployed ad (30 characters at most)."
    )
    extra_description = models.CharField(
        max_length=90,
        help_text="The second description of each deployed ad (90 characters at most).",
    )

    history = audited_history()

    class Meta:
        verbose_name = "Google Ads campaign"
        ordering = ["campaign"]

    def __str__(self) -> str:
        return f"{self.campaign} → Google Ads campaign {self.google_campaign_id}"

    def clean(self) -> None:
        campaign = getattr(self, "campaign", None)
        if (
            campaign is not None
            and not GoogleAdsLink.objects.filter(account_id=campaign.account_id).exists()
        ):
            raise ValidationError({"campaign": "Its account has no Google Ads link yet."})


class ExecutionRound(models.Model):
    """A channel executor's round of attempts at one proposal: from the proposal going to
    executing until it leaves it. What every attempt of the round sends is frozen here when it
    starts (``request``, with the round's ``key``), so each sends the same, whatever changes
    meanwhile; ``lease_until`` keeps a second attempt from starting while one is under way or
    before the next is due. A round a person's review interrupted is ``held``: their approval
    of the same action resumes it with the same key (its attempt may have reached the channel).
    Rounds are kept: what was sent, and with which key, stays on record."""

    proposal = models.ForeignKey(
        "approvals.Proposal", on_delete=models.PROTECT, related_name="execution_rounds"
    )
    executor = models.CharField(max_length=32)
    key = models.CharField(max_length=200)
    first_attempt = models.PositiveSmallIntegerField(
        help_text="The number of the round's first attempt (``approvals.Execution.attempt``)."
    )
    request = models.JSONField()
    held = models.BooleanField(default=False)
    lease_until = models.DateTimeField(
        null=True, blank=True, help_text="No attempt starts before: one is under way, or due then."
    )
    started_at = models.DateTimeField()

    class Meta:
        ordering = ["proposal", "first_attempt"]
        constraints = [
            models.UniqueConstraint(
                fields=["proposal", "first_attempt"], name="execution_round_unique_start"
            )
        ]

    def __str__(self) -> str:
        return f"#{self.proposal_id} {self.executor} round {self.key}"
