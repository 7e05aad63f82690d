"""Access to the sandbox cluster from tests: start it once per session, and
read its state (kubeconfig, ports, S3 endpoint and credentials)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Tests use a sandbox of their own so they never touch one a user started
# with `make sandbox`; under pytest-xdist each worker has its own (gw0, gw1,
# ...: the worker's name is in its environment before this module loads), so
# files on different workers share nothing.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_BASE_DIR = Path(os.environ.get("TEST_SANDBOX_DIR", ROOT / ".cache" / "test-sandbox"))
TEST_SANDBOX_DIR = _BASE_DIR.with_name(f"{_BASE_DIR.name}-{XDIST_WORKER}") if XDIST_WORKER else _BASE_DIR
# What tests need beyond `make sandbox`: the stand-in's port and its
# port-forward, kwok's crash logs (hack/sandbox up --fixtures).
FIXTURES = ROOT / "tests" / "fixtures" / "sandbox.yml"


@dataclass
class Sandbox:
    state_dir: Path
    state: dict

    @property
    def kubeconfig(self) -> str:
        return self.state["kubeconfig"]

    @property
    def gpu_nodes(self) -> list[str]:
        return list(self.state["gpu_nodes"])

    @property
    def cpu_nodes(self) -> list[str]:
        return list(self.state["cpu_nodes"])

    @property
    def helm(self) -> str:
        return self.state["binaries"]["helm"]

    @property
    def kubernetes_version(self) -> str:
        """The version the sandbox's API server runs ("v1.37.2")."""
        return self.state["kubernetes"]["version"]

    @property
    def s3_endpoint(self) -> str:
        return self.state["s3"]["endpoint"]

    def s3_credentials(self) -> dict:
        return json.loads(Path(self.state["s3"]["credentials_file"]).read_text())


