"""The GPU hosts as nodes, what the gpu_node teardown says
(plugins/module_utils/gpu/_hosts.py), and what the hami role refuses about
the GPUs' registration (plugins/module_utils/gpu/_hami.py, registration)."""

from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils.gpu._hami import registration
from ansible_collections.inferops.vllm.plugins.module_utils.gpu._hosts import node_names, teardown_said


def test_node_names_the_mapping_else_the_inventory_name():
    assert node_names(["gpu-01", "gpu-02", "gpu-01"], {"gpu-02": "gpu-02.internal", "cpu-01": "x"}) == [
        "gpu-01", "gpu-02.internal"]
    assert node_names([], {"gpu-01": "n"}) == [] and node_names(["a"], None) == ["a"]


def test_teardown_said():
    taint = [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
    assert teardown_said({"changed_nodes": ["n1", "n2"]}, {"gpu": "on"}, taint, "gpu=on") == \
        "gpu and taints nvidia.com/gpu taken off: n1, n2."
    assert teardown_said({"changed_nodes": []}, {"gpu": "on", "x": "y"}, [], "gpu=on", check_mode=True) == \
        "gpu, x would be taken off: no node had them any more."
    assert teardown_said({"skipped": True}, {}, [], "nvidia.com/gpu.present=true") == (
        "No GPU node found (the inventory lists no GPU hosts and no node matches nvidia.com/gpu.present=true).")


def node(name, registered):
    return {"name": name, "hami": {"registered": registered}}


def test_registration():
    label = {"gpu": "on"}
    assert registration([node("n1", True), node("n2", True)], {"numberReady": 2}, label) == {"refusal": "", "said": ""}
    assert "No node carries gpu=on" in registration([], {}, label)["refusal"]
    assert "registered the GPUs of: n2." in registration([node("n1", True), node("n2", False)], {"numberReady": 2},
                                                         label)["refusal"]
    assert "Ready on 1 of the 2 node(s)" in registration([node("n1", True), node("n2", True)], {"numberReady": 1},
                                                         label)["refusal"]
    checked = registration([node("n1", True), node("n2", False)], {}, label, check_mode=True)
    assert checked == {"refusal": "", "said": "Check mode: the GPU registration is not verified. Now 2 node(s) "
                                              "carry gpu=on, 1 of them registered."}
