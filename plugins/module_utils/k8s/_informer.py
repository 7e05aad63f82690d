# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""List-then-watch of one collection of objects, in a thread, feeding a
queue: re-lists when the watch's resourceVersion has expired (410 Gone) and
reconnects when the connection drops. Objects are plain dicts."""

from __future__ import annotations

import json
import queue
import threading

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import raw_request, request_json

WATCH_SECONDS = 240  # the server ends each watch by then; we re-watch from the last version


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


class Informer(threading.Thread):
    """Keeps ``objects`` (name -> object) current and puts a token in
    ``changes`` whenever it changes. ``error`` holds a fatal error."""

    def __init__(self, api, path: str, query: list[tuple[str, str]], changes: queue.Queue, stop: threading.Event,
                 request_timeout: float = 30.0, key: str = "name"):
        super().__init__(daemon=True)
        # What objects are keyed by: "name" within one namespace, "uid" across namespaces.
        self.key = key
        self.api, self.path, self.query = api, path, list(query)
        self.changes, self.stop = changes, stop
        self.request_timeout = request_timeout
        self.objects: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.error: Exception | None = None
        self._stream = None  # the open watch response, closed by close()
        self.relists = 0
        self.reconnects = 0

    def close(self) -> None:
        """Stop, and end the open watch now rather than at its next event or
        timeout (an API server waits for open watches when it shuts down)."""
        self.stop.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.shutdown()  # urllib3 >= 2.3: unblocks a read in progress
            except Exception:  # noqa: BLE001 - older urllib3, or already closed
                pass
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - already closed
                pass

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.objects.values())

    def run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                version = self._list()
                failures = 0
                while not self.stop.is_set():
                    version = self._watch(version)
            except Gone:
                self.relists += 1
            except ClusterError as exc:
                if exc.details.get("status") in (401, 403, 404):
                    self.error = exc
                    self.changes.put(self)
                    return
                failures += 1
                self.reconnects += 1
                # Back off before reconnecting; the stop event ends it early.
                if self.stop.wait(min(0.2 * 2 ** failures, 5.0)):
                    return
            except Exception:  # noqa: BLE001 - connection dropped mid-stream
                failures += 1
                self.reconnects += 1
                if self.stop.wait(min(0.2 * 2 ** failures, 5.0)):
                    return

    def _list(self) -> str:
        listing = request_json(self.api, "GET", self.path, query=self.query, timeout=self.request_timeout,
                               action=f"listing {self.path}")
        with self.lock:
            self.objects = {o["metadata"][self.key]: o for o in listing.get("items", [])}
        self.synced.set()
        self.changes.put(self)
        return listing["metadata"]["resourceVersion"]

    def _watch(self, version: str) -> str:
        query = self.query + [("watch", "true"), ("resourceVersion", version), ("allowWatchBookmarks", "true"),
                              ("timeoutSeconds", str(WATCH_SECONDS))]
        try:
            # One try: on a dropped connection run() reconnects with backoff.
            resp = raw_request(self.api, "GET", self.path, query, timeout=(self.request_timeout, WATCH_SECONDS + 30),
                               retries=0)
        except Exception as exc:
            if getattr(exc, "status", None) == 410:
                raise Gone() from exc
            raise
        buffer = b""
        self._stream = resp
        try:
            for chunk in resp.stream(65536, decode_content=True):
                if self.stop.is_set():
                    return version
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        version = self._handle(json.loads(line), version)
        finally:
            self._stream = None
            resp.release_conn()
        return version

    def _handle(self, event: dict, version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise ClusterError(f"watch of {self.path} failed: {obj.get('message')}", status=obj.get("code"))
        new_version = (obj.get("metadata") or {}).get("resourceVersion") or version
        if kind == "BOOKMARK":
            return new_version
        name = obj["metadata"][self.key]
        with self.lock:
            if kind == "DELETED":
                self.objects.pop(name, None)
            else:
                self.objects[name] = obj
        self.changes.put(self)
        return new_version


def wait_until(api, path: str, done, timeout: float, query: list[tuple[str, str]] | None = None,
               request_timeout: float = 30.0) -> list[dict]:
    """Watch one collection until ``done(objects)`` is true; return the
    objects then. Raises TimeoutError (with what was last seen) when the
    timeout passes first, or the watch's fatal error."""
    import time

    changes: queue.Queue = queue.Queue()
    stop = threading.Event()
    informer = Informer(api, path, query or [], changes, stop, request_timeout)
    informer.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{path}: condition not met after {timeout:.0f}s "
                                   f"({len(informer.snapshot())} objects seen)")
            try:
                changes.get(timeout=remaining)
            except queue.Empty:
                continue
            if informer.error:
                raise informer.error
            if informer.synced.is_set():
                objects = informer.snapshot()
                if done(objects):
                    return objects
    finally:
        informer.close()
