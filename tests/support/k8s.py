"""Small Kubernetes helpers for tests: wait by watching, never by sleeping."""

from __future__ import annotations

import time

from kubernetes import watch
from kubernetes.client.rest import ApiException


def wait_for(list_fn, predicate, timeout: float, *args, **kwargs):
    """Watch the objects list_fn lists until predicate(obj) holds for one of
    them; return that object. Re-lists when the watch expires."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        listing = list_fn(*args, **kwargs)
        for obj in listing.items:
            last = obj
            if predicate(obj):
                return obj
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"condition not met within {timeout}s; last object seen: {last and last.metadata.name}")
        w = watch.Watch()
        try:
            for event in w.stream(
                list_fn, *args, resource_version=listing.metadata.resource_version,
                timeout_seconds=max(1, int(remaining)), **kwargs,
            ):
                obj = event["object"]
                last = obj
                if event["type"] != "DELETED" and predicate(obj):
                    w.stop()
                    return obj
        except ApiException as exc:
            if exc.status != 410:
                raise
