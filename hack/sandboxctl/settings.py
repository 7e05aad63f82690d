"""What `up` is told, beyond the node shape: the Kubernetes line, the images
its job runner runs locally, and fixtures (test-only extras, from a file).

The embedded default (`make sandbox`) has what a site.yml run needs and
nothing else: the vLLM stand-in for the vllm_serve role's pods, storage, the
seeded model, and the job runner for the sandbox inventory's
model_store_fetch_image. Tests add their own through a fixtures file
(tests/fixtures/sandbox.yml): reserved ports, port-forwards and logs for pods
of given names."""

from __future__ import annotations

import math
from pathlib import Path

from sandboxctl import ROOT
from sandboxctl.state import SandboxError

KUBERNETES_LINES = ("1.37", "1.35")  # default first; 1.35 is the oldest supported
DEFAULT_KUBERNETES = KUBERNETES_LINES[0]
SANDBOX_INVENTORY_VARS = ROOT / "inventories" / "sandbox" / "group_vars" / "all.yml"
# What inventories/sandbox says, should its value be a template one day.
FALLBACK_RUN_IMAGE = "registry.invalid/inferops-model-fetch:0.1.0"

# The vllm_serve role's pods in the sandbox inventory (vllm_serve_name: vllm)
# and in its fleet (inventories/sandbox-fleet: chat-large, chat-small scaled
# to 3, embed) go to the sandbox's own stand-in (hack/openai_standin.py),
# which configures itself from their pod spec: a port of its own per pod, so
# that a check of one pod (a rolling upgrade's) is answered as that pod's spec
# says.
VLLM_PODS = ("vllm-0", "vllm-1", "vllm-2", "vllm-3")
FLEET_PODS = ("chat-large-0", "chat-small-0", "chat-small-1", "chat-small-2", "embed-0")
STANDIN_PODS = VLLM_PODS + FLEET_PODS


def vllm_port_key(pod: str) -> str:
    """The state.json port of the stand-in that answers for this pod."""
    if pod == VLLM_PODS[0]:
        return "vllm_standin"
    if pod in VLLM_PODS:
        return f"vllm_standin_{pod.rpartition('-')[2]}"
    return "vllm_standin_" + pod.replace("-", "_")


# A kubelet's node lease lasts 40 s and is renewed every quarter of that;
# kube-controller-manager marks a node NotReady 50 s after its last renewal
# (Kubernetes v1.37.2: pkg/kubelet/apis/config/v1beta1/defaults.go,
# pkg/controller/nodelifecycle/config/v1alpha1/defaults.go).
KUBELET_LEASE_S, NODE_MONITOR_GRACE_S = 40, 50
# kwok renews every simulated node's lease from one process, on the same
# cores as the API server and etcd: past this many renewals a second, a
# loaded machine falls behind and healthy nodes go NotReady.
MAX_LEASE_RENEWALS_PER_S = 10


