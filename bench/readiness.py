"""Benchmark: how soon a rollout's wait returns once the last pod is Ready,
``inferops.vllm.workload_wait`` against kubernetes.core's ``k8s`` with
``wait: true`` at its defaults, in the same run on the same sandbox.

A StatefulSet of 2 replicas (kwok reports its pods Ready) is rolled out
again and again: each rollout is an apply that changes a pod-template
annotation, so the controller replaces both pods, one after the other.
Rollouts alternate between the two tools (20 each; --quick: 3):
- ours, as our roles do it: a ``kubernetes.core.k8s`` apply (no wait), then
  an ``inferops.vllm.workload_wait`` task, which watches the StatefulSet and
  its pods through the API;
- the baseline: one ``kubernetes.core.k8s`` apply with ``wait: true`` and
  its default ``wait_sleep`` (5 s) and ``wait_timeout`` (120 s). kubernetes.core
  6.6.0 (its MANIFEST.json), plugins/module_utils/k8s/waiter.py: ``Waiter.wait``
  GETs the StatefulSet, then sleeps ``wait_sleep`` seconds between GETs
  (``clock()``), until ``statefulset_ready``: observedGeneration equals
  generation, updateRevision equals currentRevision, and updatedReplicas,
  readyReplicas and replicas all equal spec.replicas (RollingUpdate).

Latency = the waiting task's return (the ansible.posix.json callback's
``duration.end``: when the controller got the module's result; UTC) minus
the moment the last new pod became Ready. That moment is taken two ways:
- primary: the wall time a pod watch in a thread of this process first saw
  each new pod Ready (ms precision; slightly after the API server stored it);
- also: the pods' Ready condition lastTransitionTime, read after the run
  (whole seconds, truncated, so up to 1 s too early: latencies from it
  read up to 1 s long).
A wait that returns before the last pod is Ready is not a sample to drop:
it is counted in the row's note (for workload_wait it would be a bug).

Each pod becomes Ready 1 to 6 s after it is scheduled, drawn evenly (the
sandbox's ready-after annotations, docs/sandbox.md), as a server loading a
model does, only faster: the rollout is still going when either tool starts
waiting, and the last Ready falls anywhere in the baseline's 5 s poll, as
it would with real pods. With pods Ready at once (kwok's default) the
rollout would be over before workload_wait's task began, and ours would
measure a task's start, not the watch's reaction (the note counts such
rounds).
Asserts nothing about wall-clock time (these machines are noisy)."""

from __future__ import annotations

import queue
import sys
import threading
import time

from _common import Row, iso_time, median, p95, playbook, sandbox, write_playbook

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import Informer
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._wait import pod_ready

NAMESPACE = "bench-readiness"
NAME = "ready-bench"  # not vllm-*: kwok port-forwards those to the vLLM stand-in
REPLICAS = 2
ROUND_ANNOTATION = "bench.inferops.io/round"
# Pods Ready 1 to 6 s after scheduling (hack/sandboxctl/kwok.py, ready_after).
READY_AFTER, READY_WITHIN = "sandbox.inferops.io/ready-after", "sandbox.inferops.io/ready-within"
STS_PATH = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets"
PODS_PATH = f"/api/v1/namespaces/{NAMESPACE}/pods"

OURS = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: apply
      kubernetes.core.k8s:
        apply: true
        definition: "{{ bench_statefulset }}"
    - name: wait
      inferops.vllm.workload_wait:
        kind: StatefulSet
        name: %s
        namespace: %s
        timeout: 300
""" % (NAME, NAMESPACE)

BASELINE = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: wait
      kubernetes.core.k8s:
        apply: true
        definition: "{{ bench_statefulset }}"
        wait: true
"""


def statefulset(round_: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "replicas": REPLICAS,
            "serviceName": NAME,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME},
                             "annotations": {ROUND_ANNOTATION: round_, READY_AFTER: "1s", READY_WITHIN: "6s"}},
                "spec": {
                    # The sandbox's nodes are all kwok's and carry no taints;
                    # the selector says where the pods go. The image is never
                    # pulled (kwok simulates the container) and is none of the
                    # job runner's, so kwok's pod-ready stage takes the pods.
                    "nodeSelector": {"type": "kwok"},
                    "containers": [{"name": "app", "image": "readiness-bench:1"}],
                },
            },
        },
    }


def rolled_out(sts: dict) -> bool:
    status, spec = sts.get("status") or {}, sts["spec"]
    return (status.get("observedGeneration") == sts["metadata"].get("generation")
            and status.get("updateRevision") == status.get("currentRevision")
            and all(status.get(k) == spec["replicas"] for k in ("replicas", "readyReplicas", "updatedReplicas")))


class ReadyWatch(Informer):
    """The pods of the namespace, watched for the whole benchmark: the wall
    time this process first saw each pod (by uid) Ready."""

    def __init__(self, api, stop: threading.Event):
        super().__init__(api, PODS_PATH, [], queue.Queue(), stop, key="uid")
        self.ready_at: dict[str, float] = {}
        self.seen = threading.Condition()

    def _saw(self, pods: list[dict], at: float) -> None:
        with self.seen:
            for pod in pods:
                if pod_ready(pod):
                    self.ready_at.setdefault(pod["metadata"]["uid"], at)
            self.seen.notify_all()

    def _list(self) -> str:
        # A (re)list's time is later than the pods' becoming Ready: counted
        # in the note (relists), as it would shorten that round's latency.
        version = super()._list()
        self._saw(self.snapshot(), time.time())
        return version

    def _handle(self, event: dict, version: str) -> str:
        at = time.time()  # before parsing the rest: the moment the event arrived
        if event.get("type") in ("ADDED", "MODIFIED"):
            self._saw([event.get("object") or {}], at)
        return super()._handle(event, version)

    def times(self, uids: list[str], timeout: float = 60) -> list[float]:
        with self.seen:
            if not self.seen.wait_for(lambda: all(u in self.ready_at for u in uids) or self.error, timeout):
                raise RuntimeError(f"the pod watch never saw pods {uids} Ready")
            if self.error:
                raise self.error
            return [self.ready_at[u] for u in uids]


