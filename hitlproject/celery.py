import os

from celery import Celery

import hitlproject.broker  # noqa: F401  (registers the embedded default's broker)

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
}


def outbound_queue(kind: str) -> str:
    """The name of an outbound queue, beside whatever the default queue is called."""
    return f"{app.conf.task_default_queue}.{kind}"


def route_task(name, args, kwargs, options, task=None, **kw):
    kind = OUTBOUND_QUEUES.get(name)
    return {"queue": outbound_queue(kind)} if kind else None