def heartbeat(nodes: int) -> dict:
    """Node lease duration (kwok) and node-monitor grace period
    (kube-controller-manager) for this many simulated nodes: upstream's
    defaults up to 100 nodes; beyond, the lease grows so that renewals stay
    at MAX_LEASE_RENEWALS_PER_S, and the grace period stays upstream's 10 s
    past a lease."""
    renew_s = max(KUBELET_LEASE_S // 4, math.ceil(nodes / MAX_LEASE_RENEWALS_PER_S))
    lease_s = 4 * renew_s
    return {"node_lease_s": lease_s, "node_monitor_grace_s": lease_s + NODE_MONITOR_GRACE_S - KUBELET_LEASE_S}


FIXTURE_KEYS = {"ports", "port_forwards", "logs", "run_images"}


def default_run_images() -> list[str]:
    """The images of the sandbox inventory whose pods the job runner runs
    here: model_store's (model_store_fetch_image: its download Job's pod),
    and the router's (vllm_router_image) when the inventory gives one."""
    import yaml

    try:
        inventory = yaml.safe_load(SANDBOX_INVENTORY_VARS.read_text()) or {}
    except OSError:
        inventory = {}

    def image(key: str) -> str | None:
        value = inventory.get(key)
        # A template can't be resolved here.
        return value if isinstance(value, str) and value and "{{" not in value else None

    router = image("vllm_router_image")
    return [image("model_store_fetch_image") or FALLBACK_RUN_IMAGE] + ([router] if router else [])


# Pod IPs: a /20 of its own for each sandbox, drawn at `up` from
# 198.18.0.0/15 (RFC 2544's benchmarking range: routed on no network, so a
# route for it here shadows nothing), one not routed here yet (another
# sandbox's). Not of 127.0.0.0/8, though all of it is loopback on Linux: the
# API server refuses loopback addresses in EndpointSlices (docs/sandbox.md,
# Pod IPs). `up` makes the /20 local to this machine (pod_route).
POD_NETWORK = "198.18.0.0/15"
POD_PREFIX = 20


def routed_networks() -> list:
    """The IPv4 networks this machine routes now, every table (`ip route`)."""
    import ipaddress
    import subprocess

    try:
        text = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True,
                              timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in text.splitlines():
        words = line.split()
        dest = words[1] if words and words[0] in ("local", "broadcast", "unicast", "blackhole") else (words or [""])[0]
        try:
            found.append(ipaddress.ip_network(dest, strict=False))
        except ValueError:
            continue  # "default" and the like
    return found


def pick_pod_cidr(routed: list | None = None) -> str:
    """A sandbox's pod network: a /20 of POD_NETWORK that nothing here routes yet."""
    import ipaddress
    import random

    routed = routed_networks() if routed is None else routed
    free = [n for n in ipaddress.ip_network(POD_NETWORK).subnets(new_prefix=POD_PREFIX)
            if not any(n.overlaps(r) for r in routed)]
    if not free:
        raise SandboxError(f"no /{POD_PREFIX} of {POD_NETWORK} is free for the pod network: stop a sandbox")
    return str(random.SystemRandom().choice(free))


def check_line(line: str) -> str:
    if line not in KUBERNETES_LINES:
        raise SandboxError(f"Kubernetes line {line!r}: expected one of {', '.join(KUBERNETES_LINES)}")
    return line


def line_of(state: dict) -> str:
    """The Kubernetes line a state folder was started with (an older harness
    did not record it; its binaries' folder names the version)."""
    recorded = (state.get("kubernetes") or {}).get("line")
    if recorded:
        return recorded
    apiserver = (state.get("binaries") or {}).get("kube-apiserver", "")
    for line in KUBERNETES_LINES:
        if f"kubernetes-v{line}." in apiserver:
            return line
    return DEFAULT_KUBERNETES


def load_fixtures(path: str | None) -> dict:
    """The fixtures file, checked; {} without one.

    ports: [name, ...]                 more ports to reserve on 127.0.0.1 (state.json "ports")
    port_forwards: [{name, pods: [...], port: NAME}]   kwok forwards every port of those pods there
    logs: [{name, pods: [...], previous: TEXT, current: TEXT}]   container logs kwok serves (CRI format)
    run_images: [image, ...]           more images the job runner runs locally
    """
    if not path:
        return {}
    import yaml

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except OSError as exc:
        raise SandboxError(f"fixtures: cannot read {path}: {exc.strerror}") from None
    if not isinstance(data, dict) or set(data) - FIXTURE_KEYS:
        unknown = ", ".join(sorted(set(data) - FIXTURE_KEYS)) if isinstance(data, dict) else repr(data)
        raise SandboxError(f"fixtures {path}: expected a mapping of {', '.join(sorted(FIXTURE_KEYS))}; unknown: {unknown}")
    ports = data.get("ports") or []
    for forward in data.get("port_forwards") or []:
        if not forward.get("pods") or forward.get("port") not in ports:
            raise SandboxError(f"fixtures {path}: port_forward {forward.get('name')!r} needs pods and a port "
                               f"listed under ports ({ports})")
    for log in data.get("logs") or []:
        if not log.get("pods") or not log.get("name"):
            raise SandboxError(f"fixtures {path}: logs entry {log.get('name')!r} needs a name and pods")
    return {"file": str(file.absolute()), "ports": list(ports), "port_forwards": list(data.get("port_forwards") or []),
            "logs": list(data.get("logs") or []), "run_images": list(data.get("run_images") or [])}
