"""inferops.vllm.gpu_node against the sandbox's simulated GPU nodes."""

from __future__ import annotations

import pytest

from support.ansible import run_module

pytestmark = pytest.mark.integration


# What these tests set, taken off first: other tests (site.yml runs) may
# have left the GPU nodes labelled gpu=on.
TEST_LABELS = ("gpu", "inferops.io/pool")


@pytest.fixture
def two_nodes(sandbox, kube):
    """Two GPU nodes without the labels and taints these tests set, put back
    as they were afterwards."""
    names = sandbox.gpu_nodes[:2]
    before = {n: kube.get(f"/api/v1/nodes/{n}") for n in names}
    for name in names:
        kube.patch(f"/api/v1/nodes/{name}", strategic=True, body={
            "metadata": {"labels": {k: None for k in TEST_LABELS}}, "spec": {"taints": None}})
    yield names
    for name, node in before.items():
        now = kube.get(f"/api/v1/nodes/{name}")
        labels = {**{k: None for k in (now["metadata"].get("labels") or {})}, **(node["metadata"].get("labels") or {})}
        annotations = {k: None for k in (now["metadata"].get("annotations") or {})
                       if k not in (node["metadata"].get("annotations") or {})}
        kube.patch(f"/api/v1/nodes/{name}", strategic=True, body={
            "metadata": {"labels": labels, "annotations": annotations},
            "spec": {"taints": node["spec"].get("taints") or None}})


def call(sandbox, check=False, diff=False, **args):
    return run_module("inferops.vllm.gpu_node", args, kubeconfig=sandbox.kubeconfig, check=check, diff=diff)


def test_label_taint_then_no_change(sandbox, kube, two_nodes):
    args = dict(names=two_nodes, labels={"gpu": "on", "inferops.io/pool": "serving"},
                taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])
    first = call(sandbox, diff=True, **args)
    assert first["changed"] is True and sorted(first["changed_nodes"]) == sorted(two_nodes)
    assert first["diff"]["after"][two_nodes[0]]["labels"] == {"gpu": "on", "inferops.io/pool": "serving"}
    for name in two_nodes:
        node = kube.get(f"/api/v1/nodes/{name}")
        assert node["metadata"]["labels"]["gpu"] == "on"
        assert [(t["key"], t.get("value"), t["effect"]) for t in node["spec"]["taints"]] == [
            ("nvidia.com/gpu", "present", "NoSchedule")]
    second = call(sandbox, **args)
    assert second["changed"] is False and second["changed_nodes"] == [] and "diff" not in second


def test_inventory_reports_gpus_and_hami_registration(sandbox, two_nodes):
    result = call(sandbox, names=two_nodes)
    assert result["changed"] is False
    for inv in result["nodes"]:
        assert inv["ready"] is True
        # HAMi's device plugin advertises its split count's device IDs per GPU (8 x 10); the registration, 8 GPUs.
        assert inv["gpu_capacity"]["nvidia.com/gpu"] == "80"
        assert inv["gpu_product"] == "NVIDIA-H100-80GB-HBM3"
        assert inv["hami"]["registered"] is True and inv["hami"]["healthy_devices"] == 8


def test_check_mode_changes_nothing_but_reports(sandbox, kube, two_nodes):
    result = call(sandbox, check=True, diff=True, names=two_nodes, labels={"gpu": "on"})
    assert result["changed"] is True and sorted(result["changed_nodes"]) == sorted(two_nodes)
    assert all(inv["labels"].get("gpu") == "on" for inv in result["nodes"])  # the dry run's answer
    assert all("gpu" not in (kube.get(f"/api/v1/nodes/{n}")["metadata"].get("labels") or {}) for n in two_nodes)


def test_absent_removes_label_and_taint(sandbox, kube, two_nodes):
    call(sandbox, names=two_nodes, labels={"gpu": "on"}, taints=[{"key": "dedicated", "value": "llm"}])
    result = call(sandbox, diff=True, names=two_nodes, labels={"gpu": "on"}, taints=[{"key": "dedicated"}], state="absent")
    assert result["changed"] is True
    assert result["diff"]["before"][two_nodes[0]]["labels"] == {"gpu": "on"}
    for name in two_nodes:
        node = kube.get(f"/api/v1/nodes/{name}")
        assert "gpu" not in node["metadata"]["labels"] and not node["spec"].get("taints")
    assert call(sandbox, names=two_nodes, labels={"gpu": "on"}, state="absent")["changed"] is False


def test_label_selector_selects_nodes(sandbox, two_nodes):
    call(sandbox, names=two_nodes[:1], labels={"inferops.io/pick": "me"})
    result = call(sandbox, label_selector="inferops.io/pick=me")
    assert [n["name"] for n in result["nodes"]] == two_nodes[:1]


def test_missing_node_fails_before_any_change(sandbox, kube, two_nodes):
    result = call(sandbox, names=[two_nodes[0], "no-such-node"], labels={"gpu": "on"})
    assert result["failed"] is True
    assert "no-such-node" in result["msg"] and "allow_missing" in result["msg"]
    assert "gpu" not in kube.get(f"/api/v1/nodes/{two_nodes[0]}")["metadata"]["labels"]  # nothing half-applied
    allowed = call(sandbox, names=[two_nodes[0], "no-such-node"], labels={"gpu": "on"}, allow_missing=True)
    assert allowed["changed"] is True and allowed["missing"] == ["no-such-node"]


def test_unquoted_boolean_label_is_refused_with_the_fix(sandbox, two_nodes):
    result = call(sandbox, names=two_nodes, labels={"gpu": True})
    assert result["failed"] is True and "quote it in YAML" in result["msg"]
