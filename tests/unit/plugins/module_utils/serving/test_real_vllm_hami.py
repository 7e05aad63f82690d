"""serving_plan against real vLLM 0.20.0 inside real HAMi slices of one
H200 (hack/device-hami-run.py; docs/real-vllm.md, "Inside HAMi slices").
Each case in tests/data/real-vllm/hami-cases.json was planned by the
collection, then started with exactly the args and env the plan rendered,
under HAMi-core (built from the commit a HAMi release vendors) with the
environment HAMi's device plugin gives such a container
(gpu/_hami.py container_env). hami-runs.json holds what vLLM and
nvidia-smi said; logs/hami/ the lines of vLLM's log that say it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _hami as hami
from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import plan

ROOT = Path(__file__).resolve().parents[5]
DATA = ROOT / "tests" / "data" / "real-vllm"
CASES = {c["name"]: c for c in json.loads((DATA / "hami-cases.json").read_text())}
RECORD = json.loads((DATA / "hami-runs.json").read_text())
RUNS = RECORD["cases"]
SIZED = sorted(n for n, r in RUNS.items() if r.get("kv_cache_tokens"))
FAILED = sorted(n for n, r in RUNS.items() if r["outcome"] == "failed")
# Runs that found the torch.compile cache warm (a pod starts with an empty one): each ran again cold.
WARM = sorted(n for n, r in RUNS.items() if r["compile_cache"].startswith("warm"))
GIB = 1024**3


def plan_for(name: str) -> dict:
    inputs = dict(CASES[name]["inputs"])
    inputs["model_config"] = json.loads((ROOT / inputs.pop("model_config_file")).read_text())
    return plan(inputs)


def log(name: str) -> str:
    return (DATA / "logs" / "hami" / f"{name}.log").read_text()


def test_the_issues_cases_were_run():
    assert {"dense-h-u92", "moe-h-u92", "dense-q-u92-cold", "dense-q-u80-cold", "dense-h-u80-cold", "dense-n-u92",
            "moe-n-u92", "moe-q-u92", "moe-h-u80", "cores-25", "cores-50", "cores-100", "defaults-dense",
            "defaults-moe"} <= set(RUNS)
    grid = {(c["inputs"]["max_num_seqs"], c["args"][c["args"].index("--max-num-batched-tokens") + 1],
             "--enforce-eager" in c["args"], c["kind"]) for n, c in CASES.items() if n.startswith("grid-") and n in RUNS}
    for kind in ("dense", "moe8"):
        for eager in (True, False):
            assert {s for s, t, e, k in grid if k == kind and e == eager} == {64, 256, 1024}
            assert {t for s, t, e, k in grid if k == kind and e == eager} == {"2048", "8192", "16384"}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_vllm_ran_the_command_line_the_plan_renders(name):
    """The first line of each log is the command the harness ran: the plan's args, today's plan the same."""
    header = [line for line in log(name).splitlines() if line.startswith("# ") and " serve " in line][0]
    command = shlex.split(header[2:])
    assert command[command.index("serve") + 1:] == CASES[name]["args"] == plan_for(name)["args"]


@pytest.mark.parametrize("name", sorted(n for n in RUNS if RUNS[n]["slice_mib"]))
def test_in_the_environment_hamis_device_plugin_sets(name):
    case, run = CASES[name], RUNS[name]
    expected = hami.container_env(case["hami_version"], plan_for(name)["resources"]["limits"],
                                  core_policy=case["core_policy"])
    assert run["hami_env"] == case["hami_env"] == expected
    assert expected["CUDA_DEVICE_MEMORY_LIMIT_0"] == f"{case['slice_mib']}m"
    assert run["hami_core"] == case["hami_core"]


@pytest.mark.parametrize("name", [n for n in SIZED if n not in WARM])
def test_plan_within_3_percent_of_vllms_kv_tokens_and_never_above(name):
    planned = plan_for(name)["memory"]["kv_cache_tokens"]
    seen = RUNS[name]["kv_cache_tokens"][0]
    assert planned <= seen
    assert planned == pytest.approx(seen, rel=0.03)


@pytest.mark.parametrize("name", WARM)
def test_a_warm_compile_cache_gives_more_never_less(name):
    """A run that found torch.compile's cache warm profiled less (no compile in the profile): more KV cache than
    the plan, which plans for a pod's cold start, and than the same case run cold."""
    cold = RUNS[f"{name}-cold"]
    assert RUNS[name]["kv_cache_tokens"][0] > cold["kv_cache_tokens"][0] >= plan_for(name)["memory"]["kv_cache_tokens"]
    assert RUNS[name]["torch_peak_gib"][0] < cold["torch_peak_gib"][0]


@pytest.mark.parametrize("name", SIZED)
def test_the_plan_says_what_vllm_sees(name):
    """Inside a slice CUDA reports the slice (HAMi-core's hooks), and NVML too: vLLM takes
    gpu_memory_utilization of it, and its batch defaults follow it (2048 tokens below 70 GiB)."""
    planned, run = plan_for(name), RUNS[name]
    sees = planned["memory"]["vllm_sees"]
    if run.get("init_total_gib"):
        assert sees["total_mib"] / 1024 == pytest.approx(run["init_total_gib"][0], abs=0.05)
    if run.get("batched_tokens_default"):
        assert planned["memory"]["max_num_batched_tokens"] == run["batched_tokens_default"][0]
    weights = planned["memory"]["weights_per_gpu_gib"]
    # both rounded to 0.01 GiB
    assert weights == pytest.approx(run["model_loading_gib"][0], rel=0.01) and weights >= run["model_loading_gib"][0] - 0.011


