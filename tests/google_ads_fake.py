"""A local Google Ads API that speaks its wire protocol: gRPC, the library's own request and
response messages, its method paths, ``request-id`` metadata, and errors as Google Ads sends
them (a status code with a ``GoogleAdsFailure`` in the trailing metadata). The official
library talks to it unchanged, pointed at it by ``GOOGLE_ADS_API_ENDPOINT``; an OAuth token
endpoint beside it (``GOOGLE_ADS_TOKEN_URI``) exchanges the refresh token for the access token
every call must carry.

It keeps a small account (campaigns with their budgets and bidding, ad groups with their max
CPC, ads), answers GoogleAdsService.Search with rows, carries out mutations (or only checks
them, for ``validate_only``), and records every call. A test can make the next call fail with
a quota error or a permission error (``fail_next``), make operations of the next real
mutation fail (``fail_items``), or change a value as someone in Google Ads' own interface would
(``state``).

The google-ads library is GAPIC-generated with proto-plus and ships no ``*_pb2_grpc``
servicers, so the server is a generic handler per service, each method registered under the
path the library's transport calls, with the library's message types' (de)serializers.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import import_module
from urllib.parse import parse_qs

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2

V = "v26"


def _types(module: str):
    return import_module(f"google.ads.googleads.{V}.{module}")


errors = _types("errors.types.errors")
resources = {
    name: _types(f"resources.types.{name}")
    for name in ("campaign", "campaign_budget", "ad_group", "customer")
}
services = {
    name: _types(f"services.types.{name}")
    for name in (
        "google_ads_service",
        "campaign_budget_service",
        "campaign_service",
        "ad_group_service",
        "ad_group_ad_service",
    )
}
enums = {
    "status": _types("enums.types.campaign_status").CampaignStatusEnum.CampaignStatus,
    "strategy": _types(
        "enums.types.bidding_strategy_type"
    ).BiddingStrategyTypeEnum.BiddingStrategyType,
    "quota": _types("errors.types.quota_error").QuotaErrorEnum.QuotaError,
    "authorization": _types(
        "errors.types.authorization_error"
    ).AuthorizationErrorEnum.AuthorizationError,
    "authentication": _types(
        "errors.types.authentication_error"
    ).AuthenticationErrorEnum.AuthenticationError,
    "string_length": _types(
        "errors.types.string_length_error"
    ).StringLengthErrorEnum.StringLengthError,
    "collection_size": _types(
        "errors.types.collection_size_error"
    ).CollectionSizeErrorEnum.CollectionSizeError,
    "request": _types("errors.types.request_error").RequestErrorEnum.RequestError,
    "mutate": _types("errors.types.mutate_error").MutateErrorEnum.MutateError,
    "policy_finding": _types(
        "errors.types.policy_finding_error"
    ).PolicyFindingErrorEnum.PolicyFindingError,
    "range": _types("errors.types.range_error").RangeErrorEnum.RangeError,
}
SCHEMES = {
    "manual_cpc": "MANUAL_CPC",
    "target_spend": "TARGET_SPEND",
    "maximize_conversions": "MAXIMIZE_CONVERSIONS",
    "target_cpa": "TARGET_CPA",
    "target_roas": "TARGET_ROAS",
}


@dataclass
class Call:
    """One call the fake answered (or refused)."""

    method: str
    request: object
    metadata: dict[str, str]
    validate_only: bool = False
    request_id: str = ""


@dataclass
class Campaign:
    budget_id: int
    status: str = "ENABLED"
    strategy: str = "MANUAL_CPC"
    target_cpa_micros: int = 0
    target_roas: float = 0.0


@dataclass
class AdGroup:
    campaign_id: int
    cpc_bid_micros: int


@dataclass
class State:
    campaigns: dict[int, Campaign] = field(default_factory=dict)
    budgets: dict[int, int] = field(default_factory=dict)
    ad_groups: dict[int, AdGroup] = field(default_factory=dict)
    ads: dict[int, dict] = field(default_factory=dict)


class Refusal(Exception):
    def __init__(self, code: grpc.StatusCode, failure):
        super().__init__(failure.errors[0].message)
        self.code, self.failure = code, failure


def ads_error(kind: str, name: str, message: str, index: int | None = None):
    enum_field = {"authorization": "authorization_error", "authentication": "authentication_error"}
    code = errors.ErrorCode(**{enum_field.get(kind, f"{kind}_error"): enums[kind][name]})
    error = errors.GoogleAdsError(error_code=code, message=message)
    if index is not None:
        error.location = errors.ErrorLocation(
            field_path_elements=[
                errors.ErrorLocation.FieldPathElement(field_name="operations", index=index)
            ]
        )
    return error


FAULTS = {
    "quota": (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        ("quota", "RESOURCE_TEMPORARILY_EXHAUSTED", "Too many requests. Retry in 30 seconds."),
    ),
    "permission": (
        grpc.StatusCode.PERMISSION_DENIED,
        ("authorization", "USER_PERMISSION_DENIED", "The user does not have permission."),
    ),
}


def unknown_failure():
    """A failure whose error code is one this library version has no field for (a newer API's):
    ``ErrorCode`` with field 9999 set, as bytes the library keeps but cannot name."""
    failure = errors.GoogleAdsFailure(
        errors=[errors.GoogleAdsError(message="Something this version cannot name.")]
    )
    unknown_code = bytes([0xB8, 0xF1, 0x04, 0x01])  # field 9999 (a varint) = 1
    error = errors.GoogleAdsError.pb(failure.errors[0]).SerializeToString()
    error += bytes([0x0A, len(unknown_code)]) + unknown_code  # field 1, error_code
    return errors.GoogleAdsFailure.deserialize(bytes([0x0A, len(error)]) + error)


# The tests' Google Ads: its customer, the link's secrets, and the demo ledger's campaigns as it
# holds them.
CUSTOMER = "1234567890"
SECRETS = {
    "developer_token": "dev-Tok3n-abcdefghijklmnop",
    "client_secret": "GOCSPX-client-secret-qrstuvwxyz",
    "refresh_token": "1//0refresh-token-ABCDEFGHIJKLMNOP",
}
# The demo ledger's campaigns, as Google Ads holds them: campaign, budget, ad group ids.
PLACES = {
    "brand-search": (101, 201, 301),
    "generic-search": (102, 202, 302),
    "display-retarget": (103, 203, 303),
}


class FakeGoogleAds:
    def __init__(self, *, customer_id: str, developer_token: str, refresh_token: str):
        self.customer_id, self.developer_token = customer_id, developer_token
        self.refresh_token = refresh_token
        self.currency = "USD"  # the customer's currency (customer.currency_code)
        self.quota_retry_seconds = 30  # a quota error's retry_delay
        self.state = State()
        self.calls: list[Call] = []
        self.token_requests: list[dict] = []
        self._access_tokens: set[str] = set()
        self._faults: list[list] = []  # [kind, method or None, matching calls to let by]
        self._delays: list[list] = []  # [method, seconds]
        self._item_faults: dict[int, str] = {}
        self._ids = itertools.count(900001)
        self._lock = threading.Lock()
        self._server = None
        self._token_server = None

    # Running

    def start(self) -> tuple[str, str]:
        """Listen on local ports; returns (gRPC endpoint, token URI)."""
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        for service, methods in self._handlers().items():
            self._server.add_generic_rpc_handlers(
                [
                    grpc.method_handlers_generic_handler(
                        f"google.ads.googleads.{V}.services.{service}", methods
                    )
                ]
            )
        port = self._server.add_secure_port(
            "127.0.0.1:0", grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        )
        self._server.start()
        self._token_server = ThreadingHTTPServer(("127.0.0.1", 0), self._token_handler())
        threading.Thread(target=self._token_server.serve_forever, daemon=True).start()
        token_port = self._token_server.server_address[1]
        return f"127.0.0.1:{port}", f"http://127.0.0.1:{token_port}/token"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
        if self._token_server is not None:
            self._token_server.shutdown()
            self._token_server.server_close()

    # What a test sets up, injects and reads

    def add_campaign(
        self,
        *,
        campaign_id: int,
        budget_id: int,
        amount_micros: int,
        ad_group_id: int,
        cpc_bid_micros: int,
        **settings,
    ) -> None:
        self.state.budgets[budget_id] = amount_micros
        self.state.campaigns[campaign_id] = Campaign(budget_id=budget_id, **settings)
        self.state.ad_groups[ad_group_id] = AdGroup(campaign_id, cpc_bid_micros)

    def clear(self) -> None:
        """As new: no campaigns, calls or faults (a session's fake, between tests)."""
        with self._lock:
            self.state = State()
            self.calls.clear()
            self.token_requests.clear()
            self._faults.clear()
            self._delays.clear()
            self._item_faults = {}

    def fail_next(self, kind: str, method: str | None = None, *, after: int = 0) -> None:
        """The next call (of ``method``, e.g. ``MutateAdGroups``, or any) fails with ``kind``:
        ``quota`` (RESOURCE_EXHAUSTED, a quota error), ``permission`` (PERMISSION_DENIED),
        ``unknown`` (an error code the library has no name for), ``bare_permission``
        (PERMISSION_DENIED with no Google Ads failure record); ``after``: the first so many
        matching calls are answered as usual."""
        self._faults.append([kind, method, after])

    def answer_late(self, method: str, seconds: float) -> None:
        """The next real (not validate_only) call of ``method`` is carried out, its answer sent
        ``seconds`` later (past the client's deadline, it never arrives)."""
        self._delays.append([method, seconds])

    def fail_items(self, reasons: dict[int, str]) -> None:
        """These operations (by index) of the next real mutation fail, the others succeed."""
        self._item_faults = dict(reasons)

    def mutations(self, *, validate_only: bool | None = None) -> list[Call]:
        return [
            call
            for call in self.calls
            if call.method.startswith("Mutate")
            and (validate_only is None or call.validate_only == validate_only)
        ]

    # OAuth

    def _token_handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                fake.token_requests.append(form)
                if (
                    form.get("grant_type") == "refresh_token"
                    and form.get("refresh_token") == fake.refresh_token
                ):
                    token = f"ya29.fake-{uuid.uuid4().hex}"
                    fake._access_tokens.add(token)
                    status, body = (
                        200,
                        {"access_token": token, "expires_in": 3600, "token_type": "Bearer"},
                    )
                else:
                    status, body = (
                        400,
                        {"error": "invalid_grant", "error_description": "Bad Request"},
                    )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler

    # gRPC

    def _handlers(self) -> dict[str, dict]:
        gas, budget, campaign, ad_group, ad = (
            services["google_ads_service"],
            services["campaign_budget_service"],
            services["campaign_service"],
            services["ad_group_service"],
            services["ad_group_ad_service"],
        )
        table = {
            "GoogleAdsService": {
                "Search": (gas.SearchGoogleAdsRequest, gas.SearchGoogleAdsResponse, self._search)
            },
            "CampaignBudgetService": {
                "MutateCampaignBudgets": (
                    budget.MutateCampaignBudgetsRequest,
                    budget.MutateCampaignBudgetsResponse,
                    self._mutate_budgets,
                )
            },
            "CampaignService": {
                "MutateCampaigns": (
                    campaign.MutateCampaignsRequest,
                    campaign.MutateCampaignsResponse,
                    self._mutate_campaigns,
                )
            },
            "AdGroupService": {
                "MutateAdGroups": (
                    ad_group.MutateAdGroupsRequest,
                    ad_group.MutateAdGroupsResponse,
                    self._mutate_ad_groups,
                )
            },
            "AdGroupAdService": {
                "MutateAdGroupAds": (
                    ad.MutateAdGroupAdsRequest,
                    ad.MutateAdGroupAdsResponse,
                    self._mutate_ads,
                )
            },
        }
        return {
            service: {
                method: grpc.unary_unary_rpc_method_handler(
                    self._answering(method, handler),
                    request_deserializer=request.deserialize,
                    response_serializer=response.serialize,
                )
                for method, (request, response, handler) in methods.items()
            }
            for service, methods in table.items()
        }

    def _answering(self, method: str, handler):
        def answer(request, context):
            request_id = uuid.uuid4().hex[:22]
            metadata = {key: value for key, value in context.invocation_metadata()}
            call = Call(
                method,
                request,
                metadata,
                validate_only=bool(getattr(request, "validate_only", False)),
                request_id=request_id,
            )
            with self._lock:
                self.calls.append(call)
                try:
                    self._authenticate(metadata, request)
                    fault = next((f for f in self._faults if f[1] in (None, method)), None)
                    if fault is not None and fault[2] > 0:
                        fault[2] -= 1
                        fault = None
                    if fault is not None:
                        self._faults.remove(fault)
                        if fault[0] == "unknown":
                            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION, unknown_failure())
                        if fault[0] == "bare_permission":  # a status, no failure record
                            context.set_trailing_metadata((("request-id", request_id),))
                            context.abort(grpc.StatusCode.PERMISSION_DENIED, "Not allowed.")
                        code, (kind, name, message) = FAULTS[fault[0]]
                        error = ads_error(kind, name, message)
                        if kind == "quota":  # as Google Ads says when to come back
                            error.details.quota_error_details.retry_delay = timedelta(
                                seconds=self.quota_retry_seconds
                            )
                        raise Refusal(
                            code, errors.GoogleAdsFailure(errors=[error], request_id=request_id)
                        )
                    response = handler(request)
                    delay = next(
                        (d for d in self._delays if d[0] == method and not call.validate_only),
                        None,
                    )
                    if delay is not None:
                        self._delays.remove(delay)
                except Refusal as refusal:
                    refusal.failure.request_id = request_id
                    context.set_trailing_metadata(
                        (
                            ("request-id", request_id),
                            (
                                f"google.ads.googleads.{V}.errors.googleadsfailure-bin",
                                errors.GoogleAdsFailure.serialize(refusal.failure),
                            ),
                        )
                    )
                    context.abort(refusal.code, str(refusal))
            if delay is not None:
                time.sleep(delay[1])  # done; the answer comes late
            context.send_initial_metadata((("request-id", request_id),))
            return response

        return answer

    def _authenticate(self, metadata: dict, request) -> None:
        authorization = metadata.get("authorization", "")
        if authorization.removeprefix("Bearer ") not in self._access_tokens:
            raise Refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                errors.GoogleAdsFailure(
                    errors=[ads_error("authentication", "OAUTH_TOKEN_INVALID", "Invalid token.")]
                ),
            )
        if metadata.get("developer-token") != self.developer_token:
            raise Refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                errors.GoogleAdsFailure(
                    errors=[ads_error("authentication", "DEVELOPER_TOKEN_INVALID", "Bad token.")]
                ),
            )
        if request.customer_id != self.customer_id:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                errors.GoogleAdsFailure(
                    errors=[
                        ads_error(
                            "authorization",
                            "USER_PERMISSION_DENIED",
                            f"No access to customer {request.customer_id}.",
                        )
                    ]
                ),
            )

    def _name(self, kind: str, number: int) -> str:
        return f"customers/{self.customer_id}/{kind}/{number}"

    def _id_of(self, resource_name: str, kind: str) -> int:
        match = re.fullmatch(rf"customers/{self.customer_id}/{kind}/(\d+)", resource_name)
        return int(match.group(1)) if match else -1

    def _search(self, request):
        gas = services["google_ads_service"]
        query = request.query
        source = re.search(r"\bFROM\s+(\w+)", query).group(1)
        where = re.search(r"\.id\s+IN\s+\(([^)]*)\)", query)
        ids = {int(number) for number in re.findall(r"\d+", where.group(1))} if where else None
        rows = []
        if source == "campaign":
            for number, campaign in sorted(self.state.campaigns.items()):
                if ids is None or number in ids:
                    rows.append(self._campaign_row(number, campaign))
        elif source == "ad_group":
            for number, group in sorted(self.state.ad_groups.items()):
                if ids is None or number in ids:
                    rows.append(
                        gas.GoogleAdsRow(
                            ad_group=resources["ad_group"].AdGroup(
                                resource_name=self._name("adGroups", number),
                                id=number,
                                cpc_bid_micros=group.cpc_bid_micros,
                            )
                        )
                    )
        else:
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                errors.GoogleAdsFailure(
                    errors=[ads_error("request", "UNKNOWN", f"The fake has no {source}.")]
                ),
            )
        if "customer.currency_code" in query:  # an attributed resource, as Google Ads has it
            for row in rows:
                row.customer = resources["customer"].Customer(
                    resource_name=f"customers/{self.customer_id}", currency_code=self.currency
                )
        return gas.SearchGoogleAdsResponse(results=rows, query_resource_consumption=len(rows))

    def _campaign_row(self, number: int, campaign: Campaign):
        gas, types = services["google_ads_service"], resources["campaign"]
        resource = types.Campaign(
            resource_name=self._name("campaigns", number),
            id=number,
            status=enums["status"][campaign.status],
            bidding_strategy_type=enums["strategy"][campaign.strategy],
            campaign_budget=self._name("campaignBudgets", campaign.budget_id),
        )
        if campaign.strategy == "TARGET_CPA":
            resource.target_cpa.target_cpa_micros = campaign.target_cpa_micros
        if campaign.strategy == "TARGET_ROAS":
            resource.target_roas.target_roas = campaign.target_roas
        return gas.GoogleAdsRow(
            campaign=resource,
            campaign_budget=resources["campaign_budget"].CampaignBudget(
                resource_name=self._name("campaignBudgets", campaign.budget_id),
                amount_micros=self.state.budgets[campaign.budget_id],
            ),
        )

    def _mutate(self, request, response_type, result_type, check, apply):
        """Check every operation, then (unless validate_only) apply them: all or none, or
        each on its own with partial_failure."""
        failed: dict[int, object] = {}
        for index, operation in enumerate(request.operations):
            problem = check(operation, index)
            if problem is None and not request.validate_only and index in self._item_faults:
                problem = ads_error(
                    "policy_finding", "POLICY_FINDING", self._item_faults[index], index
                )
            if problem is not None:
                failed[index] = problem
        if not request.validate_only:
            self._item_faults = {}
        if failed and not request.partial_failure:
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                errors.GoogleAdsFailure(errors=list(failed.values())),
            )
        if request.validate_only and not failed:
            return response_type()
        results = []
        for index, operation in enumerate(request.operations):
            if index in failed or request.validate_only:
                results.append(result_type())
            else:
                results.append(result_type(resource_name=apply(operation)))
        response = response_type(results=results)
        if failed:
            failure = errors.GoogleAdsFailure(errors=list(failed.values()))
            detail = any_pb2.Any(
                type_url=f"type.googleapis.com/google.ads.googleads.{V}.errors.GoogleAdsFailure",
                value=errors.GoogleAdsFailure.serialize(failure),
            )
            response.partial_failure_error = status_pb2.Status(
                code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                message=f"Multiple errors in ‘operations’: {len(failed)} failed.",
                details=[detail],
            )
        return response

    def _missing(self, what: str, index: int):
        return ads_error("mutate", "RESOURCE_NOT_FOUND", f"No such {what}.", index)

    def _mutate_budgets(self, request):
        types = services["campaign_budget_service"]

        def check(operation, index):
            number = self._id_of(operation.update.resource_name, "campaignBudgets")
            if number not in self.state.budgets:
                return self._missing("campaign budget", index)
            if operation.update.amount_micros <= 0:
                return ads_error("range", "TOO_LOW", "A budget is more than zero.", index)
            return None

        def apply(operation):
            number = self._id_of(operation.update.resource_name, "campaignBudgets")
            self.state.budgets[number] = operation.update.amount_micros
            return operation.update.resource_name

        return self._mutate(
            request,
            types.MutateCampaignBudgetsResponse,
            types.MutateCampaignBudgetResult,
            check,
            apply,
        )

    def _mutate_ad_groups(self, request):
        types = services["ad_group_service"]

        def check(operation, index):
            if self._id_of(operation.update.resource_name, "adGroups") not in self.state.ad_groups:
                return self._missing("ad group", index)
            return None

        def apply(operation):
            number = self._id_of(operation.update.resource_name, "adGroups")
            self.state.ad_groups[number].cpc_bid_micros = operation.update.cpc_bid_micros
            return operation.update.resource_name

        return self._mutate(
            request, types.MutateAdGroupsResponse, types.MutateAdGroupResult, check, apply
        )

    def _mutate_campaigns(self, request):
        types = services["campaign_service"]

        def check(operation, index):
            if self._id_of(operation.update.resource_name, "campaigns") not in self.state.campaigns:
                return self._missing("campaign", index)
            return None

        def apply(operation):
            update = operation.update
            campaign = self.state.campaigns[self._id_of(update.resource_name, "campaigns")]
            for path in operation.update_mask.paths:
                if path == "status":
                    campaign.status = update.status.name
                    continue
                scheme = path.split(".")[0]
                campaign.strategy = SCHEMES[scheme]
                if scheme == "target_cpa":
                    campaign.target_cpa_micros = update.target_cpa.target_cpa_micros
                if scheme == "target_roas":
                    campaign.target_roas = update.target_roas.target_roas
            return update.resource_name

        return self._mutate(
            request, types.MutateCampaignsResponse, types.MutateCampaignResult, check, apply
        )

    def _mutate_ads(self, request):
        types = services["ad_group_ad_service"]

        def check(operation, index):
            create = operation.create
            if self._id_of(create.ad_group, "adGroups") not in self.state.ad_groups:
                return self._missing("ad group", index)
            ad = create.ad.responsive_search_ad
            if len(ad.headlines) < 3 or len(ad.descriptions) < 2:
                return ads_error(
                    "collection_size", "TOO_FEW", "An RSA needs 3 headlines, 2 descriptions.", index
                )
            for asset, limit in [(h, 30) for h in ad.headlines] + [
                (d, 90) for d in ad.descriptions
            ]:
                if len(asset.text) > limit:
                    return ads_error(
                        "string_length", "TOO_LONG", f"“{asset.text}” is over {limit}.", index
                    )
            return None

        def apply(operation):
            create = operation.create
            number = next(self._ids)
            ad_group = self._id_of(create.ad_group, "adGroups")
            self.state.ads[number] = {
                "ad_group": ad_group,
                "headlines": [h.text for h in create.ad.responsive_search_ad.headlines],
                "descriptions": [d.text for d in create.ad.responsive_search_ad.descriptions],
                "final_urls": list(create.ad.final_urls),
            }
            return f"customers/{self.customer_id}/adGroupAds/{ad_group}~{number}"

        return self._mutate(
            request, types.MutateAdGroupAdsResponse, types.MutateAdGroupAdResult, check, apply
        )
