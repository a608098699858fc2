import re
from collections.abc import Iterable

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from audit.chain import (
    GENESIS,
    VERIFICATION_LOST_AFTER,
    chain_breaks_marked,
    chain_verification_ask,
    found_in_all,
    outside_the_chain,
    records_found_broken,
)
from audit.exports import as_csv, as_jsonl, audit_records, exported_kinds, exported_models
from audit.models import ChainSealing, ChainVerification
from hitlproject.celery import app
from hitlproject.formats import console_time
from hitlproject.periods import PeriodForm
from hitlproject.queueing import after_commit
from hitlproject.vocabulary import READ_PERMISSION

# The task that runs a verification (``audit.tasks``), sent by its name.
VERIFY_CHAIN = "audit.verify_chain"
VERIFICATIONS_SHOWN = 10
BREAKS_LISTED = 10  # of a verification's, each linked to the page it is marked on
HEAD_HASH = re.compile(r"[0-9a-f]{64}")


class AuditExportForm(PeriodForm):
    format = forms.ChoiceField(choices=[("csv", "CSV"), ("jsonl", "JSON Lines")])


def found_said(
    verification: ChainVerification | None, models: Iterable[type[Model]]
) -> tuple[str, int, int]:
    """What a verification that found the chain broken found, as its page names it: the
    records not as they were sealed apart from the live rows not as their history last
    recorded them (whose records may be as they were sealed); how many in all; and how many
    of them are of other models than ``models`` (``exported_models``: not in the reader's
    export)."""
    if verification is None:
        return "", 0, 0
    marked = verification.breaks.values_list("table", "history_id", "object_id", "live")
    records = {(table, history_id) for table, history_id, _, live in marked if not live}
    rows = {(table, object_id) for table, _, object_id, live in marked if live}
    exported = {model.history.model._meta.label_lower for model in models}
    elsewhere = sum(1 for table, _ in records | rows if table not in exported)
    return found_in_all(len(records), len(rows)), len(records) + len(rows), elsewhere


def audit_export(request: HttpRequest) -> HttpResponse:
    """Every change of a period, streamed, for anyone who may read proposals (auditors), of
    what they may read (``exported_models``: an operator exports no person's record)."""
    if not request.user.has_perm(READ_PERMISSION):
        raise PermissionDenied
    models = exported_models(request.user)
    form = AuditExportForm(request.GET if "since" in request.GET else None)
    broken_by, found = records_found_broken()
    found_broken, found_count, found_elsewhere = found_said(broken_by, models)
    if not (form.is_bound and form.is_valid()):
        return TemplateResponse(
            request,
            "admin/audit/export.html",
            {
                **admin.site.each_context(request),
                "title": "Export the audit trail",
                "form": form,
                "exported": exported_kinds(models),
                "broken_by": broken_by,
                "broken_by_at": broken_by and console_time(broken_by.finished_at),
                "found_broken": found_broken,
                "found_count": found_count,
                "found_elsewhere": found_elsewhere,
            },
        )
    since, until = form.bounds()
    records = audit_records(since=since, until=until, found=found, models=models)
    as_format = form.cleaned_data["format"]
    response = StreamingHttpResponse(
        as_csv(records) if as_format == "csv" else as_jsonl(records),
        # Named: a reader takes text of no named charset as ISO-8859-1 (HTTP's default for
        # text/*), and "Approved → Executing" read as "Approved â\x86\x92 Executing".
        content_type="text/csv; charset=utf-8" if as_format == "csv" else "application/x-ndjson",
    )
    days = form.days_named()
    response["Content-Disposition"] = f'attachment; filename="audit-{days}.{as_format}"'
    return response


class ChainVerificationForm(forms.Form):
    through = forms.CharField(
        required=False,
        label="Head hash kept elsewhere",
        help_text="Optional: a head hash an earlier verification gave, kept outside the "
        "platform (a ticket, a mail). The chain must still pass through it: without one, a "
        "chain whose tail was cut and sealed again would look whole.",
    )

    def clean_through(self) -> str:
        # As pasted from a mail or a ticket: spaces and line breaks around or within it.
        through = "".join(self.cleaned_data["through"].split()).lower()
        if through and not HEAD_HASH.fullmatch(through):
            raise forms.ValidationError(
                "A head hash is 64 hexadecimal characters, as a verification gives it."
            )
        if through == GENESIS:
            raise forms.ValidationError(
                "That is where every chain starts, so every chain passes through it: give a "
                "head hash a verification gave."
            )
        return through


def audit_chain(request: HttpRequest) -> HttpResponse:
    """The audit chain's verifications, for anyone who may read proposals (auditors): each
    asked for here, by whom, and what it found; and a new one, run by a worker."""
    if not request.user.has_perm(READ_PERMISSION):
        raise PermissionDenied
    form = ChainVerificationForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        verification = chain_verification_ask(
            user=request.user, through=form.cleaned_data["through"]
        )
        if verification is None:
            messages.warning(
                request, "A verification is under way: its result is below once it is done."
            )
        else:
            after_commit(app.send_task, VERIFY_CHAIN, (verification.pk,))
            messages.info(request, "Verification asked for: its result is below once it is done.")
        return HttpResponseRedirect(reverse("audit-chain"))
    lost_before = timezone.now() - VERIFICATION_LOST_AFTER
    verifications = list(
        ChainVerification.objects.select_related("requested_by")[:VERIFICATIONS_SHOWN]
    )
    for verification in verifications:
        verification.marked, verification.marked_more = [], 0
        if verification.holds is False:
            marked, verification.marked_more = chain_breaks_marked(
                verification=verification, limit=BREAKS_LISTED
            )
            verification.marked = [(page, history_url(page)) for page in marked]
    return TemplateResponse(
        request,
        "admin/audit/chain.html",
        {
            **admin.site.each_context(request),
            "title": "Verify the audit chain",
            "form": form,
            "under_way": ChainVerification.objects.filter(
                under_way=True, requested_at__gte=lost_before
            ).first(),
            "lost_before": lost_before,
            "verifications": verifications,
            "last_sealed": ChainSealing.objects.filter(pk=1).first(),
            "outside_the_chain": outside_the_chain(),
        },
    )


def history_url(page) -> str | None:
    """The history page a break is marked on, if it has one in the console."""
    if page.model is None:
        return None
    opts = page.model.instance_type._meta
    try:
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[page.object_id])
    except NoReverseMatch:
        return None
