"""The one-writer lock of a model folder (model/_lock.py) on a real
filesystem: taken by one, waited for by another, taken over when its holder
died, refused by name when waiting runs out, and given up by a holder that
finds it was taken over."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils.model._lock import LOCK, FolderLock, LockBusy, LockLost


def hold(folder: str, ready, release, heartbeat: float) -> None:
    with FolderLock(folder, heartbeat=heartbeat):
        ready.set()
        release.wait(30)


@pytest.fixture
def holder(tmp_path):
    """Another process holding tmp_path/m's lock until release is set."""
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=hold, args=(str(tmp_path / "m"), ready, release, 0.1))
    proc.start()
    assert ready.wait(30)
    yield proc, release
    release.set()
    proc.join(30)


def test_second_fetcher_waits_for_the_first_then_gets_the_lock(tmp_path, holder):
    proc, release = holder
    said = []
    threading.Timer(1.0, release.set).start()
    started = time.monotonic()
    with FolderLock(str(tmp_path / "m"), lock_timeout=30, stale_after=5, on_wait=said.append):
        waited = time.monotonic() - started
        owner = json.loads((tmp_path / "m" / LOCK).read_text())
        assert owner["pid"] == os.getpid()
    assert 0.9 < waited < 10
    assert said and f"pid {proc.pid}" in said[0] and str(tmp_path / "m") in said[0]
    assert not (tmp_path / "m" / LOCK).exists()


def test_live_holder_is_not_taken_over_and_the_wait_is_bounded(tmp_path, holder):
    """The holder beats every 0.1 s: it is alive though stale_after (0.5 s)
    passes twice over; after lock_timeout the waiter fails naming the
    folder and the holder."""
    proc, _release = holder
    with pytest.raises(LockBusy) as busy:
        FolderLock(str(tmp_path / "m"), lock_timeout=1.2, stale_after=0.5).acquire()
    msg = busy.value.msg
    assert str(tmp_path / "m") in msg and f"pid {proc.pid}" in msg and "lock_timeout" in msg
    assert json.loads((tmp_path / "m" / LOCK).read_text())["pid"] == proc.pid  # still the holder's


def test_lock_of_a_dead_holder_is_taken_over(tmp_path):
    """A holder killed without removing its lock (no heartbeat any more):
    after stale_after seconds without a change the lock is taken."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / LOCK).write_text(json.dumps({"id": "dead", "host": "pod-0", "pid": 1, "since": "then"}))
    (folder / f"{LOCK}.dead").write_text("its unique file, left when it was killed between link and unlink")
    started = time.monotonic()
    with FolderLock(str(folder), lock_timeout=10, stale_after=0.5):
        assert json.loads((folder / LOCK).read_text())["pid"] == os.getpid()
    assert 0.4 < time.monotonic() - started < 5
    assert sorted(os.listdir(folder)) == []  # nothing left: no aside copy, no unique temp file


def test_holder_that_was_taken_over_stops_writing(tmp_path):
    folder = tmp_path / "m"
    lock = FolderLock(str(folder), heartbeat=0.05)
    lock.acquire()
    try:
        (folder / LOCK).write_text(json.dumps({"id": "other", "host": "pod-1", "pid": 7, "since": "now"}))
        deadline = time.monotonic() + 5
        while not lock.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LockLost) as lost:
            lock.held()
        assert "pod-1" in lost.value.msg
    finally:
        lock.release()
    assert json.loads((folder / LOCK).read_text())["id"] == "other"  # the new holder's lock is left alone


def test_lock_timeout_zero_fails_at_once(tmp_path, holder):
    started = time.monotonic()
    with pytest.raises(LockBusy):
        FolderLock(str(tmp_path / "m"), lock_timeout=0).acquire()
    assert time.monotonic() - started < 2
