"""The state folder and its state.json, and the sandbox's way to the API.

state.json is a contract: tests/support/sandbox.py, inventories/sandbox and
bench/ read it (kubeconfig, api_server, ports, binaries, s3, storage_class,
gpu_nodes, cpu_nodes, kubernetes, processes)."""

from __future__ import annotations

import json
import os
import socket
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


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
