from datetime import date, datetime, time, timedelta

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from audit.exports import as_csv, as_jsonl, audit_records


class AuditExportForm(forms.Form):
    since = forms.DateField(
        initial=lambda: timezone.localdate() - timedelta(days=30),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    until = forms.DateField(
        initial=lambda: timezone.localdate() + timedelta(days=1),
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The day after the last.",
    )
    format = forms.ChoiceField(choices=[("csv", "CSV"), ("jsonl", "JSON Lines")])

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("since") and cleaned.get("until") and cleaned["until"] <= cleaned["since"]:
            raise forms.ValidationError("The period must end after it starts.")
        return cleaned


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time()))


def audit_export(request: HttpRequest) -> HttpResponse:
    """Every change of a period, streamed, for anyone who may read proposals (auditors)."""
    if not request.user.has_perm("approvals.view_proposal"):
        raise PermissionDenied
    form = AuditExportForm(request.GET if "since" in request.GET else None)
    if not (form.is_bound and form.is_valid()):
        return TemplateResponse(
            request,
            "admin/audit/export.html",
            {**admin.site.each_context(request), "title": "Export the audit trail", "form": form},
        )
    since, until = form.cleaned_data["since"], form.cleaned_data["until"]
    records = audit_records(since=_midnight(since), until=_midnight(until))
    as_format = form.cleaned_data["format"]
    response = StreamingHttpResponse(
        as_csv(records) if as_format == "csv" else as_jsonl(records),
        content_type="text/csv" if as_format == "csv" else "application/x-ndjson",
    )
    response["Content-Disposition"] = f'attachment; filename="audit-{since}-{until}.{as_format}"'
    return response
