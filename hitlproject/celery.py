import os

from celery import Celery, bootsteps
from celery.beat import EmbeddedService
from celery.signals import task_postrun, task_prerun, worker_init
from click import Option
from django.db import close_old_connections

import hitlproject.broker  # noqa: F401  (registers the embedded default's broker)
from hitlproject.long_lived import keep_for_life
from hitlproject.pooled_sqlite3.base import writes_give_way

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hitlproject.settings")

app = Celery("hitlproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Tasks that wait on somebody else's endpoint run on queues of their own, beside the default
# queue (bin/worker gives each its own workers): a slow channel or callback endpoint never
# holds up an evaluation or a ledger execution, and a slow callback endpoint never holds up
# a channel's execution.
OUTBOUND_QUEUES = {
    "approvals.send_execution_request": "webhooks",
    "feedback.deliver_callback_event": "callbacks",
    # People's notifications wait on a mail server or Slack, as callbacks wait on agents'.
    "notifications.deliver_notifications": "callbacks",
    "notifications.deliver_notification": "callbacks",
    # Not outbound, but long: a verification of the audit chain walks every record (minutes
    # on a long chain), so it runs on a thread there rather than hold one of the processes
    # that evaluate and execute.
    "audit.verify_chain": "callbacks",
}


def outbound_queue(kind: str) -> str:
    """The name of an outbound queue, beside whatever the default queue is called."""
    return f"{app.conf.task_default_queue}.{kind}"


def route_task(name, args, kwargs, options, task=None, **kw):
    kind = OUTBOUND_QUEUES.get(name)
    return {"queue": outbound_queue(kind)} if kind else None


@task_prerun.connect
@task_postrun.connect
def close_unusable_or_old_connections(**kwargs) -> None:
    """Around each task, as around each web request: a database connection past its
    CONN_MAX_AGE, left broken, or (checked on its next use) gone bad is closed, and the next
    use opens another; a good one is kept for the next task (CELERY_DB_REUSE_MAX)."""
    close_old_connections()


class BeatThread(bootsteps.StartStopStep):
    """``celery worker --beat-thread``: the beat schedule in a thread of the worker, for the
    embedded default's one worker (bin/worker). Celery's own ``--beat`` forks a process for it,
    another copy of Django to hold, forked from a worker whose pool runs threads."""

    label = "Beat thread"
    conditional = True

    def __init__(self, worker, beat_thread: bool = False, **options) -> None:
        self.enabled = beat_thread
        super().__init__(worker, **options)

    def create(self, worker):
        return EmbeddedService(
            worker.app,
            thread=True,
            schedule_filename=worker.schedule_filename,
            scheduler_cls=worker.scheduler,
        )


app.user_options["worker"].add(
    Option(
        ["--beat-thread"],
        is_flag=True,
        default=False,
        help="Run the beat schedule in a thread of this worker.",
    )
)
app.steps["worker"].add(BeatThread)


@worker_init.connect
def web_server_writes_first(**_) -> None:
    """On SQLite, the worker's writers wait while the web server's do (an agent is waiting
    for its answer; a task can wait): hitlproject.pooled_sqlite3."""
    writes_give_way()


@worker_init.connect
def loaded_for_life(**_) -> None:
    """What the worker loaded to start (Django, every task) is kept out of the collector's
    rounds (hitlproject.long_lived); before a pool of processes is forked, so its children
    keep sharing it."""
    keep_for_life()
