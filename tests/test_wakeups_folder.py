"""The embedded default's wake-ups folder (hitlproject.wakeups.LocalWakeups): one bad entry
in it does not stop the wake-ups of the web processes listed after it, and a folder someone
else made or may enter is not used (waiting requests re-read every few seconds instead)."""

import os
import socket
import tempfile
from pathlib import Path

import pytest

from hitlproject import wakeups
from hitlproject.wakeups import LocalWakeups, wakeup_folder


def listener(path) -> socket.socket:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.setblocking(False)
    return receiver


def test_a_bad_entry_in_the_folder_does_not_stop_the_others_wakeups(tmp_path):
    first, last = listener(tmp_path / "a-listener.sock"), listener(tmp_path / "zz-listener.sock")
    (tmp_path / "aa.sock").mkdir()  # a folder named like a socket
    (tmp_path / "zzz.sock").mkdir()
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a socket of another kind
    stream.bind(str(tmp_path / "m-stream.sock"))
    stream.listen()

    LocalWakeups(tmp_path).send(["proposal:1"])  # and it does not raise

    assert first.recv(100) == b"proposal:1"
    assert last.recv(100) == b"proposal:1"
    assert (tmp_path / "aa.sock").is_dir()  # what is not ours to remove stays


@pytest.fixture
def data_dir(settings):
    """A data folder with a path short enough for the wake-ups folder to be in it."""
    with tempfile.TemporaryDirectory(prefix="hitl-") as folder:
        settings.DATA_DIR = folder
        yield Path(folder)


def test_the_folder_is_made_for_this_user_only(data_dir):
    folder = wakeup_folder()

    assert folder == data_dir / "wakeups"
    assert os.stat(folder).st_mode & 0o777 == 0o700


def test_a_folder_others_may_enter_is_not_used(data_dir, caplog):
    (data_dir / "wakeups").mkdir(mode=0o777)
    os.chmod(data_dir / "wakeups", 0o777)

    assert wakeup_folder() is None
    assert "may be entered by others" in caplog.text


@pytest.mark.skipif(os.getuid() != 0, reason="giving a folder to another user takes root")
def test_a_folder_another_user_made_is_not_used(data_dir, caplog):
    (data_dir / "wakeups").mkdir(mode=0o700)
    os.chown(data_dir / "wakeups", 65534, 65534)

    assert wakeup_folder() is None
    assert "not a folder of this user's" in caplog.text


def test_a_long_data_dir_gets_a_folder_named_for_this_user(settings, tmp_path):
    settings.DATA_DIR = str(tmp_path / ("long" * 20))

    folder = wakeup_folder()

    assert folder is not None
    assert folder.name.startswith(f"hitl-wakeups-{os.getuid()}-")
    assert os.stat(folder).st_mode & 0o777 == 0o700
    folder.rmdir()


def test_without_a_usable_folder_writes_still_succeed_and_waits_re_read(settings, tmp_path):
    settings.DATA_DIR = str(tmp_path)
    settings.REDIS_URL = ""
    (tmp_path / "wakeups").write_text("not a folder")
    wakeups.transport.cache_clear()
    try:
        transport = wakeups.transport()
        transport.send(["proposal:1"])
        assert transport.backstop
    finally:
        wakeups.transport.cache_clear()
