"""Carrying out a frozen action on Google Ads, through the official ``google-ads`` library
(for ``executors.google_ads``, which imports this module when an attempt is made).

The shape is the webhook executor's: the caller commits ``executing``, freezes what it will
send (``google_ads_frozen_action``, read from the database, JSON to keep), then calls
``google_ads_execute`` outside any transaction, and records what it returns. This module
writes nothing to the database.

``google_ads_execute`` reads the live values first (GoogleAdsService.Search): if one differs
from the snapshot the proposal was made against, it returns ``moved`` and mutates nothing
(the caller supersedes). Otherwise it sends each mutation with ``validate_only`` first, then
for real, reads the values again, and returns them before and after, with the request ids
and resource names Google Ads gave. Errors come back as a ``failed`` outcome that says whether
trying again can help (quota, rate, internal and transient errors) or not (authentication,
authorization, permission, invalid arguments).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from decimal import Decimal
from importlib import import_module
from typing import Any

import grpc
from django.conf import settings
from google.ads.googleads.client import GoogleAdsClient
from google.ads.googleads.errors import GoogleAdsException
from google.ads.googleads.interceptors import ExceptionInterceptor, MetadataInterceptor
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth import transport
from google.oauth2.credentials import Credentials
from google.protobuf import field_mask_pb2

from approvals import action_types
from approvals.services.supersession import target_moves
from executors.google_ads import ACTION_TYPES, GoogleAdsAction, GoogleAdsItem, GoogleAdsOutcome
from executors.models import GoogleAdsLink
from hitlproject.outbound import (
    Answer,
    AnswerTooLong,
    ExchangeFailed,
    exchange_within,
    failure_in_words,
)

API_VERSION = "v26"
SCOPES = ["https://www.googleapis.com/auth/adwords"]
FAILURE_KEY = f"google.ads.googleads.{API_VERSION}.errors.googleadsfailure-bin"

# Worth another try later: the API says so (quota, its own trouble, a concurrent change), or the
# call never got an answer.
RETRYABLE_ERRORS = frozenset({"quota_error", "internal_error", "database_error"})
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.ABORTED,
    }
)

# Statuses that come when no answer did: the call may or may not have been carried out.
NO_ANSWER_CODES = frozenset(
    {
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
    }
)

STATUS_TO_LEDGER = {"ENABLED": "active", "PAUSED": "paused"}
STATUS_TO_API = {ledger: api for api, ledger in STATUS_TO_LEDGER.items()}
STRATEGY_TO_LEDGER = {
    "MANUAL_CPC": "manual_cpc",
    "TARGET_SPEND": "maximize_clicks",
    "MAXIMIZE_CONVERSIONS": "maximize_conversions",
    "TARGET_CPA": "target_cpa",
    "TARGET_ROAS": "target_roas",
}
# The ledger's strategy → the field of Campaign's bidding-scheme oneof that sets it.
STRATEGY_SCHEME = {
    "manual_cpc": "manual_cpc",
    "maximize_clicks": "target_spend",
    "maximize_conversions": "maximize_conversions",
    "target_cpa": "target_cpa",
    "target_roas": "target_roas",
}

# The action types whose mutations carry amounts of money (bids, budgets, a target CPA).
SENDS_MONEY = frozenset(
    {"bid_adjustment", "budget_change", "budget_reallocation", "strategy_change"}
)
CENT = Decimal("0.01")
MICROS = Decimal(1_000_000)


def google_ads_execute(*, link: GoogleAdsLink, action: GoogleAdsAction) -> GoogleAdsOutcome:
    """Carry out a frozen action on Google Ads (network only; no database)."""
    if action.action_type not in ACTION_TYPES:
        return GoogleAdsOutcome(
            "failed", detail=f"Google Ads does not carry out {action.action_type} actions."
        )
    session = _Session(link=link, customer_id=action.customer_id)
    try:
        return session.outcome(_carry_out(session, action))
    except _Refused as refused:
        detail = refused.detail.rstrip(".")
        if refused.unanswered:
            detail += (
                ". No answer came: it may have been carried out; the next attempt reads the "
                "live values first and sends nothing if Google Ads holds the new ones already"
            )
        # A failure the platform does not retry is said as that, not as one no attempt can
        # mend: "another attempt cannot help" read beside the page's Retry button, for a
        # permission a person can grant before retrying.
        detail += (
            " (another attempt may succeed)."
            if refused.retryable
            else " (not tried again by itself)."
        )
        return session.outcome(
            GoogleAdsOutcome(
                "failed",
                retryable=refused.retryable,
                detail=detail,
                items=refused.items,
                retry_after=refused.retry_after,
                unanswered=refused.unanswered or refused.may_be_done,
            )
        )
    finally:
        session.close()


# The session: one client, its services, and the request ids every call answered with.


class _Refused(Exception):
    """A call that did not carry anything out, or (``unanswered``: no answer came to a real
    mutation) one that may have."""

    def __init__(
        self,
        detail: str,
        *,
        retryable: bool,
        items: tuple = (),
        answered: bool = True,
        retry_after: float | None = None,
    ):
        super().__init__(detail)
        self.detail, self.retryable, self.items = detail, retryable, items
        self.answered, self.unanswered = answered, False
        # Whether it may have been carried out (an unanswered call, or one re-told as final).
        self.may_be_done = False
        self.retry_after = retry_after


class _RequestIds(grpc.UnaryUnaryClientInterceptor):
    """Collects the ``request-id`` Google Ads answers each call with, success or error."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def intercept_unary_unary(self, continuation, client_call_details, request):
        response = continuation(client_call_details, request)
        error = response.exception()
        if error is None:
            found = _metadata_value(response.initial_metadata(), "request-id")
        else:
            found = getattr(error, "request_id", None) or _metadata_value(
                _trailing(error), "request-id"
            )
        if found:
            self.ids.append(found)
        return response


