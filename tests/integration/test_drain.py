"""Rollouts that drop no request (issue 25), on the sandbox: a long streamed
chat completion, asked through the Service as a client would, of the very
pod that a scale-down (playbooks/scale.yml) or a gated upgrade
(playbooks/upgrade.yml, its rolling_upgrade lowering the partition pod by
pod) stops, gets every token and [DONE] when the role's drain is on
(vllm_serve_drain_timeout_seconds: vLLM's --shutdown-timeout, a grace period
that covers it), and is cut (finish_reason "abort") when the drain is 0.

The sandbox's stand-in plays vLLM 0.20.0 as it was recorded on SIGTERM
(tests/data/real-vllm/sigterm-0.20.0-h200.json; test_standin_contract.py
holds it to that) and stops each pod as the kubelet does: preStop, then
SIGTERM, then SIGKILL at the end of the grace period, then the pod is
deleted (hack/openai_standin.py Kubelet, hack/sandboxctl/termination.py).

One deployment of three replicas with a 30 s drain, then three playbook
runs, each changing only what it tests: a scale-down to 2 (the pod it stops
has the drain), an upgrade that turns the drain off (the pods it stops
still have it), a scale-down to 1 (the pod it stops has none)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import tempfile
import threading
import time

import pytest

from support.ansible import ANSIBLE_PLAYBOOK, ROOT, record_timing, sandbox_playbook
from support.pods import PodRecorder

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The stand-in's record is of vLLM 0.20.0: the pods run it.
VERSION = "0.20.0"
PRESTOP_S = 2  # the sandbox inventory's vllm_serve_prestop_drain_seconds
DRAIN_S = 30
# A slow model (the stand-in reads the pod's label): 300 tokens, 50 ms apart,
# a stream of 15 s, long enough to be in flight when its pod is stopped.
TOKEN_DELAY_MS, TOKENS = 50, 300
LABELS = {"sandbox.inferops.io/token-delay-ms": str(TOKEN_DELAY_MS)}
ROLL_TASK = "inferops.vllm.vllm_serve : Lower the partition pod by pod, each gated by readiness and an endpoint check of that pod"


def extra_vars(namespace: str, drain: int, replicas: int) -> dict:
    return {"model_store_namespace": namespace, "vllm_serve_namespace": namespace,  # as sandbox_playbook gives them
            "vllm_serve_replicas": replicas, "vllm_serve_wait_timeout": 120, "vllm_serve_version": VERSION,
            "vllm_serve_node_selector": {"nvidia.com/gpu.present": "true"}, "vllm_serve_pod_labels": LABELS,
            "vllm_serve_drain_timeout_seconds": drain}


def playbook(sandbox, name: str, namespace: str, drain: int, replicas: int):
    # The model and serving stages only (test_upgrade.py says why).
    return sandbox_playbook(sandbox, name, namespace, ["--tags", "model,serve"] if name == "site.yml" else None,
                            **extra_vars(namespace, drain, replicas))


def scale_with_output(sandbox, namespace: str, drain: int, replicas: int, on_line) -> tuple[int, str]:
    """playbooks/scale.yml with Ansible's default output, each line handed
    to on_line as it is printed."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(extra_vars(namespace, drain, replicas), f)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "PYTHONUNBUFFERED": "1",
           "SANDBOX_DIR": str(sandbox.state_dir)}
    env.pop("ANSIBLE_STDOUT_CALLBACK", None)
    started, lines = time.time(), []
    try:
        proc = subprocess.Popen([str(ANSIBLE_PLAYBOOK), str(ROOT / "playbooks" / "scale.yml"), "-i",
                                 str(ROOT / "inventories" / "sandbox"), "-e", f"@{f.name}"], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            for line in proc.stdout:
                lines.append(line)
                on_line(line)
            rc = proc.wait(600)
        except BaseException:
            proc.kill()  # on_line failed: the run is of no use
            proc.wait()
            raise
    finally:
        os.unlink(f.name)
    record_timing("scale.yml", started, time.time(), None)
    return rc, "".join(lines)


class Pods(PodRecorder):
    """When each pod of the namespace was seen being deleted and gone, from
    a watch (the collection's informer, support/pods.py's recorder)."""

    def __init__(self, kube, namespace: str):
        super().__init__(kube, namespace)
        self.deleting: dict[str, float] = {}  # uid -> when its deletion was first seen
        self.gone: dict[str, float] = {}  # uid -> when it was first seen gone
        self.lock = threading.Condition()
        self.seen: set[str] = set()

    def observe(self, pods: list[dict]) -> None:
        now = time.monotonic()
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        with self.lock:
            for uid, pod in by_uid.items():
                self.seen.add(uid)
                if pod["metadata"].get("deletionTimestamp"):
                    self.deleting.setdefault(uid, now)
            for uid in self.seen - set(by_uid):
                self.gone.setdefault(uid, now)
            self.lock.notify_all()

    def wait_gone(self, uid: str, timeout: float = 120) -> float:
        with self.lock:
            assert self.lock.wait_for(lambda: uid in self.gone, timeout), f"pod {uid} was never deleted"
            return self.gone[uid]

    def __enter__(self) -> "Pods":
        super().__enter__()
        assert self.informer.synced.is_set()
        return self


class Stream:
    """A streamed chat completion of TOKENS tokens (ignore_eos) to one pod
    behind the Service: the pod is one of the Service's ready endpoints (its
    EndpointSlice), reached through the API by port-forward, as kubectl
    port-forward reaches it. Records each event's time and how it ended."""

    def __init__(self, kube, namespace: str, pod: str):
        from ansible_collections.inferops.vllm.plugins.module_utils.k8s._tunnel import PodTunnel

        slices = kube.list("discovery.k8s.io/v1", "EndpointSlice", namespace,
                           label_selector="kubernetes.io/service-name=vllm")
        endpoints = {e["targetRef"]["name"]: e for s in slices for e in s.get("endpoints") or []}
        assert endpoints.get(pod, {}).get("conditions", {}).get("ready"), f"{pod} is not a ready endpoint: {endpoints}"
        [port] = {p["port"] for s in slices for p in s.get("ports") or [] if p.get("name") == "http"}
        self.pod = kube.get("v1", "Pod", namespace, pod)
        self.uid = self.pod["metadata"]["uid"]
        # The key the pod was started with, from the Secret its VLLM_API_KEY names.
        [ref] = [e["valueFrom"]["secretKeyRef"] for e in self.pod["spec"]["containers"][0]["env"]
                 if e["name"] == "VLLM_API_KEY"]
        self.key = base64.b64decode(kube.get("v1", "Secret", namespace, ref["name"])["data"][ref["key"]]).decode()
        self.tunnel = PodTunnel(kube.api, namespace, pod, port)
        self.events: list[tuple[float, dict | str]] = []
        self.ended: str | None = None
        self.ended_at: float | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.first = threading.Event()

    def __enter__(self) -> "Stream":
        self.local_port = self.tunnel.__enter__()
        self.thread.start()
        assert self.first.wait(60), f"no first chunk from {self.pod['metadata']['name']}: {self.ended}"
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(120)
        self.tunnel.__exit__(*exc)

    def _read(self) -> None:
        body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "Count to a million."}],
                "stream": True, "max_tokens": TOKENS, "ignore_eos": True, "stream_options": {"include_usage": True}}
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.local_port, timeout=120)
            conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"})
            resp = conn.getresponse()
            assert resp.status == 200, (resp.status, resp.read()[:300])
            while True:
                line = resp.readline()
                if not line:
                    self.ended = "connection closed"
                    break
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                self.events.append((time.monotonic(), "[DONE]" if data == b"[DONE]" else json.loads(data)))
                self.first.set()
                if data == b"[DONE]":
                    self.ended = "[DONE]"
                    break
        except Exception as exc:  # noqa: BLE001 - how the stream broke is the finding
            self.ended = f"{type(exc).__name__}: {exc}"
        self.ended_at = time.monotonic()
        self.first.set()

    def chunks(self) -> list[dict]:
        return [e for _t, e in self.events if isinstance(e, dict)]

    def tokens(self) -> int:
        return sum(1 for c in self.chunks() for ch in c["choices"] if "role" not in ch["delta"])

    def finish_reason(self) -> str | None:
        return next((ch["finish_reason"] for c in self.chunks() for ch in c["choices"] if ch.get("finish_reason")), None)

    def last_token_at(self) -> float:
        return max(t for t, e in self.events if isinstance(e, dict) and e["choices"])


