from __future__ import annotations

import json

from ansible_collections.inferops.vllm.plugins.module_utils.gpu._inventory import node_inventory, parse_hami_register

# The example from HAMi's protocol document (two V100s, the pre-2.5 text form).
LEGACY = ("GPU-00552014-5c87-89ac-b1a6-7b53aa24b0ec,10,32768,100,NVIDIA-Tesla V100-PCIE-32GB,0,true:"
          "GPU-0fc3eda5-e98b-a25b-5b0d-cf5c855d1448,10,32768,100,NVIDIA-Tesla V100-PCIE-32GB,0,true:")


def test_legacy_register_annotation():
    devices = parse_hami_register(LEGACY)
    assert [d["id"][:12] for d in devices] == ["GPU-00552014", "GPU-0fc3eda5"]
    assert devices[0]["memory_mib"] == 32768 and devices[0]["split_count"] == 10 and devices[1]["index"] == 1
    assert all(d["health"] for d in devices)


def test_json_register_annotation_omitted_health_means_unhealthy():
    value = json.dumps([
        {"id": "GPU-a", "count": 10, "devmem": 81559, "devcore": 100, "type": "NVIDIA-H100", "health": True},
        {"id": "GPU-b", "index": 1, "count": 10, "devmem": 81559, "devcore": 100, "type": "NVIDIA-H100"},
    ])
    devices = parse_hami_register(value)
    assert [d["health"] for d in devices] == [True, False]
    assert devices[1]["index"] == 1 and devices[0]["mode"] == "hami-core"


def test_garbage_register_annotation_is_empty():
    assert parse_hami_register("[not json") == [] and parse_hami_register("nonsense") == [] and parse_hami_register(None) == []


def test_node_inventory_reports_gpu_resources_and_registration():
    node = {
        "metadata": {"name": "g1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                     "annotations": {"hami.io/node-nvidia-register": LEGACY, "hami.io/node-handshake": "Reported now"}},
        "spec": {},
        "status": {"capacity": {"cpu": "8", "nvidia.com/gpu": "8"}, "allocatable": {"nvidia.com/gpu": "7"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }
    inv = node_inventory(node)
    assert inv["gpu_capacity"] == {"nvidia.com/gpu": "8"} and inv["gpu_allocatable"] == {"nvidia.com/gpu": "7"}
    assert inv["ready"] is True and inv["gpu_product"] == "NVIDIA-H100-80GB-HBM3"
    assert inv["hami"]["registered"] is True and inv["hami"]["healthy_devices"] == 2
    assert inv["hami"]["handshake"] == "Reported now"


def test_unregistered_node():
    inv = node_inventory({"metadata": {"name": "c1"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    assert inv["hami"]["registered"] is False and inv["ready"] is False and inv["gpu_capacity"] == {}


FIXTURES = __import__("pathlib").Path(__file__).parent / "hami_fixtures"


def fixture(name: str) -> str:
    # Exact bytes each HAMi release's encoder writes (hami_fixtures/README.md cites the source).
    return (FIXTURES / name).read_text()


def test_hami_2_7_1_text_form_eight_gpus_indexes_0_to_7():
    """2.7.1 writes ID,count,devmem,devcore,type,numa,health,index,mode (EncodeNodeDevices,
    pkg/device/devices.go at v2.7.1): index is the 8th field, mode the 9th."""
    devices = parse_hami_register(fixture("register-v2.7.1.txt"))
    assert [d["index"] for d in devices] == list(range(8))
    assert {d["mode"] for d in devices} == {"hami-core"} and all(d["health"] for d in devices)
    assert [d["numa"] for d in devices] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert devices[0]["type"] == "NVIDIA-NVIDIA H100 80GB HBM3" and devices[7]["memory_mib"] == 81559
    assert devices[5]["id"] == "GPU-00000000-0000-0000-0000-000000000005"


def test_hami_json_forms_2_8_to_2_10():
    for name in ("register-v2.8.0.txt", "register-v2.10.0.txt"):
        devices = parse_hami_register(fixture(name))
        assert [d["index"] for d in devices] == list(range(8)), name  # index 0 is omitted (omitempty)
        assert [d["numa"] for d in devices] == [0, 0, 0, 0, 1, 1, 1, 1], name
        assert all(d["health"] for d in devices) and devices[0]["type"] == "NVIDIA H100 80GB HBM3", name


def test_hami_2_10_unhealthy_gpu_is_not_registered():
    node = {"metadata": {"name": "g", "annotations": {
        "hami.io/node-nvidia-register": fixture("register-v2.10.0-gpu3-unhealthy.txt")}}, "status": {}}
    hami = node_inventory(node)["hami"]
    assert hami["registered"] is False and hami["healthy_devices"] == 7
    assert [d["index"] for d in hami["devices"] if not d["health"]] == [3]
