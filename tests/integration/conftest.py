"""Every integration test file leaves the sandbox as it found it.

The suite shares one sandbox per session (tests/conftest.py). A file that
leaves something behind (a node label, a CRD, a cluster role, a namespace, a
Helm release, an S3 object, a stopped sandbox process) makes the files after
it pass or fail by order: each would then pass in the suite and fail alone on
a fresh sandbox, or the other way round. So the sandbox's shared state is
taken before and after each file that uses the sandbox, and a file that
changed it fails, naming what changed (tests/support/sandbox.py,
fingerprint). By induction every file starts from the state the session's
sandbox started in: a fresh one, in CI. hack/test-each-alone runs each file
alone on a fresh sandbox, the slower proof of the same."""

from __future__ import annotations

import os

import pytest

from support import sandbox as sandbox_support


@pytest.fixture(scope="module", autouse=True)
def sandbox_left_as_found(request):
    items = [i for i in request.session.items if getattr(i, "module", None) is request.module]
    if not any("sandbox" in i.fixturenames for i in items):
        yield
        return
    sandbox = request.getfixturevalue("sandbox")
    kube = request.getfixturevalue("kube")
    before = sandbox_support.fingerprint(kube, sandbox)
    yield
    changes = sandbox_support.fingerprint_changes(before, sandbox_support.fingerprint(kube, sandbox))
    if changes:
        pytest.fail(f"{request.module.__name__} left the sandbox different from how it found it (a later file would "
                    "start from a sandbox that is not what a fresh one is); put back what it changed:\n  "
                    + "\n  ".join(changes[:40]) + (f"\n  ... and {len(changes) - 40} more" if len(changes) > 40 else ""),
                    pytrace=False)


@pytest.fixture(scope="module")
def nodes_put_back(kube):
    """For a file whose runs change the nodes (site.yml's GPU stage puts gpu=on
    on them): every node's labels, annotations, taints and unschedulable put
    back as they were when the file started."""
    before = {n["metadata"]["name"]: n for n in kube.list("v1", "Node")}
    yield
    for node in kube.list("v1", "Node"):
        name, meta = node["metadata"]["name"], node["metadata"]
        old = before.get(name)
        if old is None:
            continue
        patch = {}
        for field in ("labels", "annotations"):
            was, now = old["metadata"].get(field) or {}, meta.get(field) or {}
            changed = {k: None for k in now if k not in was} | {k: v for k, v in was.items() if now.get(k) != v}
            if changed:
                patch.setdefault("metadata", {})[field] = changed
        spec, was_spec = node.get("spec") or {}, old.get("spec") or {}
        for field in ("taints", "unschedulable"):
            if spec.get(field) != was_spec.get(field):
                patch.setdefault("spec", {})[field] = was_spec.get(field)
        if patch:
            # A merge patch: lists (taints) are replaced whole, a null removes the key.
            kube.patch(f"/api/v1/nodes/{name}", body=patch)


def _helm_releases(sandbox) -> set[tuple[str, str]]:
    import json
    import subprocess

    out = subprocess.run([sandbox.helm, "list", "--all-namespaces", "--output", "json"], check=True,
                         capture_output=True, text=True, env={**os.environ, "KUBECONFIG": sandbox.kubeconfig}).stdout
    return {(r["namespace"], r["name"]) for r in json.loads(out or "[]")}


@pytest.fixture(scope="module")
def site_put_back(sandbox, kube, nodes_put_back):
    """For a file that runs site.yml (or its GPU and HAMi stages): what those
    add to the shared sandbox taken away when the file is done - the nodes'
    labels (nodes_put_back), the Helm releases (HAMi in kube-system)
    uninstalled, the namespaces (ai-serving) deleted - the ones the file
    found are left as they were."""
    import subprocess

    releases = _helm_releases(sandbox)
    namespaces = {n["metadata"]["name"] for n in kube.list("v1", "Namespace")}
    yield
    for namespace, name in sorted(_helm_releases(sandbox) - releases):
        subprocess.run([sandbox.helm, "uninstall", name, "--namespace", namespace, "--wait"], check=True,
                       capture_output=True, env={**os.environ, "KUBECONFIG": sandbox.kubeconfig})
    for ns in kube.list("v1", "Namespace"):
        if ns["metadata"]["name"] not in namespaces and not ns["metadata"].get("deletionTimestamp"):
            kube.delete("v1", "Namespace", None, ns["metadata"]["name"], propagation="Background", missing_ok=True)
