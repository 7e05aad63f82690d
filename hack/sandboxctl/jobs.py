"""The job runner: the kubelet's part, for pods the sandbox can really run.

kwok runs no containers. For pods on the simulated nodes whose containers use
an image `up` was told to run locally (`--run-image`; by default the sandbox
inventory's model_store_fetch_image), this process does what a kubelet would,
on this machine:

- runs each container's ``command`` + ``args`` as a local process (``python3``
  or ``python`` is the project's virtualenv Python; the image's own
  PYTHONPATH is the checkout's .cache/collections, as the model-fetch image
  installs the collection). A container without a command cannot run: the
  image's entrypoint is not known here;
- its environment: ``envFrom`` Secrets and ConfigMaps and ``env`` (values,
  secretKeyRef, configMapKeyRef, fieldRef) read through the API, with
  ``$(VAR)`` expanded; nothing of this process's own environment but PATH;
- each volumeMount is its volume's folder on this machine: a claim's bound
  PersistentVolume's hostPath, a hostPath volume (a path outside the state
  folder is the simulated node's: STATE_DIR/nodes/NODE/PATH, never the
  machine's own), emptyDir/Secret/ConfigMap folders under
  STATE_DIR/pods/. There is no mount namespace, so paths are mapped by
  rewriting: an argument (or the value after ``NAME=``), an env value or the
  workingDir that starts with a mountPath gets the folder's path instead. A
  path inside a longer string (a shell script) is not rewritten;
- API access as a kubelet gives it (v1.37.2): projected volumes (the
  ServiceAccount admission plugin's kube-api-access-*: a serviceAccountToken
  from a TokenRequest bound to the pod, kube-root-ca.crt's ca.crt, the
  namespace from the downward API; secret and configMap sources too), the
  token written again at 80% of its lifetime while the pod runs; and the
  `kubernetes` Service's variables (KUBERNETES_SERVICE_HOST, ..._PORT, ...)
  naming the API server's loopback address and port, where kube-proxy would
  take its ClusterIP;
- reports what a kubelet reports: Running with the container running, then
  the container terminated with its exit code and its termination message as
  the kubelet of v1.37.2 makes it (pkg/kubelet/kuberuntime/
  kuberuntime_container.go, convertToKubeContainerStatus and
  getTerminationMessage): what the container wrote to its
  terminationMessagePath (the last 4096 bytes; the path is a file of the
  pod's folder here, rewritten like a mount), else, with
  terminationMessagePolicy FallbackToLogsOnError and an exit code other than
  0, the end of its output (at most 80 lines, 2048 bytes); with the default
  policy File and no file, none. Pod phase Succeeded or Failed. restartPolicy OnFailure/Always restarts the container
  in the same pod after a back-off (1 s doubling to 30 s, shorter than the
  kubelet's 10 s to 5 min) with restartCount and lastState, waiting in
  CrashLoopBackOff meanwhile, so the Job controller counts failures against
  backoffLimit as on a real node;
- a pod being deleted: each running container is stopped as the kubelet
  stops it (termination.py): its preStop hook first (exec: the command run
  like the container's, in its environment, paths under its mounts
  rewritten; httpGet: a GET to 127.0.0.1; sleep), then SIGTERM, then
  SIGKILL at the end of the grace period, which counts from the start of
  preStop; then the pod is deleted for good (grace 0), as the kubelet
  finishes a deletion.

Output of each run: STATE_DIR/pods/NAMESPACE_POD_UID/CONTAINER-RESTART.log
(kwok serves no logs for these pods). Waiting is watching: one informer on the
pods of every namespace that are bound to a node."""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sandboxctl import COLLECTIONS, termination

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import api_client_of, connect, merge_patch, request_json
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import Informer

READY_FILE = "job-runner.ready"
# kwok's failure stages (hack/cluster/stages/) act on pods labelled so.
FAIL_LABEL = "sandbox.inferops.io/fail"

PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
BACKOFF_START, BACKOFF_MAX = 1.0, 30.0
# kubecontainer.MaxContainerTerminationMessageLogLines / ...LogLength / ...Length (pkg/kubelet/container/runtime.go, v1.37.2)
MESSAGE_LINES, MESSAGE_BYTES, MESSAGE_FILE_BYTES = 80, 2048, 4096
TERMINATION_PATH = "/dev/termination-log"  # the API's default terminationMessagePath
NODE_IP = "127.0.0.1"  # the simulated nodes' InternalIP; the processes run on this machine's network
# A projected serviceAccountToken's default lifetime (the API's default for expirationSeconds), and how much of
# it passes before the kubelet asks for a new one: pkg/kubelet/token/token_manager.go requiresRefresh (v1.37.2)
# refreshes within 20% of the TTL of expiry.
TOKEN_TTL_S, TOKEN_REFRESH_AT = 3600, 0.8
PROJECTED_MODE = 0o644  # the API's default defaultMode of a projected volume