def assert_survived(stream: Stream, pods: Pods, what: str) -> None:
    """Every token, the finish reason of a complete answer, usage, [DONE];
    and it was in flight when its pod was told to stop, past preStop: the
    drain carried it, and the pod went only after it had ended."""
    assert stream.ended == "[DONE]", (what, stream.ended)
    assert stream.tokens() == TOKENS and stream.finish_reason() == "length", (what, stream.tokens())
    assert stream.chunks()[-1]["usage"]["completion_tokens"] == TOKENS
    deleted = pods.deleting.get(stream.uid)
    assert deleted is not None, f"{what}: the pod streamed from was not stopped"
    assert stream.events[0][0] < deleted, f"{what}: the stream started after its pod's deletion"
    assert deleted + PRESTOP_S < stream.last_token_at(), \
        f"{what}: the stream ended {stream.last_token_at() - deleted:.1f}s after its pod's deletion, before SIGTERM"
    assert pods.wait_gone(stream.uid) > stream.ended_at


def assert_cut(stream: Stream, pods: Pods, what: str) -> None:
    """As vLLM 0.20.0 did with no drain: aborted at SIGTERM, after the
    preStop during which the pod kept streaming."""
    deleted = pods.deleting.get(stream.uid)
    assert deleted is not None, f"{what}: the pod streamed from was not stopped"
    assert stream.events[0][0] < deleted, f"{what}: the stream started after its pod's deletion"
    assert stream.ended == "[DONE]" and stream.finish_reason() == "abort", (what, stream.ended, stream.finish_reason())
    assert stream.tokens() < TOKENS
    aborted_at = stream.last_token_at()
    assert aborted_at - deleted > PRESTOP_S / 2, f"{what}: aborted {aborted_at - deleted:.1f}s after the deletion"
    assert any(deleted < t < aborted_at for t, e in stream.events if isinstance(e, dict)), \
        f"{what}: no token while preStop ran"
    pods.wait_gone(stream.uid)


