from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from approvals.api import (
    PolicyEvaluateApi,
    ProposalBatchApi,
    ProposalCollectionApi,
    ProposalDetailApi,
    ProposalWithdrawApi,
)
from audit.views import audit_chain, audit_export
from feedback.api import FeedbackListApi, ProposalOutcomeApi, ScorecardApi
from feedback.views import training_export
from hitlproject import error_pages
from ledger.api import CampaignListApi
from notifications.views import slack_interactivity

# Refused and failed requests: JSON for the API, the console's own pages for people.
handler400 = error_pages.bad_request
handler403 = error_pages.permission_denied
handler404 = error_pages.not_found
handler500 = error_pages.server_error


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


# The console's site (titles, login, second factor) is access.sites.ConsoleAdminSite.

public = {"authentication_classes": [], "permission_classes": [AllowAny]}

api_v1 = [
    path("proposals/", ProposalCollectionApi.as_view(), name="proposals"),
    path("proposals/batch/", ProposalBatchApi.as_view(), name="proposals-batch"),
    path("proposals/<int:proposal_id>/", ProposalDetailApi.as_view(), name="proposal-detail"),
    path(
        "proposals/<int:proposal_id>/withdraw/",
        ProposalWithdrawApi.as_view(),
        name="proposal-withdraw",
    ),
    path(
        "proposals/<int:proposal_id>/outcome/",
        ProposalOutcomeApi.as_view(),
        name="proposal-outcome",
    ),
    path("feedback/", FeedbackListApi.as_view(), name="feedback"),
    path("scorecard/", ScorecardApi.as_view(), name="scorecard"),
    path("policies/evaluate/", PolicyEvaluateApi.as_view(), name="policies-evaluate"),
    path("campaigns/", CampaignListApi.as_view(), name="campaigns"),
]

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/audit/export/", admin.site.admin_view(audit_export), name="audit-export"),
    path("admin/audit/chain/", admin.site.admin_view(audit_chain), name="audit-chain"),
    path(
        "admin/feedback/export/",
        admin.site.admin_view(training_export),
        name="feedback-export",
    ),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(**public), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", **public), name="docs"),
    path("api/v1/", include(api_v1)),
    path(
        "integrations/slack/interactivity/",
        slack_interactivity,
        name="slack-interactivity",
    ),
]