def _metadata_value(metadata, key: str):
    for name, value in metadata or ():
        if name == key:
            return value
    return None


def _trailing(error) -> Sequence:
    call = getattr(error, "response", error)  # api_core errors keep the gRPC call here
    trailing = getattr(call, "trailing_metadata", None)
    return (trailing() or ()) if callable(trailing) else ()


def _local(endpoint: str) -> bool:
    host = endpoint.rsplit(":", 1)[0] if ":" in endpoint.strip("[]") else endpoint
    return host.strip("[]") in {"localhost", "127.0.0.1", "::1"}


# An OAuth token answer is a few hundred bytes.
TOKEN_ANSWER_LIMIT = 64 * 1024


class _TokenAnswer(transport.Response):
    def __init__(self, answer: Answer) -> None:
        self._answer = answer

    @property
    def status(self) -> int:
        return self._answer.status

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._answer.headers)

    @property
    def data(self) -> bytes:
        return self._answer.body


class _DeadlinedRequest(transport.Request):
    """google-auth's HTTP request, the whole exchange within the executor's deadline and its
    answer read up to TOKEN_ANSWER_LIMIT: through requests, its timeout (its own default is
    120 s) bounds each read, so an OAuth server trickling its answer a byte at a time held
    the execution worker for as long as it liked."""

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        try:
            answer = exchange_within(
                method,
                url,
                content=body.encode() if isinstance(body, str) else body,
                headers=dict(headers or {}),
                deadline=settings.GOOGLE_ADS_DEADLINE,
                limit=TOKEN_ANSWER_LIMIT,
            )
        except ExchangeFailed as error:  # reached nobody, or may have reached it
            said = failure_in_words("Google's OAuth server", str(error), went=error.went)
            raise auth_exceptions.TransportError(said) from error
        except AnswerTooLong as error:
            said = f"Google's OAuth server's answer could not be read: {error}"
            raise auth_exceptions.TransportError(said) from error
        return _TokenAnswer(answer)


