from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse

from approvals.models import Agent
from audit.exports import as_jsonl
from feedback.exports import training_records
from hitlproject.periods import PeriodForm


class TrainingExportForm(PeriodForm):
    agent = forms.ModelChoiceField(queryset=Agent.objects.all(), to_field_name="name")

    field_order = ["agent", "since", "until"]


def training_export(request: HttpRequest) -> HttpResponse:
    """An agent's decided proposals of a period as JSON Lines, streamed, for anyone who may
    read feedback."""
    if not request.user.has_perm("feedback.view_feedback"):
        raise PermissionDenied
    form = TrainingExportForm(
        request.GET if "since" in request.GET else None, initial={"agent": request.GET.get("agent")}
    )
    if not (form.is_bound and form.is_valid()):
        return TemplateResponse(
            request,
            "admin/feedback/export.html",
            {
                **admin.site.each_context(request),
                "title": "Export an agent's feedback for training",
                "form": form,
            },
        )
    agent = form.cleaned_data["agent"]
    since, until = form.bounds()
    response = StreamingHttpResponse(
        as_jsonl(training_records(agent=agent, since=since, until=until)),
        content_type="application/x-ndjson",
    )
    days = form.days_named()
    response["Content-Disposition"] = f'attachment; filename="feedback-{agent.name}-{days}.jsonl"'
    return response
