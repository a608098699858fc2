"""Carrying out an approved action on Google Ads: the executor the registry asks
(``GoogleAdsExecutor``), and what every attempt of a round sends (``google_ads_frozen_action``,
read from the database, JSON to keep). The calls themselves, through the official
``google-ads`` library, are ``executors.google_ads_api``'s, imported when the first attempt is
made: the library and gRPC weigh about 25 MiB in every process that imports them, which a
platform with no account on Google Ads need not carry.

What maps to what:
- ``bid_adjustment``: the mapped ad group's max CPC (``ad_group.cpc_bid_micros``).
- ``budget_change``: the campaign's budget (``campaign_budget.amount_micros``), the one Google
  Ads says the campaign has; ``budget_reallocation``: both campaigns' budgets, in one atomic
  request.
- ``status_change``: ``campaign.status``, active ↔ ENABLED, paused ↔ PAUSED.
- ``strategy_change``: the campaign's bidding scheme: manual_cpc ↔ ``manual_cpc``,
  maximize_clicks ↔ ``target_spend``, maximize_conversions ↔ ``maximize_conversions``,
  target_cpa ↔ ``target_cpa.target_cpa_micros``, target_roas ↔ ``target_roas.target_roas``.
  A target CPA or ROAS reads as not set (None, as the ledger's snapshot has it) unless the
  campaign bids by it.
- ``creative_deployment``: one responsive search ad per creative in the mapped ad group
  (headlines: the headline, the call to action, the mapping's extra headline; descriptions:
  the body, the mapping's extra description), sent with ``partial_failure`` so each creative
  is reported on its own.
Money is the ledger's decimal (2 places) ↔ micros.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal

from django.conf import settings

from approvals import action_types
from approvals.services.supersession import TargetMove
from executors.base import ChannelError, ChannelExecutor, Frozen, Outcome
from executors.models import GoogleAdsCampaign, GoogleAdsLink
from ledger.models import Account, Channel

ACTION_TYPES = frozenset(
    {
        "bid_adjustment",
        "budget_change",
        "budget_reallocation",
        "status_change",
        "strategy_change",
        "creative_deployment",
    }
)


# A creative's texts, as they go into a responsive search ad, with what Google Ads takes.
TEXT_LIMITS = (
    ("headline", "headline", 30, "headline"),
    ("call_to_action", "call to action", 30, "headline"),
    ("body", "body", 90, "description"),
)


def text_width(text: str) -> int:
    """Characters as Google Ads counts them: wide (East Asian) characters count as two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


class GoogleAdsNotLinked(Exception):
    """The account, or a campaign the action names, has no place on Google Ads yet."""


@dataclass(frozen=True)
class GoogleAdsAction:
    """What every attempt sends, fixed when the round starts (JSON: ``as_json``/``from_json``).

    ``targets`` is the snapshot the proposal was made against, as the ledger writes it
    (``{"brand-search": {"bid": "2.00"}}``); ``campaigns`` is each named campaign's place on
    Google Ads."""

    action_type: str
    payload: dict[str, Any]
    targets: dict[str, dict[str, str]]
    customer_id: str
    campaigns: dict[str, dict[str, Any]]
    # The ledger account's currency, which the customer's must be ("": a round frozen before
    # it was kept, not checked).
    currency: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GoogleAdsAction:
        return cls(**data)


@dataclass(frozen=True)
class GoogleAdsItem:
    """One operation of a request sent with ``partial_failure``: done (its resource name) or
    not (why)."""

    index: int
    resource_name: str = ""
    error: str = ""


@dataclass(frozen=True)
class GoogleAdsOutcome:
    """What came of one attempt.

    ``result``: ``done`` (carried out; ``after`` is the channel's state now), ``moved`` (a
    target's live value differs from the snapshot; nothing sent; ``moves`` says which),
    ``failed`` (nothing carried out; ``retryable`` says whether another attempt can help),
    ``partial`` (some operations carried out and some not, item by item in ``items``; not
    retryable: trying again would do the done ones twice).
    ``before``/``after`` are in the ledger's terms (``{"brand-search": {"bid": "2.00"}}``)."""

    result: Literal["done", "moved", "failed", "partial"]
    retryable: bool = False
    detail: str = ""
    before: dict[str, dict[str, str]] = field(default_factory=dict)
    after: dict[str, dict[str, str]] = field(default_factory=dict)
    moves: tuple[TargetMove, ...] = ()
    request_ids: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    items: tuple[GoogleAdsItem, ...] = ()
    retry_after: float | None = None  # seconds Google Ads asked to be left alone (a quota)
    unanswered: bool = False  # sent, and no answer came: it may have been carried out

    @property
    def carried_out(self) -> bool:
        return self.result == "done"

    def as_record(self) -> dict[str, Any]:
        """For the execution record (JSON)."""
        return asdict(self)


def google_ads_frozen_action(
    *, account: Account, action_type: str, payload: dict[str, Any], targets: dict
) -> GoogleAdsAction:
    """The action as every attempt of this round sends it, with the account's and campaigns'
    places on Google Ads. Raises ``GoogleAdsNotLinked`` if one is missing."""
    link = GoogleAdsLink.objects.filter(account=account).first()
    if link is None:
        raise GoogleAdsNotLinked(f"Account {account} has no Google Ads link.")
    sets = action_types.named(action_type).campaign_fields(payload)
    names = set(sets)
    mapped = {
        mapping.campaign.external_id: mapping
        for mapping in GoogleAdsCampaign.objects.filter(
            campaign__account=account, campaign__external_id__in=names
        ).select_related("campaign")
    }
    missing = sorted(names - set(mapped))
    if missing:
        raise GoogleAdsNotLinked(f"No Google Ads campaign is set for {', '.join(missing)}.")
    return GoogleAdsAction(
        action_type=action_type,
        payload=payload,
        # The fields it sets, checked on the channel before it writes them; not those its
        # figures are only read from (``figures_read_from``), which the runner re-assessed.
        targets={
            name: {field: value for field, value in fields.items() if field in sets.get(name, ())}
            for name, fields in targets.items()
        },
        customer_id=link.customer_id,
        currency=account.currency,
        campaigns={
            name: {
                "campaign_id": mapping.google_campaign_id,
                "ad_group_id": mapping.google_ad_group_id,
                "final_url": mapping.final_url,
                "extra_headline": mapping.extra_headline,
                "extra_description": mapping.extra_description,
            }
            for name, mapping in mapped.items()
        },
    )


