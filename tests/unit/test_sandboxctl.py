"""The sandbox harness's pure parts (hack/sandboxctl/): how the job runner
maps a container's paths and expands its variables, the condition that keeps
kwok's stages off the runner's pods, the fixtures file, the Kubernetes line a
state folder was started with, and how a container is stopped (the kubelet's
preStop, SIGTERM and SIGKILL, termination.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack"))

from sandboxctl import jobs, kwok, settings, termination  # noqa: E402  pylint: disable=wrong-import-position
from sandboxctl.state import SandboxError  # noqa: E402  pylint: disable=wrong-import-position

MOUNTS = sorted([("/models", Path("/state/volumes/pv-3")), ("/models/cache", Path("/state/pods/p/volumes/cache")),
                 ("/data/", Path("/state/nodes/gpu-node-0/srv"))], key=lambda m: len(m[0]), reverse=True)


@pytest.mark.parametrize("given, expected", [
    ("/models/minilm", "/state/volumes/pv-3/minilm"),
    ("/models", "/state/volumes/pv-3"),
    ("/models/cache/x", "/state/pods/p/volumes/cache/x"),  # the longest mountPath wins
    ("/data/out.json", "/state/nodes/gpu-node-0/srv/out.json"),  # a mountPath given with a trailing slash
    ("--dest=/models/minilm", "--dest=/state/volumes/pv-3/minilm"),  # the value after NAME=
    ("/modelsx/a", "/modelsx/a"),  # another folder that only starts with the same letters
    ("import os; open('/models/a')", "import os; open('/models/a')"),  # inside a longer string: left alone
    ("-m", "-m"),
])
def test_paths_under_a_mount_are_rewritten(given, expected):
    assert jobs.rewrite(given, MOUNTS) == expected


def test_variables_expand_as_kubernetes_expands_them():
    env = {"COLOUR": "blue", "EMPTY": ""}
    assert jobs.expand("hello $(COLOUR)", env) == "hello blue"
    assert jobs.expand("$$(COLOUR) $(EMPTY)!", env) == "$(COLOUR) !"
    assert jobs.expand("$(UNDEFINED) and $COLOUR", env) == "$(UNDEFINED) and $COLOUR"


def test_python_is_the_projects():
    assert all(jobs.PYTHON.match(n) for n in ("python", "python3", "python3.11"))
    assert not any(jobs.PYTHON.match(n) for n in ("pythonista", "sh", "python3-config"))


def test_termination_message_is_the_end_of_the_output(tmp_path):
    out = tmp_path / "run.log"
    out.write_text("".join(f"line {i}\n" for i in range(200)))
    message = jobs.tail(out)
    assert message.endswith("line 199") and len(message.splitlines()) <= jobs.MESSAGE_LINES
    out.write_bytes(b"x" * 10000)
    assert len(jobs.tail(out)) == jobs.MESSAGE_BYTES
    assert jobs.tail(tmp_path / "missing.log") == ""


def test_termination_message_as_the_kubelet_makes_it(tmp_path):
    """kubelet v1.37.2 (kuberuntime_container.go, getTerminationMessage): the
    file wins; without it, only FallbackToLogsOnError with a failed exit
    falls back to the output's end; the default policy File gives nothing."""
    out, written = tmp_path / "run.log", tmp_path / "termination-log"
    out.write_text("progress\nthe error at the end\n")
    fallback = {"terminationMessagePolicy": "FallbackToLogsOnError"}
    assert jobs.termination_message({}, 1, written, out) == ""
    assert jobs.termination_message(fallback, 1, written, out) == "progress\nthe error at the end"
    assert jobs.termination_message(fallback, 0, written, out) == ""
    written.write_bytes(b"y" * 5000 + b"why")
    said = jobs.termination_message({}, 1, written, out)
    assert len(said) == jobs.MESSAGE_FILE_BYTES and said.endswith("why")
    assert jobs.termination_message(fallback, 1, written, out) == said


def test_pod_stages_leave_the_runners_pods_alone_and_node_stages_are_kept():
    pod_stage = {"kind": "Stage", "spec": {"resourceRef": {"kind": "Pod"},
                                           "selector": {"matchExpressions": [{"key": ".status.phase"}]}}}
    node_stage = {"kind": "Stage", "spec": {"resourceRef": {"kind": "Node"}, "selector": {}}}
    images = ["registry.invalid/inferops-model-fetch:0.1.0"]
    assert kwok.leave_alone(pod_stage, images)["spec"]["selector"]["matchExpressions"][-1] == {
        "key": ".spec.containers.[].image", "operator": "NotIn", "values": images}
    unchanged = {"kind": "Stage", "spec": {"resourceRef": {"kind": "Node"}, "selector": {}}}
    assert kwok.leave_alone(node_stage, images) == unchanged


