"""The state folder and its state.json, and the sandbox's way to the API.

state.json is a contract: tests/support/sandbox.py, inventories/sandbox and
bench/ read it (kubeconfig, api_server, ports, binaries, s3, storage_class,
gpu_nodes, cpu_nodes, kubernetes, processes)."""

from __future__ import annotations

import fcntl
import json
import os
import random
import socket
import tempfile
import time
from pathlib import Path

from sandboxctl import ROOT

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _client as k8s_client

STATE_DIR = Path(os.environ.get("SANDBOX_DIR") or ROOT / ".sandbox").absolute()
LOOPBACK = "127.0.0.1"


class SandboxError(Exception):
    pass


def load_state(state_dir: Path = STATE_DIR) -> dict | None:
    try:
        return json.loads((state_dir / "state.json").read_text())
    except FileNotFoundError:
        return None


def save_state(state: dict) -> None:
    state_dir = Path(state["state_dir"])
    tmp = state_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_dir / "state.json")


# Ports come from below the kernel's ephemeral range (32768-60999 by default,
# net.ipv4.ip_local_port_range), so no outgoing connection takes a
# component's port while a test has the component stopped; and never from
# what another sandbox on this machine reserved (the registry, under a lock),
# so sandboxes started at the same moment (pytest-xdist's workers, bench/)
# do not race for one.
PORT_RANGE = (20000, 32767)
PORT_REGISTRY = Path(tempfile.gettempdir()) / "inferops-sandbox-ports.json"
# A reservation whose sandbox has not started a process yet is kept this long.
RESERVATION_GRACE_S = 900


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _reservation_live(state_dir: str, entry: dict) -> bool:
    if time.time() - entry.get("at", 0) < RESERVATION_GRACE_S:
        return True
    state = load_state(Path(state_dir))
    if not state or sorted((state.get("ports") or {}).values()) != sorted(entry.get("ports", [])):
        return False
    for proc in state.get("processes") or []:
        try:
            os.kill(proc["pid"], 0)
            return True
        except (ProcessLookupError, PermissionError, KeyError):
            continue
    return False


def reserve_ports(keys, state_dir: Path = STATE_DIR, registry: Path = PORT_REGISTRY) -> dict[str, int]:
    """A free port for each key, recorded in the machine's registry for
    ``state_dir`` until its sandbox is gone."""
    registry.touch(exist_ok=True)
    with open(registry, "r+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            held = json.loads(f.read() or "{}")
        except json.JSONDecodeError:
            held = {}
        held = {d: e for d, e in held.items() if d != str(state_dir) and _reservation_live(d, e)}
        taken = {p for e in held.values() for p in e.get("ports", [])}
        ports: dict[str, int] = {}
        candidates = list(range(PORT_RANGE[0], PORT_RANGE[1] + 1))
        random.shuffle(candidates)
        for port in candidates:
            if len(ports) == len(keys):
                break
            if port not in taken and _bindable(port):
                ports[keys[len(ports)]] = port
        if len(ports) < len(keys):
            raise SandboxError(f"no {len(keys)} free ports in {PORT_RANGE[0]}-{PORT_RANGE[1]} on {LOOPBACK}")
        held[str(state_dir)] = {"ports": sorted(ports.values()), "at": time.time()}
        f.seek(0)
        f.truncate()
        f.write(json.dumps(held))
    return ports


def api_client(kubeconfig: Path | str):
    """The collection's own API connection (kubernetes.core's client factory,
    kubernetes.dynamic requests, answers as dicts): the sandbox talks to its
    cluster the way the modules do."""
    return k8s_client.connect({"kubeconfig": str(kubeconfig)})


def create_objects(kubeconfig: Path, collection: str, manifests: list[dict]) -> None:
    """POST each manifest to the collection's path, in parallel; one that
    already exists is fine."""
    from concurrent.futures import ThreadPoolExecutor

    api = api_client(kubeconfig)

    def create(m: dict) -> None:
        try:
            k8s_client.request_json(api, "POST", collection, body=m, action=f"creating {m['metadata']['name']}")
        except ClusterError as exc:
            if exc.details.get("status") != 409:
                raise

    with ThreadPoolExecutor(max_workers=min(16, k8s_client.pool_size(api))) as pool:
        list(pool.map(create, manifests))
