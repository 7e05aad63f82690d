# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One writer per model folder, on any filesystem a model folder lives on
(a local disk behind hostPath, NFS, CephFS and other ReadWriteMany claims).

flock()/fcntl() locks are not used: over NFSv3 they need the separate NLM
lock service (often absent, or advisory across clients), and some
ReadWriteMany drivers do not pass them on at all. The lock is a file made
the way open(2)'s manual gives for NFS: write a file of a unique name, then
link(2) it to the lock's name; link() is atomic on the server, and when its
answer is lost the unique file's link count (2) says it worked. Where the
filesystem has no hard links, O_CREAT|O_EXCL (atomic on NFSv3 and later,
and on local and cluster filesystems) does the same job.

The holder keeps the lock alive by touching it (a heartbeat) and checks at
each beat that the lock is still its own. A waiter decides that a lock is
stale only from what it sees change, measured on its own clock: when the
lock file's mtime and contents stay the same for ``stale_after`` seconds
(the holder died without removing it), it is moved aside and taken. No
two machines' clocks are compared, so clock skew between nodes does not
matter. Opening the file before each stat makes an NFS client revalidate
its cached attributes (close-to-open consistency)."""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import uuid

from ansible_collections.inferops.vllm.plugins.module_utils._errors import InferopsError

LOCK = ".inferops-fetch.lock"
LOCK_DEFAULTS = {
    "lock_timeout": 3600.0,  # seconds a second fetcher waits for the first
    "heartbeat": 5.0,  # seconds between the holder's touches of the lock file
    "stale_after": 60.0,  # seconds without a touch before a lock counts as abandoned
}


class LockBusy(InferopsError):
    """Another fetcher holds the folder's lock, and waiting for it ran out."""


class LockLost(InferopsError):
    """The lock was taken from this fetcher (it was thought dead): stop writing."""


def _owner() -> dict:
    # In a pod the host name is the pod's name: it says which replica holds the folder.
    return {"id": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _read(path: str) -> tuple[tuple | None, dict | None]:
    """(what identifies this lock file's state, its owner) or (None, None)
    when there is no lock file."""
    try:
        fd = os.open(path, os.O_RDONLY)  # open, then fstat: fresh attributes on NFS
    except FileNotFoundError:
        return None, None
    try:
        st = os.fstat(fd)
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        owner = json.loads(raw.decode())
    except ValueError:
        owner = None  # being written this moment, or garbage: its mtime still tells whether it lives
    return (st.st_ino, st.st_mtime_ns, st.st_size, raw), owner


def describe(owner: dict | None) -> str:
    if not owner:
        return "an unknown fetcher"
    return f"{owner.get('host')} (pid {owner.get('pid')}, since {owner.get('since')})"


class FolderLock:
    """with FolderLock(dest): ... holds dest's lock for the block.

    ``wait`` is called with the holder's description the first time the
    lock is found busy (the CLI prints it). ``sleep`` and ``clock`` are for
    tests."""

    def __init__(self, folder: str, lock_timeout: float = LOCK_DEFAULTS["lock_timeout"],
                 heartbeat: float = LOCK_DEFAULTS["heartbeat"], stale_after: float = LOCK_DEFAULTS["stale_after"],
                 on_wait=None, sleep=time.sleep, clock=time.monotonic):
        self.folder, self.path = folder, os.path.join(folder, LOCK)
        self.lock_timeout, self.heartbeat, self.stale_after = lock_timeout, heartbeat, stale_after
        self.on_wait, self.sleep, self.clock = on_wait, sleep, clock
        self.owner = _owner()
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = None

    # -- taking the lock ---------------------------------------------------
    def _try_create(self) -> bool:
        body = json.dumps(self.owner).encode()
        unique = f"{self.path}.{self.owner['id']}"
        with open(unique, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        try:
            try:
                os.link(unique, self.path)
                return True
            except FileExistsError:
                return False
            except OSError as exc:
                if os.stat(unique).st_nlink == 2:
                    return True  # the link was made; only its answer was lost (open(2), NFS)
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
                    raise
            # No hard links on this filesystem: an exclusive create instead.
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            try:
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            return True
        finally:
            os.unlink(unique)

    def _break(self, seen: tuple) -> None:
        """Move a stale lock aside, if it is still the one seen stale."""
        aside = f"{self.path}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        state, owner = _read(aside)
        if state is not None and state[0] != seen[0]:
            # A fresh lock was taken meanwhile: give it back if its place is still free.
            try:
                os.link(aside, self.path)
            except OSError:
                pass  # its holder sees at its next heartbeat that it lost the lock, and stops
        elif owner and str(owner.get("id", "")).isalnum():
            try:
                os.unlink(f"{self.path}.{owner['id']}")  # the dead holder's unique file, if it died before removing it
            except OSError:
                pass
        os.unlink(aside)

    def acquire(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        started = self.clock()
        seen, seen_at, told, delay = None, started, False, 0.05
        while True:
            if self._try_create():
                break
            state, owner = _read(self.path)
            now = self.clock()
            if state is None:
                continue  # released between our try and our look: try again at once
            if state != seen:
                seen, seen_at = state, now  # it moved (a heartbeat): alive
            elif now - seen_at >= self.stale_after:
                self._break(seen)
                seen = None
                continue
            if not told and self.on_wait:
                self.on_wait(f"waiting for {describe(owner)}, which holds {self.folder} (lock file {LOCK})")
                told = True
            if now - started >= self.lock_timeout:
                raise LockBusy(
                    f"{self.folder} is being fetched by {describe(owner)}: its lock {self.path} was still held "
                    f"after {self.lock_timeout:g} s (lock_timeout). Wait for that fetch to end and run again, or "
                    f"raise lock_timeout; a lock whose holder died is taken over after {self.stale_after:g} s "
                    "without a heartbeat", folder=self.folder, holder=owner)
            # Short backoff on the lock file (a filesystem, not an API): at most 1 s, well inside stale_after.
            self.sleep(delay)
            delay = min(delay * 2, 1.0, max(0.05, self.stale_after / 4))
        self._thread = threading.Thread(target=self._beat, name="inferops-fetch-lock", daemon=True)
        self._thread.start()

    # -- holding it --------------------------------------------------------
    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            self.check()
            if self.lost:
                return
            try:
                os.utime(self.path)
            except OSError as exc:
                self.lost = f"cannot touch the lock file {self.path}: {exc}"
                return

    def check(self) -> None:
        """Note (and report through ``held``) whether the lock is still ours."""
        if self.lost:
            return
        _state, owner = _read(self.path)
        if not owner or owner.get("id") != self.owner["id"]:
            self.lost = (f"the lock on {self.folder} was taken over by {describe(owner)} (this fetcher was "
                         f"thought dead: no heartbeat for {self.stale_after:g} s)")

    def held(self) -> None:
        """Raise LockLost when the lock is no longer ours: called before each write."""
        if self.lost:
            raise LockLost(f"stopped writing: {self.lost}", folder=self.folder)

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        _state, owner = _read(self.path)
        if owner and owner.get("id") == self.owner["id"]:
            os.unlink(self.path)

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