def test_kwok_leaves_the_deletion_of_the_standins_pods_to_it():
    """The stand-in stops the vLLM pods as a kubelet would and deletes them
    itself; kwok's other pod stages still act on them."""
    delete = {"metadata": {"name": "pod-delete"}, "spec": {"resourceRef": {"kind": "Pod"}, "selector": {
        "matchExpressions": [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}]}}}
    ready = {"metadata": {"name": "pod-ready"}, "spec": {"resourceRef": {"kind": "Pod"}, "selector": {}}}
    assert kwok.leave_deletion_to_standin(delete)["spec"]["selector"]["matchExpressions"][-1] == {
        "key": ".metadata.name", "operator": "NotIn", "values": list(settings.STANDIN_PODS)}
    assert kwok.leave_deletion_to_standin(ready) == {"metadata": {"name": "pod-ready"},
                                                     "spec": {"resourceRef": {"kind": "Pod"}, "selector": {}}}


def test_the_grace_period_is_the_deletions_then_the_pods_then_two_seconds():
    assert termination.grace_period({"metadata": {"deletionGracePeriodSeconds": 7},
                                     "spec": {"terminationGracePeriodSeconds": 85}}) == 7
    assert termination.grace_period({"metadata": {}, "spec": {"terminationGracePeriodSeconds": 85}}) == 85
    assert termination.grace_period({"metadata": {}, "spec": {}}) == 2


class FakeContainer:
    """A container for stop_container: what happened, in order, on a clock that the hook moves."""

    def __init__(self, hook_takes: float, exits_after_sigterm: bool):
        self.now, self.hook_takes, self.exits = 100.0, hook_takes, exits_after_sigterm
        self.events: list = []

    def clock(self) -> float:
        return self.now

    def run_hook(self, handler, cancel):
        self.events.append(("preStop", handler["exec"]["command"][0]))
        self.now += self.hook_takes

    def send(self, sig):
        self.events.append(("signal", sig.name))

    def wait_exit(self, seconds):
        self.events.append(("wait", seconds))
        return self.exits


PRESTOP = {"lifecycle": {"preStop": {"exec": {"command": ["sleep", "15"]}}}}


def test_prestop_runs_before_sigterm_and_the_grace_period_counts_from_its_start():
    c = FakeContainer(hook_takes=15.4, exits_after_sigterm=True)
    outcome = termination.stop_container(PRESTOP, 85, c.run_hook, c.send, c.wait_exit, clock=c.clock)
    # 85 s from the start of preStop: the 15 whole seconds it took come off what SIGTERM gets.
    assert c.events == [("preStop", "sleep"), ("signal", "SIGTERM"), ("wait", 70)]
    assert outcome["stop_grace_s"] == 70 and outcome["killed"] is False and outcome["prestop_s"] == 15.4


def test_a_container_still_running_at_the_end_of_the_grace_period_is_killed():
    c = FakeContainer(hook_takes=0, exits_after_sigterm=False)
    outcome = termination.stop_container({}, 30, c.run_hook, c.send, c.wait_exit, clock=c.clock)
    assert c.events == [("signal", "SIGTERM"), ("wait", 30), ("signal", "SIGKILL")]  # no hook: nothing to run
    assert outcome["killed"] is True and outcome["prestop_s"] is None


def test_sigterm_always_gets_two_seconds_and_a_grace_period_of_0_runs_no_hook():
    c = FakeContainer(hook_takes=9.0, exits_after_sigterm=True)
    assert termination.stop_container(PRESTOP, 10, c.run_hook, c.send, c.wait_exit, clock=c.clock)["stop_grace_s"] == 2
    c = FakeContainer(hook_takes=9.0, exits_after_sigterm=True)
    termination.stop_container(PRESTOP, 0, c.run_hook, c.send, c.wait_exit, clock=c.clock)
    assert c.events == [("signal", "SIGTERM"), ("wait", 2)]


def test_a_hook_longer_than_the_grace_period_is_left_behind():
    import threading
    import time

    cancelled = threading.Event()

    def hook(handler, cancel):
        cancel.wait(30)
        cancelled.set()

    sent = []
    started = time.monotonic()
    outcome = termination.stop_container({"lifecycle": {"preStop": {"sleep": {"seconds": 30}}}}, 1, hook, sent.append,
                                         lambda seconds: True)
    assert time.monotonic() - started < 5 and sent == [termination.signal.SIGTERM]
    assert outcome["prestop_done"] is False and outcome["stop_grace_s"] == 2
    assert cancelled.wait(5)  # and told to stop (a sleep action ends)


