"""`ansible-test integration`: one target per module under
tests/integration/targets/, the cluster-facing ones against the sandbox
(named in integration_config.yml, as ansible-test expects)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.collection import collection_copy

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))
ROLES = {p.name for p in (ROOT / "roles").iterdir()}
# A target is run as a role of its name, and a role of the collection by that
# name would be found first: such a module's target carries a suffix.
TARGETS = [f"{m}_module" if m in ROLES else m for m in MODULES]


def test_every_module_has_a_target():
    targets = {p.name for p in (ROOT / "tests" / "integration" / "targets").iterdir()}
    assert set(TARGETS) <= targets, sorted(set(TARGETS) - targets)


@pytest.fixture
def target_namespaces_removed(kube):
    """The namespaces the targets made (ansible-test-*) deleted, and waited
    for until gone: the next file starts from the sandbox as found."""
    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import wait_until

    before = {n["metadata"]["name"] for n in kube.list("v1", "Namespace")}
    yield
    made = {n["metadata"]["name"] for n in kube.list("v1", "Namespace")} - before
    for name in made:
        kube.delete("v1", "Namespace", None, name, propagation="Background", missing_ok=True)
    wait_until(kube.api, "/api/v1/namespaces", lambda items: not {n["metadata"]["name"] for n in items} & made, 180)


def test_ansible_test_integration(sandbox, tmp_path, target_namespaces_removed):
    dest = collection_copy(tmp_path)
    (dest / "tests" / "integration" / "integration_config.yml").write_text(
        yaml.safe_dump({"inferops_kubeconfig": sandbox.kubeconfig}))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-test"), "integration", "--local", "--python",
         f"{sys.version_info[0]}.{sys.version_info[1]}", "--color", "no", *TARGETS],
        cwd=dest, capture_output=True, text=True, timeout=1500, check=False,
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections")})
    out = proc.stdout + proc.stderr
    # Name the target that failed and its failed task, not only the end of the output.
    lines = out.splitlines()
    failed = [line for i, line in enumerate(lines) if line.startswith(("Running ", "FATAL", "ERROR: Command"))
              or (line.lstrip().startswith("fatal:") and "...ignoring" not in "".join(lines[i + 1:i + 3]))]
    assert proc.returncode == 0, "\n".join(failed)[-6000:] + "\n---\n" + out[-2000:]
    for target in TARGETS:
        assert f"Running {target} integration test role" in out, target