@pytest.mark.parametrize("name", sorted(n for n in SIZED if RUNS[n]["slice_mib"] and RUNS[n].get("torch_peak_gib")))
def test_overhead_parts_against_vllms_debug_accounting(name):
    """vLLM's DEBUG line splits what it holds besides weights and KV cache; the plan's parts cover each one."""
    parts, run = plan_for(name)["memory"]["overhead_parts_gib"], RUNS[name]
    assert parts["activations"] >= run["torch_peak_gib"][0] - 0.005
    assert parts["activations"] - run["torch_peak_gib"][0] < 0.45  # the cold compile's floor at most
    assert parts["non_torch"] >= run["non_torch_gib"][0] - 0.005
    assert parts["cuda_graphs"] >= (run.get("cuda_graph_estimate_gib") or [0])[0] - 0.005


@pytest.mark.parametrize("name", FAILED)
def test_a_slice_the_plan_refuses_fails_in_vllm_too(name):
    assert plan_for(name)["problems"], "the plan would have let it deploy"
    errors = " ".join(RUNS[name]["errors"])
    assert RUNS[name]["rc"] != 0
    assert "OOM" in errors or "No available memory for the cache blocks" in errors


def test_two_servers_in_two_slices_of_one_gpu():
    """Both ready and answering at once; each one's memory, seen from outside by nvidia-smi, inside its slice."""
    both = [RUNS["dense-h-u92"], RUNS["moe-h-u92"]]
    for run in both:
        assert run["outcome"] == "served" and run["chat"]["status"] == 200 and run["chat"]["completion_tokens"] == 16
        assert run["peak_physical_mib"] <= run["slice_mib"]
    assert sum(r["slice_mib"] for r in both) <= 143771
    assert both[0]["card_used_with_group_mib"] >= sum(r["physical_serving_mib"] for r in both)


@pytest.mark.parametrize("name", sorted(n for n in RUNS if RUNS[n]["slice_mib"] and RUNS[n]["peak_physical_mib"]))
def test_physical_memory_stays_inside_the_slice(name):
    assert RUNS[name]["peak_physical_mib"] <= RUNS[name]["slice_mib"]


def test_held_out_cases_were_predicted_before_they_ran():
    """Predicted by the calibrated plan and committed before the run (hami-cases.json `predicted`), never fitted."""
    held = [n for n in RUNS if CASES[n]["holdout"]]
    assert len(held) == 5
    for name in held:
        predicted = CASES[name]["predicted"]["kv_cache_tokens"]
        seen = RUNS[name]["kv_cache_tokens"][0]
        assert predicted <= seen and predicted == pytest.approx(seen, rel=0.03)


def test_hami_core_slices_what_a_process_sees():
    """The probe: a 20 GiB slice seen by torch, NVML and the driver's virtual-memory API, at each commit."""
    probe = RECORD["probe"]
    assert set(probe) >= {"none", "8be6d90", "5091a2f", "06e6980"}
    assert probe["none"]["mem_get_info_gib"][1] == pytest.approx(139.8, abs=0.01)  # 615 MiB under nvidia-smi's
    for commit in ("8be6d90", "5091a2f", "06e6980"):
        seen = probe[commit]
        assert seen["mem_get_info_gib"][1] == seen["device_properties_total_gib"] == seen["nvml_memory_gib"]["total"]
        assert seen["mem_get_info_gib"][1] == 20.0
        assert seen["cuMemCreate_1gib_handles"] == 19 and seen["cuMemCreate_stop_rc"] == 2  # out of memory
        assert seen["torch_oom_after_gib"] == 19


def test_gpucores_does_not_throttle_decode_under_cuda_graphs():
    """Three servers at gpucores 25, 50 and 100 (CUDA graphs, HAMi's default core policy): the same decode
    throughput. HAMi-core's limiter meters kernel launches, and a graph replay is one launch; the plan warns."""
    rates = {c: [load["tokens_per_s"] for load in RUNS[f"cores-{c}"]["load"]] for c in (25, 50, 100)}
    for i in range(2):
        assert min(r[i] for r in rates.values()) > 0.9 * max(r[i] for r in rates.values())
    assert any("gpu_cores_percent" in w and "CUDA graph" in w for w in plan_for("cores-25")["warnings"])


def test_every_run_was_vllm_0_20_under_the_hami_core_its_case_names():
    for name, run in RUNS.items():
        assert CASES[name]["inputs"]["vllm_version"] == "0.20.0"
        assert "vllm 0.20.0" in log(name).lower() or "0.20.0" in log(name)
        if run["slice_mib"]:
            assert run["hami_core"] in RECORD["builds"] and RECORD["builds"][run["hami_core"]]["rc"] == [0, 0]
