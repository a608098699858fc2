"""Python client for the HITL marketing approvals agent API.

from hitl_client import Client

with Client() as hitl:  # HITL_BASE_URL and HITL_API_KEY from the environment
    proposal = hitl.propose("bid_adjustment", "demo", {"campaign": "brand-search",
                            "new_bid": "2.12"}, rationale="CPC below target", confidence=0.9)
    proposal = hitl.wait(proposal.id, timeout=600)
"""

from hitl_client._core import NO_RETRIES, RetryPolicy
from hitl_client.callbacks import verify_callback
from hitl_client.client import AsyncClient, AsyncFeedbackFeed, Client, FeedbackFeed
from hitl_client.errors import (
    AuthFailed,
    AuthThrottled,
    BadResponse,
    ConfigurationError,
    Conflict,
    ConnectionFailed,
    HitlError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ResponseTooLarge,
    ServerError,
    Unprocessable,
    ValidationFailed,
    WaitTimedOut,
)
from hitl_client.models import (
    FINAL_STATUSES,
    BatchItem,
    Campaign,
    Decision,
    DryRun,
    Execution,
    Feedback,
    FeedbackPage,
    Hold,
    Outcome,
    PolicyRef,
    Proposal,
    ProposalRequest,
    Retry,
    Status,
    Verdict,
    Withdrawal,
)

__version__ = "0.1.0"

__all__ = [
    "FINAL_STATUSES",
    "NO_RETRIES",
    "AsyncClient",
    "AsyncFeedbackFeed",
    "AuthFailed",
    "AuthThrottled",
    "BadResponse",
    "BatchItem",
    "Campaign",
    "Client",
    "ConfigurationError",
    "Conflict",
    "ConnectionFailed",
    "Decision",
    "DryRun",
    "Execution",
    "Feedback",
    "FeedbackFeed",
    "FeedbackPage",
    "HitlError",
    "Hold",
    "NotFound",
    "Outcome",
    "PayloadTooLarge",
    "PermissionDenied",
    "PolicyRef",
    "Proposal",
    "ProposalRequest",
    "RateLimited",
    "ResponseTooLarge",
    "Retry",
    "RetryPolicy",
    "ServerError",
    "Status",
    "Unprocessable",
    "ValidationFailed",
    "Verdict",
    "WaitTimedOut",
    "Withdrawal",
    "verify_callback",
]
