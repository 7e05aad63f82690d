"""The vllm_serve role's checks of names and numbers (pure logic)."""

from ansible_collections.inferops.vllm.plugins.module_utils.serving._inputs import problems, rank_names, rank_problems

GOOD = {"name": "vllm", "namespace": "ai-serving", "served_model_name": "m", "replicas": 1, "port": 8000,
        "wait_timeout": 10, "api_key_secret": "vllm-api-key", "network_policy_enabled": False,
        "network_policy_from": []}


def test_good_input_has_no_problem():
    assert problems(GOOD) == []


def test_every_problem_is_listed_at_once_naming_its_variable():
    found = problems({**GOOD, "name": "Bad_Name", "namespace": "-x", "served_model_name": " ", "replicas": -1,
                      "port": 70000, "wait_timeout": 0, "api_key_secret": "A", "network_policy_enabled": True})
    assert [p.split(" ")[0] for p in found] == [
        "vllm_serve_served_model_name", "vllm_serve_namespace", "vllm_serve_name", "vllm_serve_replicas",
        "vllm_serve_port", "vllm_serve_wait_timeout", "vllm_serve_api_key_secret", "vllm_serve_network_policy_enabled"]


def test_a_statefulset_name_of_52_passes_and_53_does_not():
    assert problems({**GOOD, "name": "a" * 52}) == []
    assert problems({**GOOD, "name": "a" * 53})


def test_rank_names_and_a_name_too_long_for_its_group():
    assert rank_names("vllm", 3) == ["vllm", "vllm-rank1", "vllm-rank2"]
    assert rank_names("vllm", 1) == ["vllm"]
    assert rank_problems("a" * 46, 2) == []
    assert "at most 46 characters" in rank_problems("a" * 47, 2)[0]


def sts(name, partition=0, current="r1", update="r1"):
    return {"metadata": {"name": name}, "spec": {"updateStrategy": {"rollingUpdate": {"partition": partition}}},
            "status": {"currentRevision": current, "updateRevision": update}}


def test_scale_problems_name_each_reason():
    from ansible_collections.inferops.vllm.plugins.module_utils.serving._inputs import scale_problems

    assert scale_problems([sts("vllm")], [], "vllm", "ns") == []
    assert "does not exist in namespace ns" in scale_problems([], [], "vllm", "ns")[0]
    keda = scale_problems([sts("vllm")], [{"metadata": {"name": "vllm"}}], "vllm", "ns")
    assert len(keda) == 1 and "scaled by KEDA (ScaledObject vllm" in keda[0]
    rolling = scale_problems([sts("vllm"), sts("vllm-rank1", current="r1", update="r2")], [], "vllm", "ns")
    assert len(rolling) == 1 and "ns/vllm-rank1 is in the middle of a rollout (revision r1 to r2)" in rolling[0]
    assert "middle of a rollout" in scale_problems([sts("vllm", partition=2)], [], "vllm", "ns")[0]


def test_the_model_folder_a_running_statefulset_reads():
    from ansible_collections.inferops.vllm.plugins.module_utils.serving._inputs import model_subpath

    def sts(args, mount="/models"):
        return {"spec": {"template": {"spec": {"containers": [
            {"name": "vllm", "args": args, "volumeMounts": [{"name": "models", "mountPath": mount}]}]}}}}

    assert model_subpath(sts(["/models/qwen@abc", "--port", "8000"])) == "qwen@abc"
    assert model_subpath(sts(["/data/m/"], mount="/data/")) == "m"
    assert model_subpath(sts(["/elsewhere/m"])) == ""
    assert model_subpath({}) == ""


def test_the_router_would_cut_off_an_ingress_or_prometheus_unless_they_are_named():
    base = {"name": "chat", "namespace": "ai", "network_policy_enabled": True,
            "network_policy_from": [{"namespace": "ai", "pod_labels": {"app.kubernetes.io/name": "inferops-router"}}],
            "router": True, "network_policy_user_from": []}
    assert problems(base) == []
    found = " ".join(problems(dict(base, ingress_enabled=True, service_monitor=True)))
    assert "vllm_serve_ingress_enabled (the Ingress controller), vllm_serve_service_monitor (Prometheus)" in found
    assert "vllm_serve_network_policy_from" in found
    assert problems(dict(base, service_monitor=True, network_policy_user_from=[{"namespace": "monitoring"}])) == []
    # Without the router nothing changes for those options.
    assert problems(dict(base, router=False, ingress_enabled=True)) == []
