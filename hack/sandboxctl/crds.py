"""Third-party CRDs a test or a user may want in the sandbox, exactly as
their projects ship them, from the Go modules pinned in
hack/cluster/crds/go.mod (the module proxy serves their source; no image or
chart is needed for a CRD):

- prometheus-operator v0.85.0 (the newest version the proxy serves):
  example/prometheus-operator-crd/, the files its bundle.yaml is made of;
- KEDA v2.21.0: config/crd/bases/.

`hack/sandbox crds NAME...` creates them (or leaves them as they are) and
waits until the API server serves each."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

from sandboxctl import ROOT
from sandboxctl.processes import go_module_dir
from sandboxctl.state import SandboxError

MODULES_DIR = ROOT / "hack" / "cluster" / "crds"
SETS = {
    "prometheus-operator": ("github.com/prometheus-operator/prometheus-operator", "example/prometheus-operator-crd", (
        "monitoring.coreos.com_servicemonitors.yaml",
        "monitoring.coreos.com_podmonitors.yaml",
        "monitoring.coreos.com_prometheusrules.yaml",
    )),
    "keda": ("github.com/kedacore/keda/v2", "config/crd/bases", (
        "keda.sh_scaledobjects.yaml",
        "keda.sh_triggerauthentications.yaml",
    )),
}


def files(name: str) -> list[Path]:
    if name not in SETS:
        raise SandboxError(f"crds: unknown set {name!r}; choose from {', '.join(SETS)}")
    module, folder, names = SETS[name]
    base = go_module_dir(MODULES_DIR, module) / folder
    return [base / n for n in names]


def install(api, names: list[str], timeout: float = 60.0) -> list[str]:
    """Create the CRDs of these sets (those there already are left alone) and
    wait until each is Established; returns their names."""
    import yaml

    from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError
    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import request_json
    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import Informer

    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    made = []
    for name in names:
        for file in files(name):
            crd = yaml.safe_load(file.read_text())
            try:
                request_json(api, "POST", path, body=crd, action=f"creating CRD {crd['metadata']['name']}")
            except ClusterError as exc:
                if exc.details.get("status") != 409:
                    raise
            made.append(crd["metadata"]["name"])
    # Watched, not polled: done when every one is Established.
    changes, stop = queue.Queue(), threading.Event()
    informer = Informer(api, path, [], changes, stop)
    informer.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            if informer.error:
                raise informer.error
            established = {c["metadata"]["name"] for c in informer.snapshot()
                           if any(x.get("type") == "Established" and x.get("status") == "True"
                                  for x in (c.get("status") or {}).get("conditions") or [])}
            waiting = sorted(set(made) - established)
            if informer.synced.is_set() and not waiting:
                return made
            if time.monotonic() > deadline:
                raise SandboxError(f"crds: not Established after {timeout:g}s: {', '.join(waiting)}")
            try:
                changes.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                pass
    finally:
        informer.close()