def test_the_default_run_image_is_the_sandbox_inventorys():
    import yaml

    inventory = yaml.safe_load(settings.SANDBOX_INVENTORY_VARS.read_text())
    # The download Job's image and the fleet router's: the job runner runs both here.
    assert settings.default_run_images() == [inventory["model_store_fetch_image"], inventory["vllm_router_image"]]


def test_the_tests_fixtures_file_is_valid_and_others_are_refused(tmp_path):
    fixtures = settings.load_fixtures(str(ROOT / "tests" / "fixtures" / "sandbox.yml"))
    assert fixtures["ports"] == ["standin", "router"]
    assert {"crasher-0"} <= {p for log in fixtures["logs"] for p in log["pods"]}
    assert settings.load_fixtures(None) == {}
    bad = tmp_path / "bad.yml"
    bad.write_text("ports: [x]\nport_forwards: [{name: f, pods: [a-0], port: y}]\n")
    with pytest.raises(SandboxError, match="port_forward 'f'"):
        settings.load_fixtures(str(bad))
    bad.write_text("vllm_pods: [a]\n")
    with pytest.raises(SandboxError, match="unknown: vllm_pods"):
        settings.load_fixtures(str(bad))


def test_the_line_a_state_folder_was_started_with():
    assert settings.line_of({"kubernetes": {"line": "1.35", "version": "v1.35.4"}}) == "1.35"
    # A state folder of an older harness: its binaries' folder names the version.
    assert settings.line_of({"binaries": {"kube-apiserver": "/c/kubernetes-v1.35.4-abc/kube-apiserver"}}) == "1.35"
    assert settings.line_of({"binaries": {"kube-apiserver": "/c/kubernetes-v1.37.2-abc/kube-apiserver"}}) == "1.37"
    with pytest.raises(SandboxError, match="1.36"):
        settings.check_line("1.36")


def test_simulated_registration_is_each_hami_release_s_exact_format():
    """The sandbox writes what HAMi's device plugin writes: compared byte for
    byte with the fixtures made by HAMi's own encoders (same GPUs)."""
    from pathlib import Path

    from sandboxctl.nodes import gpu_register_annotation

    fixtures = Path(__file__).parent / "plugins" / "module_utils" / "gpu" / "hami_fixtures"
    for release, fixture in (("2.7.1", "register-v2.7.1.txt"), ("2.10.0", "register-v2.10.0.txt")):
        made = gpu_register_annotation("x", 8, 81559, "NVIDIA-H100-80GB-HBM3", release)
        # The fixtures' GPUs are GPU-00000000-0000-0000-0000-00000000000N; the sandbox names them by node.
        for i in range(8):
            made = made.replace(f"GPU-x-{i:02d}", f"GPU-00000000-0000-0000-0000-00000000000{i}")
        assert made == (fixtures / fixture).read_text(), release


@pytest.mark.parametrize("nodes, lease, grace", [
    (5, 40, 50),     # upstream's kubelet lease and node-monitor grace period
    (100, 40, 50),   # 100 nodes renewing every 10 s: 10 renewals a second
    (500, 200, 210),  # renewals stay at 10 a second; the grace stays 10 s past a lease
    (1000, 400, 410),
])
def test_heartbeat_settings_keep_lease_renewals_bounded(nodes, lease, grace):
    found = settings.heartbeat(nodes)
    assert found == {"node_lease_s": lease, "node_monitor_grace_s": grace}
    assert nodes / (lease / 4) <= settings.MAX_LEASE_RENEWALS_PER_S