def upgrade_while_streaming(sandbox, kube, namespace: str, drain: int, replicas: int, pod: str):
    """playbooks/upgrade.yml to this drain, with a stream to pod started once
    the StatefulSet has the new template (the partition still holds every
    pod on the old one, until rolling_upgrade lowers it pod by pod)."""
    def applied(sts: dict) -> bool:
        return (drain == 0) != ("--shutdown-timeout" in sts["spec"]["template"]["spec"]["containers"][0]["args"])

    result: dict = {}
    runner = threading.Thread(target=lambda: result.setdefault(
        "run", playbook(sandbox, "playbooks/upgrade.yml", namespace, drain, replicas)))
    runner.start()
    kube.wait_for(("apps/v1", "StatefulSet", namespace), applied, 300)
    with Stream(kube, namespace, pod) as stream:
        runner.join(600)
    assert result["run"].rc == 0, result["run"].failures()
    return result["run"], stream


# The last task of scale.yml before it applies the new count: a scale-down
# has no earlier mark in the API to start the stream at.
SCALE_MARK = "TASK [inferops.vllm.vllm_serve : Check that the cluster has the GPUs for the new count"


def scale_while_streaming(sandbox, kube, namespace: str, drain: int, replicas: int, pod: str) -> "Stream":
    """playbooks/scale.yml to this count, with a stream to pod started when
    the run reaches SCALE_MARK."""
    streams: list[Stream] = []

    def on_line(line: str) -> None:
        if line.startswith(SCALE_MARK) and not streams:
            streams.append(Stream(kube, namespace, pod).__enter__())

    rc, output = scale_with_output(sandbox, namespace, drain, replicas, on_line)
    assert streams, output[-3000:]
    streams[0].__exit__(None, None, None)
    assert rc == 0, output[-3000:]
    return streams[0]


def test_a_stream_in_flight_survives_scale_down_and_upgrade_with_the_drain_and_is_cut_without(sandbox, kube, namespace):
    first = playbook(sandbox, "site.yml", namespace, DRAIN_S, 3)
    assert first.rc == 0, first.failures()
    sts = kube.get("apps/v1", "StatefulSet", namespace, "vllm")
    assert sts["status"]["readyReplicas"] == 3
    spec = sts["spec"]["template"]["spec"]
    args = spec["containers"][0]["args"]
    assert args[args.index("--shutdown-timeout") + 1] == str(DRAIN_S)
    assert spec["terminationGracePeriodSeconds"] == PRESTOP_S + DRAIN_S + 10

    with Pods(kube, namespace) as pods:
        # A scale-down of the pod streamed from, with the drain.
        assert_survived(scale_while_streaming(sandbox, kube, namespace, DRAIN_S, 2, "vllm-2"), pods,
                        "scale-down, drain on")

        # A gated upgrade that turns the drain off: the pods it stops still have it.
        upgrade, survived = upgrade_while_streaming(sandbox, kube, namespace, 0, 2, "vllm-1")
        assert [r["pod"] for r in upgrade.task(ROLL_TASK)["replicas"]] == ["vllm-1", "vllm-0"]
        assert_survived(survived, pods, "upgrade, pods with the drain")
        spec = kube.get("apps/v1", "StatefulSet", namespace, "vllm")["spec"]["template"]["spec"]
        assert "--shutdown-timeout" not in spec["containers"][0]["args"]
        assert spec["terminationGracePeriodSeconds"] == PRESTOP_S + 0 + 10

        # The same scale-down with no drain: the stream is cut.
        assert_cut(scale_while_streaming(sandbox, kube, namespace, 0, 1, "vllm-1"), pods, "scale-down, no drain")
