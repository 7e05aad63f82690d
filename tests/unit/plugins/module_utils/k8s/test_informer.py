from __future__ import annotations

import queue
import threading

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import Gone, Informer


def informer() -> Informer:
    return Informer(api=None, path="/api/v1/pods", query=[], changes=queue.Queue(), stop=threading.Event())


def test_events_update_the_cache_and_version():
    inf = informer()
    version = inf._handle({"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "5"}}}, "1")
    assert version == "5" and [o["metadata"]["name"] for o in inf.snapshot()] == ["a"]
    version = inf._handle({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}, version)
    assert version == "9" and len(inf.snapshot()) == 1
    inf._handle({"type": "DELETED", "object": {"metadata": {"name": "a", "resourceVersion": "10"}}}, version)
    assert inf.snapshot() == []


def test_expired_version_means_list_again():
    with pytest.raises(Gone):
        informer()._handle({"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}, "1")


def test_other_watch_errors_are_reported():
    with pytest.raises(ClusterError, match="forbidden"):
        informer()._handle({"type": "ERROR", "object": {"code": 403, "message": "forbidden"}}, "1")
