"""A fleet's members and downloads (serving/_fleet.py): what an inventory's
inferops_models becomes, and what is refused before anything runs."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.vllm.plugins.filter.fleet_members import role_variables
from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.serving import _fleet

ALLOWED = role_variables("model_store") + role_variables("vllm_serve")
S3 = {"model_store_source": "s3", "model_store_s3_bucket": "models"}


def test_the_role_variables_come_from_the_argument_specs():
    assert "model_store_s3_prefix" in ALLOWED and "vllm_serve_replicas" in ALLOWED
    assert "vllm_serve_gpu_memory_request_mib" in ALLOWED and "inferops_models" not in ALLOWED


def test_models_that_fetch_the_same_files_share_one_download_named_after_the_model():
    fleet = _fleet.members([
        {"name": "chat-large", "model_store_s3_prefix": "seed/tiny-chat", "vllm_serve_tensor_parallel_size": 2},
        {"name": "chat-small", "model_store_s3_prefix": "seed/tiny-chat/", "vllm_serve_replicas": 2},
        {"name": "embed", "model_store_s3_prefix": "seed/tiny-embed"},
    ], ALLOWED, S3)
    by_name = {m["name"]: m for m in fleet["members"]}
    assert [s["name"] for s in fleet["stores"]] == ["tiny-chat", "tiny-embed"]
    assert fleet["stores"][0]["members"] == ["chat-large", "chat-small"]
    # The first of a download's models runs it; the second reads the same claim and folder.
    assert by_name["chat-large"]["fetches"] and not by_name["chat-small"]["fetches"] and by_name["embed"]["fetches"]
    for member in ("chat-large", "chat-small"):
        v = by_name[member]["vars"]
        assert v["vllm_serve_model_claim"] == "models-tiny-chat" and v["vllm_serve_model_subpath"] == "tiny-chat"
        assert v["model_store_name"] == "tiny-chat" and v["vllm_serve_name"] == member
        assert v["vllm_serve_served_model_name"] == member  # the name, unless the entry gives one
    assert by_name["chat-small"]["vars"]["vllm_serve_replicas"] == 2
    assert by_name["chat-small"]["store_members"] == ["chat-large", "chat-small"]


def test_the_download_name_does_not_depend_on_the_order_of_the_list():
    entries = [{"name": "a", "model_store_source": "modelscope", "model_store_model_id": "Qwen/Qwen2.5-7B-Instruct"},
               {"name": "b", "model_store_source": "huggingface", "model_store_model_id": "BAAI/bge-m3"}]
    forward = _fleet.members(entries, ALLOWED, {})
    backward = _fleet.members(list(reversed(entries)), ALLOWED, {})
    assert {m["name"]: m["store"] for m in forward["members"]} == {m["name"]: m["store"] for m in backward["members"]}
    assert {m["name"]: m["store"] for m in forward["members"]} == {"a": "qwen2-5-7b-instruct", "b": "bge-m3"}


def test_another_revision_is_another_download():
    fleet = _fleet.members([
        {"name": "old", "model_store_source": "huggingface", "model_store_model_id": "org/m", "model_store_revision": "v1"},
        {"name": "new", "model_store_source": "huggingface", "model_store_model_id": "org/m", "model_store_revision": "v2",
         "model_store_name": "m-v2"}], ALLOWED, {})
    assert [s["name"] for s in fleet["stores"]] == ["m", "m-v2"]
    with pytest.raises(ParameterError, match=r"\(new\).*stored as 'm'.*model_store_name"):
        _fleet.members([
            {"name": "old", "model_store_source": "huggingface", "model_store_model_id": "org/m"},
            {"name": "new", "model_store_source": "huggingface", "model_store_model_id": "org/m",
             "model_store_revision": "v2"}], ALLOWED, {})


def test_storage_in_each_pod_is_rendered_by_every_model():
    fleet = _fleet.members([{"name": "a", "model_store_s3_prefix": "x"}, {"name": "b", "model_store_s3_prefix": "x"}],
                           ALLOWED, {**S3, "model_store_storage": "per_replica"})
    assert all(m["fetches"] for m in fleet["members"])


def test_every_problem_is_listed_at_once_naming_the_entry_and_the_key():
    with pytest.raises(ParameterError) as caught:
        _fleet.members([
            {"name": "Chat", "vllm_serve_replicas": 1},
            {"name": "embed", "vllm_serve_replica": 2, "vllm_serve_name": "x"},
            {"name": "embed"},
            "chat",
        ], ALLOWED, {"vllm_serve_name": "vllm"})
    text = str(caught.value)
    assert "inferops_models[0]: name 'Chat' must be a lowercase DNS label" in text
    assert "vllm_serve_replica is not a variable of the model_store or vllm_serve role (did you mean vllm_serve_replicas?)" in text
    assert "(embed): vllm_serve_name is derived from `name`" in text
    assert "inferops_models[2]: name 'embed' is also inferops_models[1]'s" in text
    assert "inferops_models[3]: is str" in text
    assert "and so is vllm_serve_name for the whole inventory" in text


def test_two_models_may_not_answer_to_the_same_served_name():
    with pytest.raises(ParameterError, match="served model name 'chat' is also inferops_models\\[0\\]'s"):
        _fleet.members([{"name": "chat"}, {"name": "chat-b", "vllm_serve_served_model_name": "chat"}], ALLOWED, S3)


def test_a_run_on_one_model_has_that_member_only_and_it_fetches_its_download():
    fleet = _fleet.members([{"name": "a", "model_store_s3_prefix": "x"}, {"name": "b", "model_store_s3_prefix": "x"}],
                           ALLOWED, S3, selected="b")
    assert [m["name"] for m in fleet["members"]] == ["b"] and fleet["members"][0]["fetches"]
    assert fleet["members"][0]["store_members"] == ["a", "b"]  # teardown keeps a download a model still serves
    with pytest.raises(ParameterError, match="inferops_model: 'c' is not in inferops_models \\(its models: a, b\\)"):
        _fleet.members([{"name": "a"}, {"name": "b"}], ALLOWED, S3, selected="c")


def test_the_one_model_case():
    assert _fleet.one_model("", "vllm")["members"][0]["name"] == "vllm"
    with pytest.raises(ParameterError, match="serves one model, 'vllm'"):
        _fleet.one_model("chat", "vllm")


def test_a_workload_from_the_gpus_given_before_the_first_download():
    w = _fleet.workload({"name": "chat-small", "namespace": "ai", "replicas": 2, "tensor_parallel_size": 1,
                         "gpu_memory_mib": 81559, "gpu_memory_request_mib": 8192, "gpu_cores_percent": 30,
                         "gpu_types": ["H100"], "node_selector": {"gpu": "on"},
                         "selector": {"app.kubernetes.io/instance": "chat-small"}})
    limits = w["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "8192", "nvidia.com/gpucores": "30"}
    assert w["template"]["metadata"]["annotations"] == {"nvidia.com/use-gputype": "H100"}
    assert w["replicas"] == 2 and w["group_size"] == 1 and w["statefulset"] == "chat-small"


def test_a_replica_larger_than_a_node_is_a_group_one_pod_a_node():
    w = _fleet.workload({"name": "big", "namespace": "ai", "replicas": 1, "tensor_parallel_size": 8,
                         "extra_args": ["--pipeline-parallel-size", "2"], "gpus_per_node": 8, "gpu_memory_mib": 81559,
                         "selector": {"app.kubernetes.io/instance": "big"}})
    assert w["group_size"] == 2
    assert w["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    terms = w["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["topologyKey"] == "kubernetes.io/hostname"


def test_the_serving_plan_decides_when_it_ran():
    plan = {"resources": {"limits": {"nvidia.com/gpu": "4"}}, "annotations": {}, "group": None,
            "memory": {"weights_per_gpu_gib": 10, "overhead_per_gpu_gib": 2, "kv_bytes_per_token_per_gpu": 1024,
                       "gpu_memory_utilization": 0.9}, "max_model_len": 4096}
    w = _fleet.workload({"name": "m", "namespace": "ai", "replicas": 1, "tensor_parallel_size": 0, "plan": plan})
    assert w["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "4"}
    assert w["min_memory_mib"] is None  # whole GPUs: no slice to shrink
    sliced = dict(plan, resources={"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "20000"}})
    # (10 + 2) GiB + 4096 tokens x 1 KiB = 12292 MiB, over 0.9 -> 13658 MiB.
    assert _fleet.workload({"name": "m", "namespace": "ai", "replicas": 1, "plan": sliced})["min_memory_mib"] == 13658


def test_gpus_unknown_before_the_download_are_refused_with_the_fix():
    with pytest.raises(ParameterError, match="chat: vllm_serve_tensor_parallel_size is 0.*give the GPUs of a replica"):
        _fleet.workload({"name": "chat", "namespace": "ai", "replicas": 1, "tensor_parallel_size": 0})


def test_the_fleet_playbook_asks_the_inventory_for_exactly_what_the_rules_read():
    import re

    import yaml
    from support.ansible import ROOT

    play = yaml.safe_load((ROOT / "playbooks" / "fleet.yml").read_text())[0]
    pattern = re.compile("^(" + "|".join(play["vars"]["fleet_inventory_patterns"]) + ")$")
    names = set(_fleet.INVENTORY_KEYS) | {"vllm_serve_replicas", "model_store_size", "vllm_serve_namespace"}
    assert {n for n in names if pattern.match(n)} == set(_fleet.INVENTORY_KEYS)


def test_the_example_fleet_plans_and_its_slices_share_one_h100():
    """inventories/example: each model passes its serving plan, and the 7B's
    two slices and the embedding model's fit one H100 together beside the
    large model's eight whole GPUs on another node (binpack for GPUs, as the
    example sets HAMi)."""
    import json
    import re

    import yaml
    from support.ansible import ROOT
    from support.fleet import gpu_node

    from ansible_collections.inferops.vllm.plugins.module_utils.gpu._placement import place_fleet
    from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import plan

    example = yaml.safe_load((ROOT / "inventories" / "example" / "group_vars" / "all.yml").read_text())
    shared = {k: v for k, v in example.items() if k.startswith(("vllm_serve_", "model_store_"))}
    entries = []
    for entry in example["inferops_models"]:
        found = re.search(r"/files/([^']+\.json)", entry["vllm_serve_model_config"])
        config = json.loads((ROOT / "inventories" / "example" / "files" / found.group(1)).read_text())
        entries.append({**entry, "vllm_serve_model_config": config})
    fleet = _fleet.members(entries, ALLOWED, {k: shared.get(k) for k in _fleet.INVENTORY_KEYS})
    requests = []
    for member in fleet["members"]:
        v = {**shared, **member["vars"]}

        def get(name, default=None, v=v):
            return v.get(f"vllm_serve_{name}", default)

        planned = plan({"model_config": get("model_config"), "served_model_name": get("served_model_name"),
                        "vllm_version": get("version"), "gpu_memory_mib": get("gpu_memory_mib"),
                        "gpu_memory_request_mib": get("gpu_memory_request_mib"),
                        "gpu_cores_percent": get("gpu_cores_percent"), "gpu_types": get("gpu_types"),
                        "tensor_parallel_size": get("tensor_parallel_size"), "max_model_len": get("max_model_len"),
                        "max_num_seqs": get("max_num_seqs", 256), "extra_args": get("extra_args", []),
                        "env": get("env", {}), "gpu_memory_utilization": get("gpu_memory_utilization"),
                        "image_glibc": get("image_glibc"), "network_policy": True,
                        "model_path": f"/models/{member['vars']['vllm_serve_model_subpath']}"})
        assert planned["problems"] == [], (member["name"], planned["problems"])
        assert not [w for w in planned["warnings"] if "outside vLLM's budget" in w], member["name"]
        requests.append({"name": member["name"], "namespace": "ai-serving", "replicas": get("replicas", 1),
                         "plan": {k: planned[k] for k in ("resources", "annotations", "group", "memory",
                                                          "max_model_len")},
                         "selector": {"app.kubernetes.io/instance": member["name"]}, "node_selector": {"gpu": "on"}})
    assert [r["plan"]["resources"]["limits"].get("nvidia.com/gpumem") for r in requests] == [None, "24576", "4096"]
    placed = place_fleet([_fleet.workload(r) for r in requests], [gpu_node("gpu-a"), gpu_node("gpu-b")], [],
                         node_policy=example.get("hami_node_scheduler_policy", "binpack"),
                         gpu_policy=example["hami_gpu_scheduler_policy"])
    assert placed["fits"], placed["msg"]
    slices = {(p["node"], p["gpus"][0]["id"]) for p in placed["placements"] if p["workload"] != "vllm-qwen3-235b"}
    assert len(slices) == 1, placed["table_text"]