def one_rollout(box, kube, watch: ReadyWatch, book, round_: str, old_uids: set[str]) -> dict:
    result = playbook(book, box, extra_vars={"bench_statefulset": statefulset(round_)})[1]
    tasks = {t["task"]["name"]: t["task"]["duration"] for t in result.tasks()}
    returned = iso_time(tasks["wait"]["end"])
    started = iso_time(tasks["apply" if "apply" in tasks else "wait"]["start"])
    # Should a wait have returned early, the rollout is still going: watch
    # it to its end before reading the pods, so the early return shows as a
    # negative latency rather than as a wrong pod list.
    kube.wait_for(STS_PATH, rolled_out, timeout=300, query=[("fieldSelector", f"metadata.name={NAME}")])
    pods = kube.list(PODS_PATH, label_selector=f"app={NAME}")
    uids = [p["metadata"]["uid"] for p in pods]
    if len(pods) != REPLICAS or set(uids) & old_uids \
            or any(p["metadata"]["annotations"].get(ROUND_ANNOTATION) != round_ for p in pods):
        raise RuntimeError(f"round {round_}: the rollout did not replace every pod: "
                           f"{[(p['metadata']['name'], p['metadata']['uid']) for p in pods]}")
    conditions = [iso_time(c["lastTransitionTime"]) for p in pods for c in p["status"]["conditions"]
                  if c["type"] == "Ready" and c["status"] == "True"]
    last_seen = max(watch.times(uids))
    return {"uids": set(uids), "watch_s": returned - last_seen, "condition_s": returned - max(conditions),
            "rollout_s": last_seen - started,
            # > 0: the rollout was over before the waiting task began (ours:
            # then it measures a task's start, not the watch's reaction).
            "done_before_wait_s": iso_time(tasks["wait"]["start"]) - last_seen}


def run(quick: bool) -> list[Row]:
    rounds = 3 if quick else 20
    books = {"ours": write_playbook(OURS), "baseline": write_playbook(BASELINE)}
    found = {tool: {"watch_s": [], "condition_s": [], "rollout_s": [], "done_before_wait_s": []} for tool in books}
    early: dict[str, list[str]] = {tool: [] for tool in books}
    with sandbox("readiness", gpu_nodes=1, cpu_nodes=1) as box:
        kube = box.kube()
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        kube.create(statefulset("initial"))
        kube.wait_for(STS_PATH, rolled_out, timeout=300, query=[("fieldSelector", f"metadata.name={NAME}")])
        old_uids = {p["metadata"]["uid"] for p in kube.list(PODS_PATH, label_selector=f"app={NAME}")}
        stop = threading.Event()
        watch = ReadyWatch(kube.api, stop)
        watch.start()
        try:
            for i in range(2 * rounds):
                tool = ("ours", "baseline")[i % 2]  # alternate, so drift in load hits both alike
                got = one_rollout(box, kube, watch, books[tool], str(i), old_uids)
                old_uids = got.pop("uids")
                for key, value in got.items():
                    found[tool][key].append(round(value, 3))
                if got["watch_s"] < 0 or got["condition_s"] < 0:
                    early[tool].append(f"round {i}: watch {got['watch_s']:+.3f} s, "
                                       f"condition {got['condition_s']:+.3f} s")
                    print(f"readiness: {tool}'s wait returned before the last pod was Ready: {early[tool][-1]}",
                          file=sys.stderr, flush=True)
            # Read before close(): closing the stream counts as one reconnect.
            relists = watch.relists + watch.reconnects
        finally:
            watch.close()
            for path in books.values():
                path.unlink()

    ours, base = found["ours"]["watch_s"], found["baseline"]["watch_s"]
    note = "from the last pod Ready as a pod watch saw it (ms) to the wait's return; condition-time numbers in samples"
    before = sum(s > 0 for s in found["ours"]["done_before_wait_s"])
    if before:
        note += f"; rollout over before workload_wait's task began in {before}/{rounds}"
    for tool, label in (("ours", "workload_wait"), ("baseline", "k8s wait")):
        if early[tool]:
            note += f"; {label} RETURNED BEFORE THE LAST POD WAS READY {len(early[tool])}x ({'; '.join(early[tool])})"
    if relists:
        note += f"; the pod watch re-listed or reconnected {relists}x (a round's time may read short)"
    samples = {f"{tool}_{key}": values for tool in found for key, values in found[tool].items()}
    labels = {"ours_label": "workload_wait", "baseline_label": "k8s wait: true (wait_sleep 5)"}
    return [
        Row("readiness", f"median over {rounds} rollouts", "s", median(ours), median(base), note=note,
            samples=samples, **labels),
        Row("readiness", f"p95 over {rounds} rollouts", "s", p95(ours), p95(base), note=note,
            samples={"condition_median_s": {t: median(found[t]["condition_s"]) for t in found},
                     "condition_p95_s": {t: p95(found[t]["condition_s"]) for t in found}}, **labels),
    ]