def google_ads_client(link: GoogleAdsLink) -> GoogleAdsClient:
    """A client with the link's credentials, its access token fetched now (so that a refresh
    token refused is an answer here, not a failure inside gRPC). The client is built from
    its parts rather than ``load_from_dict``, which would fetch the token from Google's own
    address and not from ``GOOGLE_ADS_TOKEN_URI``."""
    credentials = Credentials(
        None,
        refresh_token=link.refresh_token,
        client_id=link.client_id,
        client_secret=link.client_secret,
        token_uri=settings.GOOGLE_ADS_TOKEN_URI,
        scopes=SCOPES,
    )
    try:
        credentials.refresh(_DeadlinedRequest())
    except auth_exceptions.RefreshError as error:
        retryable = bool(getattr(error, "retryable", False))
        raise _Refused(
            f"Google's OAuth server refused the link's credentials: {error}", retryable=retryable
        ) from error
    except auth_exceptions.TransportError as error:
        raise _Refused(str(error), retryable=True) from error
    return GoogleAdsClient(
        credentials=credentials,
        developer_token=link.developer_token,
        endpoint=settings.GOOGLE_ADS_API_ENDPOINT,
        login_customer_id=link.login_customer_id or None,
        version=API_VERSION,
        use_proto_plus=True,
    )


class _Session:
    def __init__(self, *, link: GoogleAdsLink, customer_id: str) -> None:
        self.link, self.customer_id = link, customer_id
        self.recorder = _RequestIds()
        self.resource_names: list[str] = []
        self._client: GoogleAdsClient | None = None
        self._services: dict[str, Any] = {}

    @property
    def client(self) -> GoogleAdsClient:
        if self._client is None:
            self._client = google_ads_client(self.link)
        return self._client

    def service(self, name: str):
        if name not in self._services:
            self._services[name] = self._new_service(name)
        return self._services[name]

    def _new_service(self, name: str):
        client = self.client
        if not _local(client.endpoint):
            return client.get_service(name, interceptors=[self.recorder])
        # A local endpoint (a test's fake) has no certificate for TLS: gRPC's local channel
        # credentials instead, which still carry the OAuth token. Otherwise as get_service
        # builds it: the library's transport and client, its metadata and error interceptors.
        snaked = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
        module = import_module(f"google.ads.googleads.{API_VERSION}.services.services.{snaked}")
        client_class = getattr(module, f"{name}Client")
        transport_class = client_class.get_transport_class("grpc")
        channel = transport_class.create_channel(
            host=client.endpoint,
            credentials=client.credentials,
            ssl_credentials=grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
        )
        channel = grpc.intercept_channel(
            channel,
            self.recorder,
            MetadataInterceptor(client.developer_token, client.login_customer_id, None),
            ExceptionInterceptor(API_VERSION, use_proto_plus=True),
        )
        return client_class(transport=transport_class(channel=channel))

    def call(self, method, request):
        """Call a service method; an error becomes ``_Refused``, saying if a retry can help."""
        try:
            return method(request=request, timeout=settings.GOOGLE_ADS_DEADLINE)
        except (GoogleAdsException, api_exceptions.GoogleAPICallError, grpc.RpcError) as error:
            raise _refusal(error) from error

    def search(self, query: str) -> list:
        service = self.service("GoogleAdsService")
        request = self.client.get_type("SearchGoogleAdsRequest")
        request.customer_id, request.query = self.customer_id, query
        return list(self.call(service.search, request))

    def mutate(self, service_name: str, method_name: str, operations, *, partial=False):
        """Validate, then send for real. Returns the response's results, item by item when
        ``partial``."""
        service = self.service(service_name)
        method = getattr(service, method_name)
        request_type = type(method.__self__).__name__.removesuffix("Client")
        request_name = "Mutate" + method_name.removeprefix("mutate_").title().replace("_", "")
        for validate_only in (True, False):
            request = self.client.get_type(f"{request_name}Request")
            request.customer_id = self.customer_id
            request.operations.extend(operations)
            request.validate_only = validate_only
            if partial:
                request.partial_failure = True
            try:
                response = self.call(method, request)
            except _Refused as refused:
                # Google Ads' own failure says it did nothing; without one (the deadline
                # passed, the connection broke) a real mutation may have been carried out.
                refused.unanswered = not validate_only and not refused.answered
                # Trying again is safe for a value set (the next attempt reads it first), so
                # it is how to find out; a creation says otherwise (``_deploy_creatives``).
                refused.retryable = refused.retryable or refused.unanswered
                raise
            items = _items(response, len(operations)) if partial else ()
            failed = [item for item in items if item.error]
            if validate_only and failed:
                raise _Refused(
                    f"Google Ads refused {len(failed)} of {len(operations)} "
                    f"({request_type}, validated, nothing sent): "
                    + "; ".join(f"#{item.index + 1}: {item.error}" for item in failed),
                    retryable=False,
                    items=items,
                )
        names = [result.resource_name for result in response.results if result.resource_name]
        self.resource_names += names
        return response, items

    def outcome(self, outcome: GoogleAdsOutcome) -> GoogleAdsOutcome:
        return GoogleAdsOutcome(
            **{
                **asdict(outcome),
                "moves": outcome.moves,
                "items": outcome.items,
                "request_ids": tuple(self.recorder.ids),
                "resource_names": tuple(self.resource_names),
            }
        )

    def close(self) -> None:
        for service in self._services.values():
            service.transport.close()


