"""A callback event sent again by an operator kept its log and had its count of attempts put
back to 0, so the count no longer said how many of the log's attempts were made, which is how
a request under way and an attempt whose sender stopped are told (an event sent again under
way was not counted against its agent's limit; a sender that stopped went unnoticed). Its
count now never goes back, and its log notes each sending again, from which the attempts
allowed are counted. An event written before reads so too: its log's sendings again are
noted where they were (after each attempt given up on but an event's last given up on; or,
in a log written before those were marked, before the attempts its count held), with who sent
it and when as the console's log of acts recorded them, and its count is of all its attempts.
An attempt not sent (the agent no longer reached) becomes a note, as it is no attempt."""

from django.db import migrations, models

NOTE, SENT_AGAIN, NOT_SENT, GIVEN_UP = "note", "sent_again", "not_sent", "given_up"
INTERRUPTED = (
    "interrupted: its sender stopped before recording whether it went, so it may have; "
    "to be sent again"
)
UNRECORDED = "an operator (when and by whom was not recorded)"


def _is_attempt(entry) -> bool:
    return not (isinstance(entry, dict) and NOTE in entry)


def _sent_again(at, by) -> dict:
    note = {"result": f"sent again by {by or UNRECORDED}", NOTE: SENT_AGAIN}
    if at is not None:
        note["at"] = at.isoformat()
    if by:
        note["by"] = by
    return note


def mended(log: list, attempts: int, *, pending: bool, sendings: list) -> tuple[list, int]:
    """The log and count of attempts of an event written before: ``sendings`` are (time,
    username) of its sendings again, as the console's log of acts has them."""
    entries = [dict(entry) if isinstance(entry, dict) else entry for entry in log]
    if any(isinstance(entry, dict) and entry.get(NOTE) == SENT_AGAIN for entry in entries):
        return log, attempts  # written since
    for entry in entries:
        if isinstance(entry, dict) and str(entry.get("result", "")).startswith("not sent:"):
            entry[NOTE] = NOT_SENT
    # An operator sent it again after each attempt given up on but the last of one given up
    # on (pending, it was sent again after that one too)…
    cuts = [
        number + 1
        for number, entry in enumerate(entries)
        if isinstance(entry, dict) and GIVEN_UP in entry and (number + 1 < len(entries) or pending)
    ]
    # …and before the attempts its count held since, where more followed (a log written
    # before what was decided was kept, or a sending again after an attempt interrupted).
    since = [
        number
        for number in range(cuts[-1] if cuts else 0, len(entries))
        if _is_attempt(entries[number])
    ]
    if len(since) > attempts:
        cuts.append(since[len(since) - attempts - 1] + 1)
    recorded = sendings if len(sendings) == len(cuts) else [(None, "")] * len(cuts)
    notes = dict(zip(cuts, recorded, strict=True))
    log = []
    for number, entry in enumerate(entries):
        if number in notes:
            log.append(_sent_again(*notes[number]))
        log.append(entry)
    if len(entries) in notes:
        log.append(_sent_again(*notes[len(entries)]))
    if not cuts:
        return log, attempts
    last = max(
        number
        for number, entry in enumerate(log)
        if isinstance(entry, dict) and entry.get(NOTE) == SENT_AGAIN
    )
    before = sum(1 for entry in log[:last] if _is_attempt(entry))
    total = before + attempts
    missing = total - sum(1 for entry in log if _is_attempt(entry))
    if missing > 0 and not pending:
        # Attempts made since and lost to the log (their sender stopped, and the count
        # going back hid it); a pending event's sender logs them when it takes it.
        log[last + 1 : last + 1] = [{"result": INTERRUPTED}] * missing
    return log, total


def attempts_never_reset(apps, schema_editor):
    CallbackEvent = apps.get_model("feedback", "CallbackEvent")
    LogEntry = apps.get_model("admin", "LogEntry")
    ContentType = apps.get_model("contenttypes", "ContentType")
    content_type = ContentType.objects.filter(app_label="feedback", model="callbackevent").first()
    for event in CallbackEvent.objects.exclude(log=[]).iterator():
        sendings = []
        if content_type is not None:
            sendings = [
                (entry.action_time, entry.user.username if entry.user_id else "")
                for entry in LogEntry.objects.filter(
                    content_type=content_type,
                    object_id=str(event.pk),
                    change_message="Sent again",
                )
                .select_related("user")
                .order_by("action_time", "pk")
            ]
        log, attempts = mended(
            event.log, event.attempts, pending=event.status == "pending", sendings=sendings
        )
        if (log, attempts) != (event.log, event.attempts):
            event.log, event.attempts = log, attempts
            event.save(update_fields=["log", "attempts"])


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0016_callback_event_given_up"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterField(
            model_name="callbackevent",
            name="log",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="Each attempt (when, and result), and notes between them (sent "
                "again by an operator, not sent).",
            ),
        ),
        migrations.RunPython(attempts_never_reset, migrations.RunPython.noop),
    ]