def api_address(api) -> tuple[str, int]:
    """Host and port of the API server the runner's own client reached (the
    server its kubeconfig named, as the client resolved it)."""
    import urllib.parse

    url = urllib.parse.urlsplit(api_client_of(api).configuration.host)
    return url.hostname, url.port or 443


def service_env(host: str, port: int) -> dict[str, str]:
    """The variables of the `kubernetes` Service (port 443, named https), as
    the kubelet gives every pod (v1.37.2 pkg/kubelet/kubelet_pods.go
    getServiceEnvVarMap: the default namespace's `kubernetes` Service always;
    pkg/kubelet/envvars/envvars.go FromServices, makeLinkVariables), with the
    address kube-proxy would take the Service's ClusterIP to: the API
    server's own, on loopback (no ClusterIP is routed here)."""
    tcp = f"tcp://{host}:{port}"
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(port), "KUBERNETES_PORT": tcp,
            f"KUBERNETES_PORT_{port}_TCP": tcp, f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": str(port), f"KUBERNETES_PORT_{port}_TCP_ADDR": host}


def write_file(path: Path, data: str, mode: int) -> None:
    """Written whole or not at all: a reader (a client reading its token again) never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(data)
    tmp.chmod(mode)
    os.replace(tmp, path)


def condition(obj: dict, kind: str) -> str | None:
    return next((c.get("status") for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind),
                None)


def ready(state_dir: Path, pid: int) -> bool:
    """Whether the runner with this pid has listed the pods (health check)."""
    try:
        return (state_dir / READY_FILE).read_text().strip() == str(pid)
    except OSError:
        return False


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(text: str) -> None:
    print(f"{now()} {text}", flush=True)


class ConfigError(Exception):
    """A container that cannot be started yet (the kubelet's waiting reasons)."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError"):
        super().__init__(message)
        self.reason, self.message = reason, message


# --------------------------------------------------------------------------
# what a container gets


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined variable is replaced, $$ is a
    literal $, anything else stays as written."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, text)


def rewrite(value: str, mounts: list[tuple[str, Path]]) -> str:
    """A path under a mountPath, as the path of the volume's folder here."""
    for mount, host in mounts:
        mount = mount.rstrip("/")
        if mount and (value == mount or value.startswith(mount + "/")):
            return str(host) + value[len(mount):]
    if "=" in value and not value.startswith("="):
        key, rest = value.split("=", 1)
        mapped = rewrite(rest, mounts)
        if mapped != rest:
            return f"{key}={mapped}"
    return value


def tail(path: Path) -> str:
    """The end of a run's output: what becomes its termination message."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - MESSAGE_BYTES))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode(errors="replace").splitlines()[-MESSAGE_LINES:]
    return "\n".join(lines)[-MESSAGE_BYTES:]


def termination_message(container: dict, code: int, message_file: Path, output: Path) -> str:
    """The kubelet's termination message for a run that exited with code."""
    try:
        with open(message_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - MESSAGE_FILE_BYTES))
            written = f.read().decode(errors="replace")
    except OSError:
        written = ""
    if written:
        return written
    if container.get("terminationMessagePolicy") == "FallbackToLogsOnError" and code != 0:
        return tail(output)
    return ""