def _refusal(error) -> _Refused:
    failure = getattr(error, "failure", None)
    if failure is None:
        raw = _metadata_value(_trailing(error), FAILURE_KEY)
        if raw:
            failure = _failure_type().deserialize(raw)
    code = error.error.code() if isinstance(error, GoogleAdsException) else _code(error)
    kinds = [_kind(item) for item in failure.errors] if failure is not None else []
    if kinds:
        retryable = all(kind in RETRYABLE_ERRORS for kind, _ in kinds)
        said = "; ".join(
            f"{kind} {name}: {item.message}"
            for (kind, name), item in zip(kinds, failure.errors, strict=True)
        )
    else:
        retryable = code in RETRYABLE_CODES
        said = getattr(error, "message", None) or str(error)
    code_name = code.name if code is not None else "no status"
    # A quota error says when to come back: the longest of its errors' retry delays.
    delays = [
        item.details.quota_error_details.retry_delay.total_seconds()
        for item in (failure.errors if failure is not None else ())
        if "quota_error_details" in item.details
    ]
    return _Refused(
        f"Google Ads answered {code_name}: {said}",
        retryable=retryable,
        # Google Ads' own failure, or a status that is an answer (refused, not found): nothing
        # was carried out. The deadline passing or the connection lost says nothing either way.
        answered=failure is not None or (code is not None and code not in NO_ANSWER_CODES),
        retry_after=max(delays) if delays and max(delays) > 0 else None,
    )


def _code(error) -> grpc.StatusCode | None:
    if isinstance(error, api_exceptions.GoogleAPICallError):
        return error.grpc_status_code
    code = getattr(error, "code", None)
    return code() if callable(code) else None


def _failure_type():
    return import_module(f"google.ads.googleads.{API_VERSION}.errors.types.errors").GoogleAdsFailure


def _kind(error) -> tuple[str, str]:
    """The error's kind (``quota_error``) and its name (``RESOURCE_EXHAUSTED``)."""
    kind = type(error.error_code).pb(error.error_code).WhichOneof("error_code")
    if kind is None:  # a code newer than this library version: it cannot name it
        return "unknown_error", "UNNAMED"
    value = getattr(error.error_code, kind, None)
    return kind, getattr(value, "name", str(value))


