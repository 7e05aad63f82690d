"""Every state of a namespace's vLLM pods while a playbook runs, from a
watch (the collection's informer): what a rollout did, pod by pod."""

from __future__ import annotations

import queue
import threading


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


class PodRecorder:
    """Every state of the namespace's vLLM pods while a playbook runs, from
    a watch (the collection's informer)."""

    def __init__(self, kube, namespace: str):
        from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import Informer

        self.changes: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.informer = Informer(kube.api, f"/api/v1/namespaces/{namespace}/pods",
                                 [("labelSelector", "app.kubernetes.io/instance=vllm")], self.changes, self.stop)
        self.states: list[dict[str, dict]] = []
        self.thread = threading.Thread(target=self._record, daemon=True)

    def _record(self):
        while not self.stop.is_set():
            try:
                self.changes.get(timeout=0.2)
            except queue.Empty:
                continue
            self.observe(self.informer.snapshot())

    def observe(self, pods: list[dict]) -> None:
        """One change seen: the pods as the watch has them now."""
        self.states.append({p["metadata"]["name"]: {
            "uid": p["metadata"]["uid"], "ready": ready(p),
            "revision": p["metadata"]["labels"].get("controller-revision-hash"),
            "deleting": bool(p["metadata"].get("deletionTimestamp"))} for p in pods})

    def __enter__(self):
        self.informer.start()
        self.informer.synced.wait(30)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.informer.close()
        self.stop.set()
        self.thread.join(5)
