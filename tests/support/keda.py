"""A watch of a namespace's KEDA ScaledObjects and pods while a rollout
runs, and what a rollout must do with KEDA's pause annotation around it
(KEDA v2.21.0: plugins/module_utils/serving/_autoscaling.py cites where)."""

from __future__ import annotations

import queue
import threading

PAUSED = "autoscaling.keda.sh/paused"
MARK = "inferops.io/paused-for-rollout"
# What `hack/sandbox crds keda` installs (hack/sandboxctl/crds.py).
CRDS = ["scaledobjects.keda.sh", "triggerauthentications.keda.sh"]
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def installed_crds(kube) -> set[str]:
    return {c["metadata"]["name"] for c in kube.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")} \
        & set(CRDS)


def remove_crds_made_since(kube, there: set[str]) -> None:
    """Delete the KEDA CRDs a test file installed (not those it found), and
    wait until the API server no longer serves them: the sandbox as found."""
    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import wait_until

    made = installed_crds(kube) - there
    for name in made:
        kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name, missing_ok=True)
    wait_until(kube.api, CRD_PATH, lambda crds: not {c["metadata"]["name"] for c in crds} & made, 120)


def crds_put_back(kube):
    """A generator for a module fixture: KEDA's CRDs as the file found them
    (none on a fresh sandbox), and again after it."""
    there = installed_crds(kube)
    yield there
    remove_crds_made_since(kube, there)


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


class Recorder:
    """The namespace's ScaledObjects' annotations and pods' revisions, in
    the order a watch of each sees them change."""

    def __init__(self, kube, namespace: str, pod_selector: str):
        from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import Informer

        self.changes: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.objects = Informer(kube.api, f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects", [],
                                self.changes, self.stop)
        self.pods = Informer(kube.api, f"/api/v1/namespaces/{namespace}/pods", [("labelSelector", pod_selector)],
                             self.changes, self.stop)
        self.states: list[dict] = []
        self.thread = threading.Thread(target=self._record, daemon=True)

    def _record(self):
        while not self.stop.is_set():
            try:
                self.changes.get(timeout=0.1)
            except queue.Empty:
                continue
            self.states.append({
                "paused": {o["metadata"]["name"]: (o["metadata"].get("annotations") or {}).get(PAUSED)
                           for o in self.objects.snapshot()},
                "pods": {p["metadata"]["name"]: (p["metadata"]["labels"].get("controller-revision-hash"), ready(p),
                                                 bool(p["metadata"].get("deletionTimestamp")))
                         for p in self.pods.snapshot()}})

    def __enter__(self):
        for informer in (self.objects, self.pods):
            informer.start()
            informer.synced.wait(30)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.objects.close()
        self.pods.close()
        self.stop.set()
        self.thread.join(5)


def check_paused_around_the_rollout(states: list[dict], new_revision: str, name: str, untouched: list[str]):
    """Paused before the first pod was touched; resumed only once every pod
    runs the new revision and is Ready; the others never annotated."""
    assert states, "the watch saw nothing"
    seen_paused = False
    for state in states:
        assert all(state["paused"].get(other) is None for other in untouched), state
        touched = any(pod[0] == new_revision or pod[2] for pod in state["pods"].values())
        if state["paused"].get(name) == "true":
            seen_paused = True
        elif not seen_paused:
            assert not touched, f"a pod was touched before KEDA was paused: {state}"
        else:
            assert all(rev == new_revision and is_ready and not deleting
                       for rev, is_ready, deleting in state["pods"].values()), f"resumed mid-rollout: {state}"
    assert seen_paused, "KEDA was never paused"
    assert states[-1]["paused"].get(name) is None