def _items(response, count: int) -> tuple[GoogleAdsItem, ...]:
    """Each operation's result in a ``partial_failure`` response."""
    errors: dict[int, list[str]] = {}
    status = response.partial_failure_error
    for detail in status.details if status and status.code else ():
        failure = _failure_type().deserialize(detail.value)
        for error in failure.errors:
            index = next(
                (
                    element.index
                    for element in error.location.field_path_elements
                    if element.field_name == "operations"
                ),
                None,
            )
            kind, name = _kind(error)
            errors.setdefault(index, []).append(f"{kind} {name}: {error.message}")
    results = list(response.results)
    return tuple(
        GoogleAdsItem(
            index=index,
            resource_name="" if index in errors else results[index].resource_name,
            error="; ".join(errors.get(index, [])),
        )
        if index < len(results)
        else GoogleAdsItem(index=index, error="; ".join(errors.get(index, [])))
        for index in range(count)
    )


# Reading the live values, in the ledger's terms.


def _money(micros: int) -> str:
    return str((Decimal(micros) / MICROS).quantize(CENT))


def _micros(value) -> int:
    return int(Decimal(str(value)) * MICROS)


def _read(session: _Session, action: GoogleAdsAction) -> tuple[dict, dict]:
    """The live values of the fields the action reads, and the resource each lives on."""
    wanted = action_types.named(action.action_type).campaign_fields(action.payload)
    campaign_ids = {action.campaigns[name]["campaign_id"] for name in wanted}
    ad_group_ids = {
        action.campaigns[name]["ad_group_id"] for name, fields in wanted.items() if "bid" in fields
    }
    campaigns, ad_groups, currencies = {}, {}, set()
    if any(set(fields) - {"bid"} for fields in wanted.values()):
        ids = ", ".join(str(number) for number in sorted(campaign_ids))
        for row in session.search(
            "SELECT customer.currency_code, campaign.id, campaign.status, "
            "campaign.bidding_strategy_type, "
            "campaign.target_cpa.target_cpa_micros, campaign.target_roas.target_roas, "
            "campaign_budget.resource_name, campaign_budget.amount_micros "
            f"FROM campaign WHERE campaign.id IN ({ids})"
        ):
            campaigns[row.campaign.id] = row
            currencies.add(row.customer.currency_code)
    if ad_group_ids:
        ids = ", ".join(str(number) for number in sorted(ad_group_ids))
        for row in session.search(
            "SELECT customer.currency_code, ad_group.id, ad_group.resource_name, "
            "ad_group.cpc_bid_micros "
            f"FROM ad_group WHERE ad_group.id IN ({ids})"
        ):
            ad_groups[row.ad_group.id] = row.ad_group
            currencies.add(row.customer.currency_code)
    _same_currency(session, action, currencies)
    live, rows = {}, {}
    for name, fields in wanted.items():
        place = action.campaigns[name]
        row = campaigns.get(place["campaign_id"])
        ad_group = ad_groups.get(place["ad_group_id"])
        if set(fields) - {"bid"} and row is None:
            raise _Refused(
                f"Google Ads has no campaign {place['campaign_id']} (for {name}) in customer "
                f"{session.customer_id}.",
                retryable=False,
            )
        if "bid" in fields and ad_group is None:
            raise _Refused(
                f"Google Ads has no ad group {place['ad_group_id']} (for {name}).",
                retryable=False,
            )
        live[name] = {field_name: _value(field_name, row, ad_group) for field_name in fields}
        rows[name] = (row, ad_group)
    return live, rows


def _same_currency(session: _Session, action: GoogleAdsAction, currencies: set[str]) -> None:
    """Refuse to send an amount the ledger keeps in one currency to a customer that keeps its
    money in another: 550.00 would be read there in its own (a link to the wrong customer).
    A round frozen before the account's currency was kept with it is not checked."""
    if not action.currency or action.action_type not in SENDS_MONEY:
        return
    other = sorted(currency for currency in currencies if currency != action.currency)
    if other:
        raise _Refused(
            f"Google Ads customer {session.customer_id} keeps its money in {', '.join(other)}, "
            f"the ledger's account in {action.currency}: nothing sent. Link the account to a "
            f"customer in {action.currency}.",
            retryable=False,
        )


