"""A burst of waiting proposals sends a delivery task only where none is on its way: one sent
and not started takes along the messages committed meanwhile, and a task that takes a whole
chunk goes on to the next and sends for the rest. Every message still goes, once; a send
that fails leaves no mark to hold the next writer back, and a mark left by a task lost on its
way holds writers back for seconds, after which the next writer's task takes along what is
due."""

import os
import time

import pytest

from hitlproject import on_its_way
from notifications import services
from notifications.models import Notification, NotificationStatus
from notifications.tasks import deliver_notifications
from tests.conftest import reallocation, wait_until, workers_idle

BACKENDS = ["file"] + (["redis"] if os.environ.get("REDIS_URL") else [])


@pytest.fixture(params=BACKENDS)
def backend(request, settings, tmp_path):
    if request.param == "file":
        settings.REDIS_URL = ""
        settings.DATA_DIR = tmp_path
    yield request.param
    on_its_way.started("test.mark")


def test_a_task_is_sent_once_until_it_starts_then_again(backend):
    assert on_its_way.send_now("test.mark", stale_after=10) is True
    assert on_its_way.send_now("test.mark", stale_after=10) is False  # it is on its way
    on_its_way.started("test.mark")
    assert on_its_way.send_now("test.mark", stale_after=10) is True


def test_a_mark_older_than_its_staleness_is_of_a_lost_task(backend):
    assert on_its_way.send_now("test.mark", stale_after=0.2) is True
    time.sleep(0.4)
    assert on_its_way.send_now("test.mark", stale_after=0.2) is True  # sent afresh
    assert on_its_way.send_now("test.mark", stale_after=0.2) is False


def test_two_platforms_sharing_a_data_directory_or_a_redis_keep_their_marks_apart(
    backend, settings
):
    from hitlproject.celery import app

    assert on_its_way.send_now("test.mark", stale_after=10) is True
    queue = app.conf.task_default_queue
    try:
        app.conf.task_default_queue = f"{queue}-other"
        assert on_its_way.send_now("test.mark", stale_after=10) is True
        on_its_way.started("test.mark")
    finally:
        app.conf.task_default_queue = queue


def test_a_delivery_task_that_could_not_be_sent_leaves_no_mark(monkeypatch):
    """The broker refused the send: the mark is forgotten, so the next writer sends."""
    on_its_way.started(services.DELIVERY_ON_ITS_WAY)

    def refused(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(services, "send_each", refused)
    with pytest.raises(OSError):
        services._deliver([1])
    assert on_its_way.send_now(services.DELIVERY_ON_ITS_WAY, stale_after=10) is True
    on_its_way.started(services.DELIVERY_ON_ITS_WAY)


def test_a_name_that_is_not_a_marks_is_refused():
    with pytest.raises(ValueError):
        on_its_way.send_now("../../etc/passwd", stale_after=1)


def submitted(optimizer, count: int) -> list[int]:
    ids = []
    for i in range(count):
        answer = optimizer.post("/api/v1/proposals/", reallocation(f"{150 + i}.00"), format="json")
        assert answer.status_code == 201, answer.content
        assert answer.json()["status"] == "pending_review"
        ids.append(answer.json()["id"])
    return ids


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_messages_committed_while_a_task_is_on_its_way_go_with_it_chunk_after_chunk(
    optimizer, mailbox, monkeypatch
):
    """45 submissions while a delivery task is on its way send none of their own; the task,
    once it starts, takes 20, goes on to the next 20 and the last 5, and sends a task for
    what may be left: every operator's message goes, once."""
    # However slow this is: in a full suite on a loaded machine the submissions sent mail of
    # their own, as they do once the mark is stale (a minute then).
    monkeypatch.setattr(services, "ON_ITS_WAY_STALE_SECONDS", 600)
    # A task an earlier test left would start meanwhile, take the messages and clear the mark
    # (as any delivery task does), and the submissions after it would then rightly send theirs.
    wait_until(lambda: workers_idle(services.DELIVER_NOTIFICATIONS), timeout=180, interval=0.5)
    on_its_way.started(services.DELIVERY_ON_ITS_WAY)
    assert on_its_way.send_now(services.DELIVERY_ON_ITS_WAY, stale_after=600)
    try:
        proposals = submitted(optimizer, 45)
    finally:
        on_its_way.started(services.DELIVERY_ON_ITS_WAY)  # nothing else waits on it

    time.sleep(1)
    assert not mailbox.to("operator@example.com")  # left to the task on its way
    assert Notification.objects.filter(status=NotificationStatus.PENDING).count() == 45

    deliver_notifications.delay([])  # the task on its way arrives

    wait_until(lambda: len(mailbox.to("operator@example.com")) >= 45, timeout=30)
    time.sleep(0.5)
    told = sorted(
        int(m["Subject"].split("#")[1].split()[0]) for m in mailbox.to("operator@example.com")
    )
    assert told == sorted(proposals)  # each once
    assert set(Notification.objects.values_list("status", "attempts")) == {
        (NotificationStatus.SENT, 1)
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_task_lost_on_its_way_holds_messages_back_only_until_its_mark_is_stale(
    optimizer, mailbox, monkeypatch
):
    monkeypatch.setattr(services, "ON_ITS_WAY_STALE_SECONDS", 1)
    on_its_way.started(services.DELIVERY_ON_ITS_WAY)
    assert on_its_way.send_now(services.DELIVERY_ON_ITS_WAY, stale_after=1)  # never sent
    time.sleep(1.2)

    [proposal] = submitted(optimizer, 1)

    [message] = wait_until(lambda: mailbox.to("operator@example.com"), timeout=15)
    assert f"#{proposal}" in message["Subject"]
