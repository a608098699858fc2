from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse

from audit.exports import as_csv, as_jsonl, audit_records, exported_kinds
from hitlproject.periods import PeriodForm


class AuditExportForm(PeriodForm):
    format = forms.ChoiceField(choices=[("csv", "CSV"), ("jsonl", "JSON Lines")])


def audit_export(request: HttpRequest) -> HttpResponse:
    """Every change of a period, streamed, for anyone who may read proposals (auditors)."""
    if not request.user.has_perm("approvals.view_proposal"):
        raise PermissionDenied
    form = AuditExportForm(request.GET if "since" in request.GET else None)
    if not (form.is_bound and form.is_valid()):
        return TemplateResponse(
            request,
            "admin/audit/export.html",
            {
                **admin.site.each_context(request),
                "title": "Export the audit trail",
                "form": form,
                "exported": exported_kinds(),
            },
        )
    since, until = form.bounds()
    records = audit_records(since=since, until=until)
    as_format = form.cleaned_data["format"]
    response = StreamingHttpResponse(
        as_csv(records) if as_format == "csv" else as_jsonl(records),
        content_type="text/csv" if as_format == "csv" else "application/x-ndjson",
    )
    days = f"{form.cleaned_data['since']}-{form.cleaned_data['until']}"
    response["Content-Disposition"] = f'attachment; filename="audit-{days}.{as_format}"'
    return response