def _value(field_name: str, row, ad_group) -> str | None:
    if field_name == "bid":
        return _money(ad_group.cpc_bid_micros)
    if field_name == "daily_budget":
        return _money(row.campaign_budget.amount_micros)
    campaign = row.campaign
    if field_name == "status":
        return STATUS_TO_LEDGER.get(campaign.status.name, campaign.status.name.lower())
    strategy = campaign.bidding_strategy_type.name
    if field_name == "bidding_strategy":
        return STRATEGY_TO_LEDGER.get(strategy, strategy.lower())
    if field_name == "target_cpa":
        return _money(campaign.target_cpa.target_cpa_micros) if strategy == "TARGET_CPA" else None
    if field_name == "target_roas":
        roas = Decimal(str(campaign.target_roas.target_roas)).quantize(CENT)
        return str(roas) if strategy == "TARGET_ROAS" else None
    raise ValueError(f"No Google Ads value is read for {field_name}.")


# Carrying out each action type.


def _carry_out(session: _Session, action: GoogleAdsAction) -> GoogleAdsOutcome:
    before, rows = _read(session, action)
    moves = target_moves(action.targets, before)
    if moves:
        return GoogleAdsOutcome(
            "moved",
            detail="; ".join(str(move) for move in moves),
            before=before,
            moves=tuple(moves),
        )
    payload = action.payload
    if action.action_type == "creative_deployment":
        return _deploy_creatives(session, action)
    if action.action_type == "bid_adjustment":
        _, ad_group = rows[payload["campaign"]]
        operation = session.client.get_type("AdGroupOperation")
        operation.update.resource_name = ad_group.resource_name
        operation.update.cpc_bid_micros = _micros(payload["new_bid"])
        operation.update_mask = field_mask_pb2.FieldMask(paths=["cpc_bid_micros"])
        session.mutate("AdGroupService", "mutate_ad_groups", [operation])
    elif action.action_type in ("budget_change", "budget_reallocation"):
        if action.action_type == "budget_change":
            amounts = {payload["campaign"]: Decimal(payload["new_daily_budget"])}
        else:
            amount = Decimal(payload["amount"])
            source, target = payload["from_campaign"], payload["to_campaign"]
            amounts = {
                source: Decimal(before[source]["daily_budget"]) - amount,
                target: Decimal(before[target]["daily_budget"]) + amount,
            }
        budgets = {name: rows[name][0].campaign_budget.resource_name for name in amounts}
        if len(set(budgets.values())) < len(budgets):
            raise _Refused(
                "The two campaigns share one budget on Google Ads: nothing can move between them.",
                retryable=False,
            )
        operations = []
        for name, new in amounts.items():
            operation = session.client.get_type("CampaignBudgetOperation")
            operation.update.resource_name = budgets[name]
            operation.update.amount_micros = _micros(new)
            operation.update_mask = field_mask_pb2.FieldMask(paths=["amount_micros"])
            operations.append(operation)
        session.mutate("CampaignBudgetService", "mutate_campaign_budgets", operations)
    else:
        row, _ = rows[payload["campaign"]]
        operation = session.client.get_type("CampaignOperation")
        operation.update.resource_name = row.campaign.resource_name
        if action.action_type == "status_change":
            operation.update.status = session.client.enums.CampaignStatusEnum[
                STATUS_TO_API[payload["status"]]
            ]
            paths = ["status"]
        else:
            paths = _strategy(operation.update, payload["changes"], before[payload["campaign"]])
        operation.update_mask = field_mask_pb2.FieldMask(paths=paths)
        session.mutate("CampaignService", "mutate_campaigns", [operation])
    try:
        after, _ = _read(session, action)
    except _Refused as refused:
        # Carried out all the same (Google Ads answered the mutation): the ledger records the
        # values sent, not a failure that would leave it behind Google Ads.
        return GoogleAdsOutcome(
            "done",
            before=before,
            detail=f"Carried out; the values after could not be read back ({refused.detail}), "
            "so the ledger records the values sent.",
        )
    return GoogleAdsOutcome("done", before=before, after=after)