def sandbox_cmd(*args: str, check: bool = True, state_dir: Path = TEST_SANDBOX_DIR,
                env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SANDBOX_DIR": str(state_dir), **(env or {})}
    return subprocess.run(
        [str(ROOT / "hack" / "sandbox"), *args], env=env, check=check, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def start() -> tuple[Sandbox, bool]:
    """Start the test sandbox unless it already runs; returns it and whether
    this call started it."""
    running = sandbox_cmd("status", check=False).returncode == 0
    if not running:
        out = sandbox_cmd("up", "--fixtures", str(FIXTURES), check=False)
        if out.returncode != 0:
            raise RuntimeError(f"hack/sandbox up failed:\n{out.stdout}")
    state = json.loads((TEST_SANDBOX_DIR / "state.json").read_text())
    if state.get("fixtures") != str(FIXTURES):
        raise RuntimeError(f"the sandbox in {TEST_SANDBOX_DIR} runs without the test fixtures ({FIXTURES}): "
                           f"stop it (SANDBOX_DIR={TEST_SANDBOX_DIR} hack/sandbox down) and run the tests again")
    return Sandbox(TEST_SANDBOX_DIR, state), not running


def keep_logs(lines: int = 5) -> list[str]:
    """Copy the sandbox's process logs to .cache/test-logs (the state folder
    goes with `down`) and return a short report (CI shows only the end of its
    output): stopped processes, the stand-in's last lines, kwok's errors."""
    import shutil

    kept = ROOT / ".cache" / (f"test-logs-{XDIST_WORKER}" if XDIST_WORKER else "test-logs")
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(TEST_SANDBOX_DIR / "logs", kept, dirs_exist_ok=True)
    status = sandbox_cmd("status", check=False).stdout.splitlines()
    stopped = [line for line in status if "STOPPED" in line]
    report = stopped or ["every sandbox process still runs"]
    report.append(f"full logs: {kept.relative_to(ROOT)}/")
    for name, keep in (("vllm-standin", lambda line: True), ("job-runner", lambda line: True),
                       ("kwok", lambda line: '"level":"ERROR"' in line or "panic" in line)):
        log = kept / f"{name}.log"
        tail = [line[:240] for line in log.read_text(errors="replace").splitlines() if keep(line)][-lines:] \
            if log.exists() else []
        report += [f"{name}.log, last {len(tail)} lines" + (":" if tail else " (empty)")] + ["  " + t for t in tail]
    return report


def stop() -> None:
    sandbox_cmd("down", check=False)


class Outage:
    """A fault injected into a playbook run: ``component`` stopped when the
    run's output reaches a line starting with ``at``, started again
    ``seconds`` later (the outage is the fault, so it is timed), and always
    started by the end of the ``with`` block."""

    def __init__(self, component: str, seconds: float, at: str):
        self.component, self.seconds, self.at = component, seconds, at
        self.stopped = self.started = self.back_at = self.thread = None

    def on_line(self, line: str) -> None:
        if line.startswith(self.at) and self.stopped is None:
            self.stopped = sandbox_cmd("stop", self.component, check=False)
            self.thread = threading.Thread(target=self._restore)
            self.thread.start()

    def _restore(self) -> None:
        threading.Event().wait(self.seconds)  # the outage itself
        self.started = sandbox_cmd("start", self.component, check=False)
        self.back_at = time.monotonic()

    def __enter__(self) -> "Outage":
        return self

    def __exit__(self, *exc) -> None:
        if self.thread is not None:
            self.thread.join(60)
        else:
            sandbox_cmd("start", self.component, check=False)

    @property
    def happened(self) -> bool:
        return self.stopped is not None and self.stopped.returncode == 0 \
            and self.started is not None and self.started.returncode == 0


# --------------------------------------------------------------------------
# The sandbox's shared state, before and after each integration test file
# (tests/integration/conftest.py): a file must leave the sandbox as it found
# it, so that every file starts from what a fresh sandbox is.

# Kinds whose objects come and go on their own: heartbeats, events, what the
# endpoint and IP allocators derive from Services and pods, what the
# aggregator derives from CRDs (APIService without a service: a CRD's group),
# component health. The Node is compared field by field below.
FINGERPRINT_SKIPS = {"Event", "Lease", "Endpoints", "EndpointSlice", "ComponentStatus", "IPAddress", "Node",
                     "Namespace", "TokenReview", "SelfSubjectReview"}
# Node fields a test may set and must put back.
NODE_FIELDS = ("labels", "annotations", "taints", "unschedulable", "capacity", "allocatable")
# Written on the node by the system (kwok, the controllers), not by tests.
NODE_ANNOTATIONS_SKIPPED = ("node.alpha.kubernetes.io/ttl",)


def _digest(obj: dict) -> str:
    import hashlib

    meta = {k: v for k, v in (obj.get("metadata") or {}).items()
            if k in ("labels", "annotations", "ownerReferences", "finalizers")}
    meta["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items()
                           if k != "kubectl.kubernetes.io/last-applied-configuration"} or None
    body = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    return hashlib.sha256(json.dumps([meta, body], sort_keys=True, default=str).encode()).hexdigest()[:12]


def fingerprint(kube, sandbox: Sandbox) -> dict:
    """What a test file may change and must put back: every cluster-scoped
    object (by content), the nodes' labels, annotations, taints,
    unschedulable, capacity and allocatable, the namespaces that are not
    being deleted, every object in them by name (Helm's release Secrets
    included, so an install or upgrade shows), the S3 server's objects, and
    the sandbox's own state (state.json but pids, which processes run).
    Namespaces being deleted, and what goes with them (a Delete-policy
    volume of a claim there, a Service's IPAddress), are left out: they are
    on their way out."""
    namespaces = kube.list("v1", "Namespace")
    live = {n["metadata"]["name"]: n for n in namespaces if not n["metadata"].get("deletionTimestamp")}
    state: dict = {"namespaces": {name: _digest(n) for name, n in live.items()}, "objects": {}, "nodes": {}}
    for kind, namespace, name, obj in _every_object(kube):
        if kind == "Node":
            meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
            state["nodes"][name] = {
                "labels": meta.get("labels") or {},
                "annotations": {k: v for k, v in (meta.get("annotations") or {}).items()
                                if k not in NODE_ANNOTATIONS_SKIPPED},
                "taints": spec.get("taints") or [], "unschedulable": bool(spec.get("unschedulable")),
                "capacity": status.get("capacity") or {}, "allocatable": status.get("allocatable") or {}}
            continue
        if kind in FINGERPRINT_SKIPS or kind.endswith("Review") or kind == "Pod" and obj["metadata"].get("ownerReferences"):
            continue
        if namespace is None:
            spec = obj.get("spec") or {}
            if kind == "APIService" and not spec.get("service"):
                continue
            if kind == "PersistentVolume":
                claim = spec.get("claimRef") or {}
                # Which claim it is (or was) bound to is not compared: the sandbox's volumes are kept
                # (Retain) when their claim goes, and are not bound again (a known limit of its pool).
                # The controller's binding marks (pv.kubernetes.io/bound-by-controller) neither.
                meta = dict(obj["metadata"])
                meta["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items()
                                       if not k.startswith("pv.kubernetes.io/")}
                spec = {k: v for k, v in spec.items() if k != "claimRef"}
                obj = {**obj, "metadata": meta, "spec": spec}
                if claim and claim.get("namespace") not in live and spec.get("persistentVolumeReclaimPolicy") == "Delete":
                    continue
            state["objects"][f"{kind} {name}"] = _digest(obj)
        elif namespace in live:
            state["objects"][f"{kind} {namespace}/{name}"] = "present"
    state["s3"] = _s3_objects(sandbox)
    saved = json.loads((sandbox.state_dir / "state.json").read_text())
    saved.pop("processes", None)
    state["sandbox"] = {"state.json": _digest({"spec": saved}), "processes": _processes(sandbox.state_dir)}
    return state


def _every_object(kube):
    """(kind, namespace, name, object) of every listable kind, as
    Kube.every_object, except that a group version or kind that goes away
    between discovery and its list (a CRD just deleted: discovery lags) is
    passed over: it has no objects."""
    from support.k8s import status_of

    def get(path):
        try:
            return kube.request("GET", path)
        except Exception as exc:  # noqa: BLE001 - only a 404 is passed over
            if status_of(exc) == 404:
                return {}
            raise

    bases = ["/api/v1"] + [f"/apis/{g['preferredVersion']['groupVersion']}" for g in get("/apis").get("groups", [])]
    for base in bases:
        for res in get(base).get("resources", []):
            if "/" in res["name"] or "list" not in res.get("verbs", []):
                continue
            for obj in get(f"{base}/{res['name']}").get("items", []):
                meta = obj.get("metadata", {})
                yield res["kind"], meta.get("namespace"), meta.get("name"), obj


def _s3_objects(sandbox: Sandbox) -> dict:
    import boto3
    from botocore.config import Config

    creds = sandbox.s3_credentials()
    s3 = boto3.client("s3", endpoint_url=sandbox.s3_endpoint, aws_access_key_id=creds["access_key"],
                      aws_secret_access_key=creds["secret_key"], region_name="us-east-1",
                      config=Config(retries={"max_attempts": 2}))
    found = {}
    for bucket in s3.list_buckets().get("Buckets", []):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for item in page.get("Contents", []):
                found[f"{bucket['Name']}/{item['Key']}"] = item["ETag"]
        found.setdefault(f"{bucket['Name']}/", "bucket")
    return found


def _processes(state_dir: Path) -> dict:
    """Which of the sandbox's processes run (what `hack/sandbox status` says, without its start-up time)."""
    import sys

    if str(ROOT / "hack") not in sys.path:
        sys.path.insert(0, str(ROOT / "hack"))
    from sandboxctl.processes import process_alive

    saved = json.loads((state_dir / "state.json").read_text())
    return {p["name"]: "running" if process_alive(p["pid"], saved["state_dir"]) else "STOPPED"
            for p in saved["processes"]}


def fingerprint_changes(before: dict, after: dict) -> list[str]:
    """What differs, one line each, naming the object and the field."""
    lines = []

    def compare(what: str, old: dict, new: dict, describe=None) -> None:
        for key in sorted(old.keys() | new.keys()):
            if key not in new:
                lines.append(f"{what} {key}: gone (it was there before)")
            elif key not in old:
                lines.append(f"{what} {key}: left behind" + (f" ({describe(new[key])})" if describe else ""))
            elif old[key] != new[key]:
                lines.append(f"{what} {key}: changed")

    compare("namespace", before["namespaces"], after["namespaces"])
    compare("object", before["objects"], after["objects"])
    for node in sorted(before["nodes"].keys() | after["nodes"].keys()):
        old, new = before["nodes"].get(node), after["nodes"].get(node)
        if old is None or new is None:
            lines.append(f"node {node}: {'added' if old is None else 'removed'}")
            continue
        for fld in NODE_FIELDS:
            if old[fld] == new[fld]:
                continue
            if isinstance(old[fld], dict):
                diff = [f"{k}={new[fld][k]!r}" + ("" if k not in old[fld] else f" (was {old[fld][k]!r})")
                        for k in sorted(new[fld]) if old[fld].get(k, object()) != new[fld][k]]
                diff += [f"{k} removed" for k in sorted(old[fld]) if k not in new[fld]]
                lines.append(f"node {node} {fld}: " + ", ".join(diff))
            else:
                lines.append(f"node {node} {fld}: {old[fld]!r} -> {new[fld]!r}")
    compare("S3 object", before["s3"], after["s3"])
    if before["sandbox"]["state.json"] != after["sandbox"]["state.json"]:
        lines.append("sandbox state.json: changed (nodes, ports, images or fixtures)")
    compare("sandbox process", before["sandbox"]["processes"], after["sandbox"]["processes"])
    return lines