def test_crd_files_are_found_on_a_machine_whose_module_cache_lacks_them(tmp_path, monkeypatch):
    """A fresh machine has no Go module cache: `hack/sandbox crds` must fetch
    the pinned module, not look its files up in the working directory (what
    `go list -m -f {{.Dir}}` sent it to, since it prints an empty Dir for a
    module not downloaded yet)."""
    import os
    import subprocess

    from sandboxctl import crds

    cache = tmp_path / "gomodcache"
    monkeypatch.setenv("GOMODCACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    try:
        for name in crds.SETS:
            found = crds.files(name)
            assert found and all(f.is_file() and f.is_relative_to(cache) for f in found), found
    finally:
        # The module cache is read-only; go removes its own.
        subprocess.run(["go", "clean", "-modcache"], env={**os.environ, "GOMODCACHE": str(cache)},
                       check=False, capture_output=True)


def test_port_reservations_of_two_sandboxes_never_overlap_and_stay_below_the_ephemeral_range(tmp_path):
    """pytest-xdist starts a sandbox per worker at the same moment; each
    reservation skips what another live one holds and a port something else
    has bound, and stays out of the range the kernel hands to outgoing
    connections (which could take a port while its component is stopped)."""
    import socket

    from sandboxctl import state

    registry = tmp_path / "ports.json"
    with socket.socket() as busy:
        busy.bind((state.LOOPBACK, 0))
        first = state.reserve_ports([f"p{i}" for i in range(40)], tmp_path / "a", registry)
        second = state.reserve_ports([f"p{i}" for i in range(40)], tmp_path / "b", registry)
        assert not set(first.values()) & set(second.values())
        assert busy.getsockname()[1] not in {*first.values(), *second.values()}
    assert all(state.PORT_RANGE[0] <= p <= state.PORT_RANGE[1] for p in (*first.values(), *second.values()))
    assert len(set(first.values())) == 40 and list(first) == [f"p{i}" for i in range(40)]
    # Reserved again for the same folder (an `up` after a `down`), the old reservation is replaced.
    again = state.reserve_ports(["x"], tmp_path / "a", registry)
    import json

    held = json.loads(registry.read_text())
    assert held[str(tmp_path / "a")]["ports"] == [again["x"]]
    assert held[str(tmp_path / "b")]["ports"] == sorted(second.values())


def test_a_reservation_of_a_sandbox_that_is_gone_is_given_back(tmp_path):
    """Past its grace period, a reservation holds only while its state.json
    records those ports and one of its processes lives."""
    import json
    import os

    from sandboxctl import state

    registry = tmp_path / "ports.json"
    alive, gone, missing = tmp_path / "alive", tmp_path / "gone", tmp_path / "missing"
    for folder, pid in ((alive, os.getpid()), (gone, 2 ** 22 + 7)):
        folder.mkdir()
        (folder / "state.json").write_text(json.dumps({"ports": {"a": 20001}, "processes": [{"pid": pid}]}))
    registry.write_text(json.dumps({str(d): {"ports": [20001], "at": 0} for d in (alive, gone, missing)}))
    state.reserve_ports(["y"], tmp_path / "new", registry)
    assert set(json.loads(registry.read_text())) == {str(alive), str(tmp_path / "new")}


def test_gpu_nodes_advertise_what_hamis_device_plugin_does():
    """nvidia.com/gpu is the GPUs times the split count written in the
    registration; no gpumem or gpucores (HAMi registers only its resource
    name); the kube-scheduler leaves HAMi's other resources alone, as HAMi's
    scheduler configuration marks them ignoredByScheduler."""
    from sandboxctl import nodes
    from ansible_collections.inferops.vllm.plugins.module_utils.gpu._inventory import parse_hami_register

    node = nodes.gpu_node_manifest("g", "sandbox-a", 8, 81559, "NVIDIA-H100-80GB-HBM3")
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "80"
    assert not {"nvidia.com/gpumem", "nvidia.com/gpucores"} & set(node["status"]["allocatable"])
    devices = parse_hami_register(node["metadata"]["annotations"]["hami.io/node-nvidia-register"])
    assert len(devices) * devices[0]["split_count"] == 80
    config = json.loads(nodes.scheduler_config("/k/kubeconfig"))
    (fit,) = config["profiles"][0]["pluginConfig"]
    assert fit["name"] == "NodeResourcesFit" and "nvidia.com/gpu" not in fit["args"]["ignoredResources"]
    assert set(fit["args"]["ignoredResources"]) == {"nvidia.com/gpumem", "nvidia.com/gpucores",
                                                    "nvidia.com/gpumem-percentage", "nvidia.com/priority"}
    assert config["clientConnection"]["kubeconfig"] == "/k/kubeconfig"


def test_the_standin_answers_for_the_fleets_pods_on_ports_of_their_own():
    keys = [settings.vllm_port_key(p) for p in settings.STANDIN_PODS]
    assert len(set(keys)) == len(keys)
    assert settings.vllm_port_key("vllm-0") == "vllm_standin" and settings.vllm_port_key("vllm-2") == "vllm_standin_2"
    assert settings.vllm_port_key("chat-small-1") == "vllm_standin_chat_small_1"