def _strategy(campaign, changes: Mapping[str, Any], live: Mapping[str, str]) -> list[str]:
    """Set the campaign's bidding scheme as ``changes`` leave it; the update mask's paths."""
    strategy = changes.get("bidding_strategy") or live.get("bidding_strategy")
    if strategy is None:  # only a target changes: the strategy it belongs to
        strategy = "target_cpa" if "target_cpa" in changes else "target_roas"
    for target in ("target_cpa", "target_roas"):
        if target in changes and strategy != target:
            raise _Refused(
                f"On Google Ads a {target.replace('_', ' ')} applies only to a campaign that "
                f"bids by it; the strategy would be {strategy}.",
                retryable=False,
            )
    scheme = STRATEGY_SCHEME[strategy]
    if strategy == "target_cpa":
        value = changes.get("target_cpa", live.get("target_cpa"))
        if value in (None, "None"):
            raise _Refused("A target CPA strategy needs a target CPA.", retryable=False)
        campaign.target_cpa.target_cpa_micros = _micros(value)
        return ["target_cpa.target_cpa_micros"]
    if strategy == "target_roas":
        value = changes.get("target_roas", live.get("target_roas"))
        if value in (None, "None"):
            raise _Refused("A target ROAS strategy needs a target ROAS.", retryable=False)
        campaign.target_roas.target_roas = float(Decimal(str(value)))
        return ["target_roas.target_roas"]
    # A scheme with no settings of its own: set the empty message, so the oneof picks it.
    getattr(type(campaign).pb(campaign), scheme).SetInParent()
    return [scheme]


def _deploy_creatives(session: _Session, action: GoogleAdsAction) -> GoogleAdsOutcome:
    place = action.campaigns[action.payload["campaign"]]
    ad_group = f"customers/{session.customer_id}/adGroups/{place['ad_group_id']}"
    client = session.client
    operations = []
    for creative in action.payload["creatives"]:
        operation = client.get_type("AdGroupAdOperation")
        ad_group_ad = operation.create
        ad_group_ad.ad_group = ad_group
        ad_group_ad.status = client.enums.AdGroupAdStatusEnum.ENABLED
        ad_group_ad.ad.final_urls.append(place["final_url"])
        for text in (creative["headline"], creative["call_to_action"], place["extra_headline"]):
            asset = client.get_type("AdTextAsset")
            asset.text = text
            ad_group_ad.ad.responsive_search_ad.headlines.append(asset)
        for text in (creative["body"], place["extra_description"]):
            asset = client.get_type("AdTextAsset")
            asset.text = text
            ad_group_ad.ad.responsive_search_ad.descriptions.append(asset)
        operations.append(operation)
    try:
        _, items = session.mutate(
            "AdGroupAdService", "mutate_ad_group_ads", operations, partial=True
        )
    except _Refused as refused:
        if not refused.unanswered:
            raise
        # Google Ads has no idempotency key for creating ads: sent again, they could be
        # created twice. A person looks first.
        final = _Refused(
            f"No answer to the request creating the ads ({refused.detail}): they may have "
            f"been created in ad group {place['ad_group_id']}. Not sent again (Google Ads "
            "would create them twice); check the ad group on Google Ads before retrying.",
            retryable=False,
        )
        final.may_be_done = True
        raise final from refused
    failed = [item for item in items if item.error]
    if not failed:
        return GoogleAdsOutcome("done", items=items)
    return GoogleAdsOutcome(
        "partial" if len(failed) < len(items) else "failed",
        detail=f"Google Ads refused {len(failed)} of {len(items)}: "
        + "; ".join(f"#{item.index + 1}: {item.error}" for item in failed),
        items=items,
    )