# The executor: what the shared channel runner calls.


class GoogleAdsExecutor(ChannelExecutor):
    """Carries out the action types Google Ads has (``ACTION_TYPES``) for an account whose
    channel is Google Ads and which has a link."""

    name = "google_ads"
    sends_key = False  # Google Ads takes no idempotency key: each value is read before it is set

    @property
    def lease(self) -> timedelta:
        # The token refresh, a read, each mutation validated then sent, a read again: each
        # call within the deadline.
        return timedelta(seconds=8 * settings.GOOGLE_ADS_DEADLINE)

    def carries_out(self, *, account: Account, action_type) -> bool:
        return (
            account.channel == Channel.GOOGLE_ADS
            and action_type.name in ACTION_TYPES
            and GoogleAdsLink.objects.filter(account=account).exists()
        )

    def refusals(self, *, account: Account, action_type, payload: dict) -> list[str]:
        """Creative text longer than a responsive search ad takes (Google Ads would refuse
        it when validated): the link is read only if some text is too long."""
        if action_type.name != "creative_deployment" or account.channel != Channel.GOOGLE_ADS:
            return []
        creatives = payload.get("creatives")
        too_long = [
            f"Creative {number}'s {label} is {width} characters; Google Ads takes at most "
            f"{limit} in a responsive search ad's {part}."
            for number, creative in enumerate(creatives if isinstance(creatives, list) else [], 1)
            if isinstance(creative, dict)
            for field_name, label, limit, part in TEXT_LIMITS
            if isinstance(creative.get(field_name), str)
            and (width := text_width(creative[field_name])) > limit
        ]
        if too_long and GoogleAdsLink.objects.filter(account=account).exists():
            return too_long
        return []

    def freeze(self, *, proposal, action_type, campaigns, targets, key, previous) -> Frozen:
        """The action against the ledger's values now (those the runner checked against the
        proposal's snapshot, or re-assessed), and the values it leaves."""
        try:
            action = google_ads_frozen_action(
                account=proposal.account,
                action_type=proposal.action_type,
                payload=proposal.payload,
                targets=targets,
            )
        except GoogleAdsNotLinked as error:
            raise ChannelError(str(error), permanent=True) from error
        proposed = {
            name: {field_name: str(value) for field_name, value in fields.items()}
            for name, fields in action_type.proposed_state(proposal.payload, campaigns).items()
        }
        return Frozen(key=key, request={"action": action.as_json(), "proposed": proposed})

    def carry_out(self, *, request: dict[str, Any], account: Account) -> Outcome:
        link = GoogleAdsLink.objects.filter(account=account).first()
        if link is None:
            raise ChannelError(f"Account {account} has no Google Ads link.", permanent=True)
        from executors.google_ads_api import google_ads_execute  # the library, when first used

        outcome = google_ads_execute(link=link, action=GoogleAdsAction.from_json(request["action"]))
        result, detail, after = outcome.result, outcome.detail, outcome.after
        if result == "moved" and _reached(outcome.before, request["proposed"]):
            # Every target already holds the value the action sets: an earlier attempt whose
            # answer never came got through (or someone made the same change). Not sent again.
            result, after = "done", outcome.before
            detail = "Google Ads already holds the values it sets; nothing sent again."
        return Outcome(
            result,
            retryable=outcome.retryable,
            detail=detail,
            before=outcome.before,
            after=after,
            moves=outcome.moves,
            request_ids=outcome.request_ids,
            retry_after=outcome.retry_after,
            unanswered=outcome.unanswered,
            response={
                "resource_names": list(outcome.resource_names),
                "items": [asdict(item) for item in outcome.items],
                # What a success alone would not say (nothing sent again, values not read back).
                **({"note": detail} if result == "done" and detail else {}),
            },
        )

    def worked_out_from(self, request: dict[str, Any]) -> dict[str, dict[str, str | None]]:
        return request["action"]["targets"]

    def sets(self, request: dict[str, Any]) -> dict[str, dict[str, str]]:
        return request["proposed"]

    def sends_again(self, request: dict[str, Any]) -> bool:
        # A value set is read first and not sent if it holds already; ads are created anew by
        # every request (Google Ads has no idempotency key for a creation).
        return request["action"]["action_type"] != "creative_deployment"

    def retry_finds_out(self, request: dict[str, Any]) -> bool:
        return self.sends_again(request)  # read first, whichever round sends it


def _reached(
    live: Mapping[str, Mapping[str, str | None]], proposed: Mapping[str, Mapping[str, str]]
):
    def same(a: str | None, b: str) -> bool:
        if a is None:  # not set on Google Ads
            return b is None
        try:
            return Decimal(a) == Decimal(b)
        except ArithmeticError:
            return a == b

    return bool(proposed) and all(
        name in live and field_name in live[name] and same(live[name][field_name], value)
        for name, fields in proposed.items()
        for field_name, value in fields.items()
    )