class Runner:
    def __init__(self, kubeconfig: str, state_dir: Path, images: list[str]):
        self.api = connect({"kubeconfig": kubeconfig})
        self.service_env = service_env(*api_address(self.api))
        self.state_dir = state_dir
        self.images = set(images)
        self.workers: dict[str, PodWorker] = {}
        self.stop = threading.Event()
        self.changes: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.resynced: dict[str, str] = {}  # pod uid -> the resourceVersion last reported Ready again

    def takes(self, pod: dict) -> bool:
        return any(c.get("image") in self.images for c in (pod.get("spec") or {}).get("containers") or [])

    def loop(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - reported by main()
            self.error = exc
            os.kill(os.getpid(), signal.SIGTERM)

    def _loop(self) -> None:
        # Pods of every namespace: keyed by uid, not name.
        informer = Informer(self.api, "/api/v1/pods", [("fieldSelector", "spec.nodeName!=")], self.changes, self.stop,
                            key="uid")
        informer.start()
        node_informer = Informer(self.api, "/api/v1/nodes", [], self.changes, self.stop, key="name")
        node_informer.start()
        announced = False
        while not self.stop.is_set():
            self.changes.get()
            while not self.changes.empty():
                self.changes.get_nowait()
            if informer.error or node_informer.error:
                raise informer.error or node_informer.error
            if self.stop.is_set() or not informer.synced.is_set() or not node_informer.synced.is_set():
                continue
            self.reconcile(informer.snapshot())
            self.resync_readiness(informer.snapshot(), node_informer.snapshot())
            if not announced:
                (self.state_dir / READY_FILE).write_text(str(os.getpid()))
                log(f"watching pods of images {sorted(self.images)}")
                announced = True

    def reconcile(self, pods: list[dict]) -> None:
        seen = set()
        for pod in pods:
            if not self.takes(pod):
                continue
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            worker = self.workers.get(uid)
            if pod["metadata"].get("deletionTimestamp"):
                if worker is None:  # nothing of it runs here: only the deletion to finish
                    worker = self.workers[uid] = PodWorker(self, pod, run=False)
                    worker.delete(pod)
                    worker.start()
                else:
                    worker.delete(pod)
            elif worker is None and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                worker = self.workers[uid] = PodWorker(self, pod)
                worker.start()
        for uid in [u for u in self.workers if u not in seen]:
            self.workers.pop(uid).delete(None)  # gone from the API: stop what still runs

    def resync_readiness(self, pods: list[dict], nodes: list[dict]) -> None:
        """What a kubelet does when its node is Ready again (after an API
        server outage, or a kwok stop, long enough for the node controller to
        mark the node Unknown and its pods not Ready): it reports its running
        pods Ready again. kwok does not, so this does it for kwok's pods (not
        the ones it runs itself, and not those the failure stages keep from
        being Ready)."""
        ready_nodes = {n["metadata"]["name"] for n in nodes if condition(n, "Ready") == "True"}
        for pod in pods:
            meta, status = pod["metadata"], pod.get("status") or {}
            if (self.takes(pod) or meta.get("deletionTimestamp") or status.get("phase") != "Running"
                    or FAIL_LABEL in (meta.get("labels") or {}) or condition(pod, "Ready") != "False"
                    or (pod.get("spec") or {}).get("nodeName") not in ready_nodes
                    or self.resynced.get(meta["uid"]) == meta["resourceVersion"]):
                continue
            self.resynced[meta["uid"]] = meta["resourceVersion"]
            stamp = now()
            try:
                # Strategic merge: the conditions list merges by type.
                request_json(self.api, "PATCH", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                             body={"status": {"conditions": [
                                 {"type": "Ready", "status": "True", "lastTransitionTime": stamp},
                                 {"type": "ContainersReady", "status": "True", "lastTransitionTime": stamp}]}},
                             content_type="application/strategic-merge-patch+json", timeout=10,
                             action=f"reporting pod {meta['name']} Ready")
                log(f"pod {meta['namespace']}/{meta['name']} Ready again on node {pod['spec']['nodeName']}")
            except ClusterError as exc:
                log(f"pod {meta['namespace']}/{meta['name']}: not reported Ready again: {exc}")

    def shutdown(self) -> None:
        self.stop.set()
        self.changes.put(None)
        workers = list(self.workers.values())
        for w in workers:
            w.delete(None, grace=5)
        for w in workers:
            w.join(10)


class PodWorker(threading.Thread):
    """One pod: its containers' processes and the status it reports."""

    def __init__(self, runner: Runner, pod: dict, run: bool = True):
        super().__init__(daemon=True)
        self.runner, self.pod, self.run_containers = runner, pod, run
        meta = pod["metadata"]
        self.ns, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.ref = f"{self.ns}/{self.name}"
        self.dir = runner.state_dir / "pods" / f"{self.ns}_{self.name}_{self.uid}"
        self.deleting = threading.Event()
        self.gone = False  # deleted from the API already: nothing left to report or delete
        self.finished = False  # run() is over: a deletion is finished by delete() itself
        self.lock = threading.RLock()  # the statuses, the processes and the flags above
        self.publish_lock = threading.Lock()  # one report at a time, in the order they were made
        self.procs: dict[str, subprocess.Popen] = {}
        self.exited: dict[str, threading.Event] = {}  # container name -> set when its process has exited
        # container name -> (env, cwd, mounts, its own env) it was started with: what its preStop hook runs with
        self.contexts: dict[str, tuple[dict, Path, list, dict]] = {}
        self.start_time = now()
        self.tokens: dict[Path, tuple[dict, float]] = {}  # token file -> (its source, when to ask again)
        self.token_refresher: threading.Thread | None = None
        self.phase = "Pending"
        self.initialized = not pod["spec"].get("initContainers")
        old = {cs["name"]: cs for cs in ((pod.get("status") or {}).get("containerStatuses") or [])
               + ((pod.get("status") or {}).get("initContainerStatuses") or [])}
        self.statuses: dict[str, dict] = {}
        # Containers a runner ran before it was restarted: their processes went with it.
        self.orphaned = any("running" in (cs.get("state") or {}) for cs in old.values())
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            before = old.get(c["name"]) or {}
            restarts = before.get("restartCount", 0) + (1 if "running" in (before.get("state") or {}) else 0)
            self.statuses[c["name"]] = {
                "name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False, "started": False,
                "restartCount": restarts, "state": {"waiting": {"reason": "ContainerCreating"}},
            }

    # -- API ------------------------------------------------------------------

    def publish(self) -> None:
        if self.runner.stop.is_set() or self.gone:
            # The runner is going (as a kubelet that stops): what it stopped is
            # reported by the next one, as containers it lost.
            return
        with self.publish_lock:
            with self.lock:
                patch = self.status_patch()
            try:
                merge_patch(self.runner.api, f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status", patch,
                            action=f"reporting pod {self.ref}")
            except ClusterError as exc:
                log(f"{self.ref}: status not reported: {exc}")

    def status_patch(self) -> dict:
        """The pod's status as a kubelet reports it (a merge patch, the uid as a precondition)."""
        spec = self.pod["spec"]
        main = [self.statuses[c["name"]] for c in spec["containers"]]
        running = self.phase == "Running" and all("running" in cs["state"] for cs in main)
        done = self.phase in ("Succeeded", "Failed")
        not_ready = {"status": "False", "reason": "PodCompleted" if done else "ContainersNotReady"}
        scheduled = next((c for c in (self.pod.get("status") or {}).get("conditions") or []
                          if c.get("type") == "PodScheduled"), {"type": "PodScheduled", "status": "True"})
        t = now()
        conditions = [
            {"type": "PodReadyToStartContainers", "status": "False" if done else "True", "lastTransitionTime": t},
            {"type": "Initialized", "lastTransitionTime": t,
             **({"status": "True"} if self.initialized else
                {"status": "False", "reason": "ContainersNotInitialized"})},
            {"type": "Ready", "lastTransitionTime": t, **({"status": "True"} if running else not_ready)},
            {"type": "ContainersReady", "lastTransitionTime": t, **({"status": "True"} if running else not_ready)},
            scheduled,
        ]
        status = {
            "phase": self.phase, "conditions": conditions, "startTime": self.start_time,
            "hostIP": NODE_IP, "hostIPs": [{"ip": NODE_IP}], "podIP": NODE_IP, "podIPs": [{"ip": NODE_IP}],
            "containerStatuses": [dict(cs) for cs in main],
        }
        if spec.get("initContainers"):
            status["initContainerStatuses"] = [dict(self.statuses[c["name"]]) for c in spec["initContainers"]]
        return {"metadata": {"uid": self.uid}, "status": status}

    def get(self, path: str, what: str) -> dict | None:
        try:
            return request_json(self.runner.api, "GET", path, action=f"reading {what}")
        except ClusterError as exc:
            if exc.details.get("status") == 404:
                return None
            raise

    # -- volumes, env, command -------------------------------------------------

    def host_dir(self, path: str) -> Path:
        """A hostPath on the simulated node. The sandbox's own volumes (in the
        state folder) are used as they are; any other path is the node's."""
        p = Path(path)
        if p.is_relative_to(self.runner.state_dir):
            return p
        return self.runner.state_dir / "nodes" / (self.pod["spec"].get("nodeName") or "node") / p.relative_to("/")

    def volume_dirs(self) -> dict[str, Path]:
        dirs = {}
        for v in self.pod["spec"].get("volumes") or []:
            name = v["name"]
            own = self.dir / "volumes" / name
            if "persistentVolumeClaim" in v:
                claim_name = v["persistentVolumeClaim"]["claimName"]
                claim = self.get(f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims/{claim_name}", f"claim {claim_name}")
                volume_name = ((claim or {}).get("spec") or {}).get("volumeName")
                if not volume_name:
                    raise ConfigError(f"volume {name!r}: claim {claim_name!r} is not bound", "ContainerCreating")
                pv = self.get(f"/api/v1/persistentvolumes/{volume_name}", f"volume {volume_name}") or {}
                path = ((pv.get("spec") or {}).get("hostPath") or (pv.get("spec") or {}).get("local") or {}).get("path")
                if not path:
                    raise ConfigError(f"volume {name!r}: PersistentVolume {volume_name!r} has no hostPath; the "
                                      "sandbox mounts only hostPath volumes", "ContainerCreating")
                dirs[name] = self.host_dir(path)
            elif "hostPath" in v:
                dirs[name] = self.host_dir(v["hostPath"]["path"])
            elif "secret" in v or "configMap" in v:
                kind, ref = ("secret", v["secret"]) if "secret" in v else ("configmap", v["configMap"])
                ref_name = ref.get("secretName") or ref.get("name")
                own.mkdir(parents=True, exist_ok=True)
                for key, value in self.data_of(kind, ref_name, ref.get("optional", False)).items():
                    (own / key).write_text(value)
                dirs[name] = own
            elif "projected" in v:
                self.project(v["projected"], own)
                dirs[name] = own
            else:  # emptyDir, anything else: a folder of the pod's
                dirs[name] = own
            dirs[name].mkdir(parents=True, exist_ok=True)
        return dirs

    def project(self, volume: dict, folder: Path) -> None:
        """A projected volume's files, as the kubelet writes them (v1.37.2
        pkg/volume/projected/projected.go collectData): each source's files
        in the one folder."""
        default_mode = volume.get("defaultMode", PROJECTED_MODE)
        for source in volume.get("sources") or []:
            if "serviceAccountToken" in source:
                tp = source["serviceAccountToken"]
                self.write_token(tp, folder / tp["path"], default_mode)
            elif "configMap" in source or "secret" in source:
                kind, ref = (("configmap", source["configMap"]) if "configMap" in source
                             else ("secret", source["secret"]))
                optional = ref.get("optional", False)
                try:
                    data = self.data_of(kind, ref["name"], optional)
                except ConfigError as exc:  # the kubelet's mount waits, retried: ContainerCreating
                    raise ConfigError(f"MountVolume.SetUp failed: {exc}", "ContainerCreating") from None
                items = ref.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] not in data:
                        if optional:
                            continue
                        raise ConfigError(f'MountVolume.SetUp failed: {kind} "{ref["name"]}" has no key '
                                          f'{item["key"]!r}', "ContainerCreating")
                    write_file(folder / item["path"], data[item["key"]], item.get("mode", default_mode))
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items") or []:
                    path = (item.get("fieldRef") or {}).get("fieldPath")
                    if path in ("metadata.labels", "metadata.annotations"):
                        # The kubelet's format of a whole map (pkg/fieldpath/fieldpath.go FormatMap).
                        values = self.pod["metadata"].get(path.split(".")[1]) or {}
                        value = "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(values.items()))
                    elif path:
                        value = self.field(path)
                    else:
                        raise ConfigError(f"downwardAPI item {item.get('path')!r}: only fieldRef is done here",
                                          "CreateContainerConfigError")
                    write_file(folder / item["path"], value, item.get("mode", default_mode))
        folder.mkdir(parents=True, exist_ok=True)

    def write_token(self, source: dict, path: Path, mode: int) -> None:
        """A TokenRequest for the pod's ServiceAccount, bound to the pod, as
        the kubelet makes it (projected.go above: the source's audience if
        any, its expirationSeconds, boundObjectRef the pod), written to the
        file; asked again at 80% of its lifetime by the pod's refresher."""
        spec = {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
                "expirationSeconds": source.get("expirationSeconds", TOKEN_TTL_S)}
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        account = self.pod["spec"].get("serviceAccountName") or "default"
        try:
            body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
            answer = request_json(self.runner.api, "POST",
                                  f"/api/v1/namespaces/{self.ns}/serviceaccounts/{account}/token", body=body,
                                  action=f"requesting a token of ServiceAccount {self.ns}/{account}")
        except ClusterError as exc:
            raise ConfigError(f"MountVolume.SetUp failed: {exc}", "ContainerCreating") from None
        write_file(path, answer["status"]["token"], mode)
        ttl = (answer.get("spec") or {}).get("expirationSeconds") or spec["expirationSeconds"]
        with self.lock:
            self.tokens[path] = ({**source, "mode": mode}, time.monotonic() + TOKEN_REFRESH_AT * ttl)
            if self.token_refresher is None:
                self.token_refresher = threading.Thread(target=self.refresh_tokens, daemon=True)
                self.token_refresher.start()

    def refresh_tokens(self) -> None:
        """The pod's token files, asked for again before they expire, until
        the pod is deleted or the runner stops (a thread per pod)."""
        while not self.runner.stop.is_set():
            with self.lock:
                due = min((at for _path, at in self.tokens.values()), default=None)
            if due is None or self.deleting.wait(max(0.0, due - time.monotonic())):
                return
            with self.lock:
                files = [(path, source) for path, (source, at) in self.tokens.items() if at <= time.monotonic()]
            for path, source in files:
                try:
                    self.write_token(source, path, source["mode"])
                    log(f"{self.ref}: token {path.name} refreshed")
                except ConfigError as exc:
                    log(f"{self.ref}: token {path.name} not refreshed: {exc}")
                    with self.lock:  # tried again shortly, as the kubelet's next sync would
                        self.tokens[path] = (source, time.monotonic() + BACKOFF_MAX)

    def data_of(self, kind: str, name: str, optional: bool) -> dict[str, str]:
        plural = "secrets" if kind == "secret" else "configmaps"
        obj = self.get(f"/api/v1/namespaces/{self.ns}/{plural}/{name}", f"{kind} {name}")
        if obj is None:
            if optional:
                return {}
            raise ConfigError(f'{kind} "{name}" not found')
        if kind == "secret":
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})

    def field(self, path: str) -> str:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if m:
            return (meta.get(m.group(1)) or {}).get(m.group(2), "")
        return {"metadata.name": self.name, "metadata.namespace": self.ns, "metadata.uid": self.uid,
                "spec.nodeName": spec.get("nodeName", ""), "spec.serviceAccountName": spec.get("serviceAccountName", ""),
                "status.hostIP": NODE_IP, "status.podIP": NODE_IP}.get(path, "")

    def environment(self, c: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for src in c.get("envFrom") or []:
            ref = src.get("secretRef") or src.get("configMapRef") or {}
            kind = "secret" if "secretRef" in src else "configmap"
            for key, value in self.data_of(kind, ref["name"], ref.get("optional", False)).items():
                env[src.get("prefix", "") + key] = value
        for e in c.get("env") or []:
            source = e.get("valueFrom")
            if source is None:
                env[e["name"]] = expand(e.get("value", ""), {**self.runner.service_env, **env})
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind, ref = (("secret", source["secretKeyRef"]) if "secretKeyRef" in source
                             else ("configmap", source["configMapKeyRef"]))
                data = self.data_of(kind, ref["name"], ref.get("optional", False))
                if ref["key"] in data:
                    env[e["name"]] = data[ref["key"]]
                elif not ref.get("optional", False):
                    raise ConfigError(f"couldn't find key {ref['key']} in {kind} {self.ns}/{ref['name']}")
            elif "fieldRef" in source:
                env[e["name"]] = self.field(source["fieldRef"]["fieldPath"])
        return env

    def prepare(self, c: dict) -> tuple[list[str], dict[str, str], Path]:
        dirs = self.volume_dirs()
        mounts = []
        for m in c.get("volumeMounts") or []:
            if m["name"] not in dirs:
                raise ConfigError(f"volumeMount {m['name']!r}: no volume of that name", "CreateContainerConfigError")
            host = dirs[m["name"]] / m.get("subPath", "")
            host.mkdir(parents=True, exist_ok=True)  # a missing subPath is made, as the kubelet makes it
            mounts.append((m["mountPath"], host))
        # The termination-log file, a fresh one for each run (the kubelet mounts one per container).
        message_file = self.message_file(c)
        message_file.unlink(missing_ok=True)
        mounts.append((c.get("terminationMessagePath") or TERMINATION_PATH, message_file))
        mounts.sort(key=lambda m: len(m[0]), reverse=True)
        # The `kubernetes` Service's variables; the container's own win (kubelet_pods.go makeEnvironmentVariables).
        container_env = {**self.runner.service_env, **self.environment(c)}
        command = [expand(x, container_env) for x in c.get("command") or []]
        args = [expand(x, container_env) for x in c.get("args") or []]
        if not command:
            raise ConfigError(f"container {c['name']!r} has no command: the sandbox cannot read the entrypoint of "
                              f"image {c.get('image')!r}; give the container a command", "CreateContainerError")
        argv = [rewrite(a, mounts) for a in command + args]
        if PYTHON.match(Path(argv[0]).name):
            argv[0] = sys.executable
        home = self.dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "PYTHONPATH": str(COLLECTIONS), "HOME": str(home), "HOSTNAME": self.name, "LANG": "C.UTF-8"}
        env.update({k: rewrite(v, mounts) for k, v in container_env.items()})
        cwd = Path(rewrite(c["workingDir"], mounts)) if c.get("workingDir") else self.dir
        cwd.mkdir(parents=True, exist_ok=True)
        with self.lock:
            self.contexts[c["name"]] = (env, cwd, mounts, container_env)
        return argv, env, cwd

    def message_file(self, c: dict) -> Path:
        return self.dir / f"{c['name']}.termination-log"

    # -- running ---------------------------------------------------------------

    def run(self) -> None:
        try:
            if self.run_containers:
                self.run_pod()
        except Exception as exc:  # noqa: BLE001 - one pod's trouble must not end the runner
            log(f"{self.ref}: {exc.__class__.__name__}: {exc}")
        with self.lock:
            self.finished = True
            deleting = self.deleting.is_set()
        if deleting:
            self.finish_deletion()

    def run_pod(self) -> None:
        spec = self.pod["spec"]
        others = sorted({c.get("image") for c in spec.get("initContainers", []) + spec["containers"]}
                        - self.runner.images)
        if others:
            with self.lock:
                for c in spec.get("initContainers", []) + spec["containers"]:
                    if c.get("image") in others:
                        self.statuses[c["name"]]["state"] = {"waiting": {
                            "reason": "ErrImageNeverPull",
                            "message": f"the sandbox runs only the images given to `hack/sandbox up --run-image` "
                                       f"({', '.join(sorted(self.runner.images))}) in a pod that uses one"}}
            self.publish()
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.orphaned and spec.get("restartPolicy", "Always") == "Never":
            # Not to be run again: what the kubelet reports for a container it lost.
            with self.lock:
                for cs in self.statuses.values():
                    cs.update(restartCount=max(0, cs["restartCount"] - 1), ready=False, started=False, state={
                        "terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown", "startedAt": self.start_time,
                                       "finishedAt": now(), "message": "The container could not be located when the "
                                       "pod was terminated (the job runner was restarted)"}})
            self.set_phase("Failed")
            return
        self.publish()
        for c in spec.get("initContainers", []):
            code = self.container_loop(c, init=True)
            if code != 0 or self.deleting.is_set():
                if code is not None and code != 0:
                    self.set_phase("Failed")
                return
        with self.lock:
            self.initialized = True
        codes: dict[str, int | None] = {}
        threads = [threading.Thread(target=lambda c=c: codes.__setitem__(c["name"], self.container_loop(c)),
                                    daemon=True) for c in spec["containers"]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.deleting.is_set():
            return
        self.set_phase("Succeeded" if all(code == 0 for code in codes.values()) else "Failed")

    def set_phase(self, phase: str) -> None:
        with self.lock:
            self.phase = phase
        log(f"{self.ref}: {phase}")
        self.publish()

    def container_loop(self, c: dict, init: bool = False) -> int | None:
        """Run one container, restarted as the restart policy says; its last
        exit code (None if it never ran)."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        cs = self.statuses[c["name"]]
        backoff, code = BACKOFF_START, None
        while not self.deleting.is_set():
            try:
                argv, env, cwd = self.prepare(c)
            except (ConfigError, ClusterError) as exc:
                reason = getattr(exc, "reason", "CreateContainerConfigError")
                with self.lock:
                    cs["state"] = {"waiting": {"reason": reason, "message": str(exc)}}
                self.publish()
                if self.deleting.wait(backoff):
                    return code
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            code, terminated = self.run_once(c, cs, argv, env, cwd, init)
            if init:  # an init container runs again only after a failure
                restart = code != 0 and policy != "Never"
            else:
                restart = policy == "Always" or (policy == "OnFailure" and code != 0)
            restart = restart and not self.deleting.is_set()
            with self.lock:
                if not restart:
                    cs.update(state={"terminated": terminated}, ready=False, started=False)
                else:
                    message = (f"back-off {backoff:g}s restarting failed container={c['name']} "
                               f"pod={self.name}_{self.ns}({self.uid})")
                    cs.update(lastState={"terminated": terminated}, ready=False, started=False,
                              restartCount=cs["restartCount"] + 1,
                              state={"waiting": {"reason": "CrashLoopBackOff", "message": message}})
            if not restart:
                self.publish()
                return code
            log(f"{self.ref} {c['name']}: exit code {code}, restart {cs['restartCount']} in {backoff:g}s")
            self.publish()
            if self.deleting.wait(backoff):
                return code
            backoff = min(backoff * 2, BACKOFF_MAX)
        return code

    def run_once(self, c: dict, cs: dict, argv: list[str], env: dict, cwd: Path, init: bool) -> tuple[int, dict]:
        output = self.dir / f"{c['name']}-{cs['restartCount']}.log"
        started = now()
        log(f"{self.ref} {c['name']}: run {cs['restartCount']}: {shlex.join(argv)}")
        try:
            with open(output, "wb") as out:
                proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            message = f"exec: {argv[0]!r}: {exc.strerror}"
            return 128, {"exitCode": 128, "reason": "StartError", "message": message,
                         "startedAt": started, "finishedAt": now()}
        exited = threading.Event()
        with self.lock:
            self.procs[c["name"]] = proc
            self.exited[c["name"]] = exited
            cs.update(state={"running": {"startedAt": started}}, started=True, ready=not init,
                      containerID=f"sandbox://{proc.pid}")
            if not init and self.phase == "Pending":
                self.phase = "Running"
            if self.deleting.is_set():  # deleted while it was being started
                self.signal(proc, signal.SIGTERM)
        self.publish()
        rc = proc.wait()
        exited.set()
        with self.lock:
            self.procs.pop(c["name"], None)
        code = rc if rc >= 0 else 128 - rc  # killed by a signal: 128 + its number, as runtimes report
        log(f"{self.ref} {c['name']}: exit code {code}")
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": started,
                      "finishedAt": now(), "containerID": f"sandbox://{proc.pid}"}
        message = termination_message(c, code, self.message_file(c), output)
        if message:
            terminated["message"] = message
        return code, terminated

    # -- deletion --------------------------------------------------------------

    def delete(self, pod: dict | None, grace: float | None = None) -> None:
        """The pod is being deleted (pod: as the API has it now), or is gone
        from the API or the runner is stopping (None): stop each running
        container as the kubelet does (termination.stop_container), each in
        a thread of its own as the kubelet's killContainersWithSyncResult
        does. preStop hooks run only for a deletion the API asked for."""
        with self.lock:
            if self.deleting.is_set():
                return
            self.deleting.set()
            self.gone = pod is None
            procs = [(name, proc, self.exited[name]) for name, proc in self.procs.items()]
            finished = self.finished
        if grace is None:
            grace = termination.grace_period(pod or self.pod)
        specs = {c["name"]: c for c in (pod or self.pod)["spec"].get("initContainers", [])
                 + (pod or self.pod)["spec"]["containers"]}
        for name, proc, exited in procs:
            container = specs.get(name, {}) if pod is not None else {}
            threading.Thread(target=self.stop_one, args=(container, name, proc, exited, int(grace)),
                             daemon=True).start()
        if finished:  # nothing runs it any more: finish the deletion here
            threading.Thread(target=self.finish_deletion, daemon=True).start()

    def stop_one(self, container: dict, name: str, proc: subprocess.Popen, exited: threading.Event,
                 grace: int) -> None:
        hooks: list[subprocess.Popen] = []
        try:
            outcome = termination.stop_container(
                container, grace, lambda handler, cancel: self.run_hook(name, handler, cancel, hooks),
                lambda sig: self.signal(proc, sig), exited.wait, log=lambda text: log(f"{self.ref} {name}: {text}"))
        finally:
            for hook in hooks:  # a hook still running goes with its container, as in a runtime
                self.signal(hook, signal.SIGKILL)
        if outcome["prestop_s"] is not None:
            log(f"{self.ref} {name}: preStop took {outcome['prestop_s']:g}s; SIGTERM with {outcome['stop_grace_s']}s "
                f"left of the grace period" + ("; SIGKILL" if outcome["killed"] else ""))

    def run_hook(self, name: str, handler: dict, cancel: threading.Event, hooks: list) -> None:
        """A lifecycle handler of a container that runs here: exec runs its
        command as the container's own is run (its environment, paths under
        its mounts rewritten, python as the project's), httpGet asks
        127.0.0.1 (the pod's IP here), sleep sleeps."""
        with self.lock:
            env, cwd, mounts, container_env = self.contexts[name]

        def run_exec(command: list[str]) -> None:
            argv = [rewrite(expand(x, container_env), mounts) for x in command]
            if not argv:
                raise ValueError("exec: no command")
            if PYTHON.match(Path(argv[0]).name):
                argv[0] = sys.executable
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            hooks.append(proc)
            code = proc.wait()
            if code != 0:
                raise RuntimeError(f"exec {argv[0]!r}: exit code {code}")

        def http_get(get: dict) -> None:
            import urllib.request

            port = get.get("port")
            if isinstance(port, str) and not port.isdigit():
                container = next(c for c in self.pod["spec"]["containers"] if c["name"] == name)
                port = next(p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port)
            url = f"{(get.get('scheme') or 'HTTP').lower()}://{NODE_IP}:{port}{get.get('path') or '/'}"
            with urllib.request.urlopen(url, timeout=30):  # the kubelet waits for it no longer than the grace period
                pass

        termination.run_handler(handler, run_exec, http_get, cancel)

    @staticmethod
    def signal(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def finish_deletion(self) -> None:
        """Once its processes have exited, the kubelet deletes the pod for good."""
        if self.gone or self.runner.stop.is_set():
            return
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": self.uid}}
        try:
            request_json(self.runner.api, "DELETE", f"/api/v1/namespaces/{self.ns}/pods/{self.name}", body=body,
                         action=f"deleting pod {self.ref}")
            log(f"{self.ref}: deleted")
        except ClusterError as exc:
            if exc.details.get("status") not in (404, 409):
                log(f"{self.ref}: not deleted: {exc}")


class Stopping(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/sandbox job-runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--image", action="append", required=True, help="an image whose pods run here")
    args = parser.parse_args(argv)
    state_dir = Path(args.state_dir)
    (state_dir / READY_FILE).unlink(missing_ok=True)
    runner = Runner(args.kubeconfig, state_dir, args.image)

    def stopping(*_):
        raise Stopping()

    # The main thread only waits for the signal (raised here as Stopping);
    # the watch and the pods run in threads.
    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    loop = threading.Thread(target=runner.loop, daemon=True)
    loop.start()
    try:
        while loop.is_alive():
            loop.join(3600)
    except Stopping:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    runner.shutdown()
    (state_dir / READY_FILE).unlink(missing_ok=True)
    if runner.error is not None:
        log(f"job runner failed: {runner.error.__class__.__name__}: {runner.error}")
        return 1
    log("job runner stopped")
    return 0
