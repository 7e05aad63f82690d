"""kwok's configuration: its own stages (kwok 0.8.0 ships none built in),
ours from hack/cluster/stages/, and kubelet-like extras for pods of given
names (kwok's selectors for logs and port-forward match names, not labels).

Pods whose containers run one of the images the job runner runs locally are
the job runner's: every pod stage gets a selector condition that leaves them
alone (``.spec.containers.[].image NotIn [images]``: kwok's NotIn matches
when none of the query's results is in the list). The vLLM stand-in's pods
(settings.STANDIN_PODS) are kwok's, but their deletion is the stand-in's, which
stops them as a kubelet would (preStop, SIGTERM, the drain, the grace
period) before it deletes them: kwok's deletion stage leaves them alone
(``.metadata.name NotIn [names]``)."""

from __future__ import annotations

from pathlib import Path

from sandboxctl import ROOT
from sandboxctl.processes import go_module_dir
from sandboxctl.settings import STANDIN_PODS, vllm_port_key
from sandboxctl.state import LOOPBACK

STAGES_DIR = ROOT / "hack" / "cluster" / "stages"
OUR_STAGES = ("crashloop.yaml", "readiness-failure.yaml", "image-pull-failure.yaml")
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    # Node status every 10 to 20 minutes; liveness is the lease kwok renews
    # (--node-lease-duration-seconds), as a kubelet does.
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
    "pod/chaos/pod-container-running-failed.yaml",
)
IMAGE_KEY = ".spec.containers.[].image"
# A pod annotated so becomes Ready that long after it is scheduled (a Go
# duration, "3s"), or at a time drawn evenly up to ready-within: a server
# loading a model, for waits and benchmarks that must see a rollout in flight.
READY_AFTER, READY_WITHIN = "sandbox.inferops.io/ready-after", "sandbox.inferops.io/ready-within"


def _dump(doc: dict) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value: str):
        # Templates stay readable as block text.
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(doc, Dumper=Dumper, sort_keys=False)


def leave_alone(stage: dict, images: list[str]) -> dict:
    """The stage, with a condition that keeps it off pods the job runner runs."""
    if images and stage.get("spec", {}).get("resourceRef", {}).get("kind") == "Pod":
        selector = stage["spec"].setdefault("selector", {})
        selector.setdefault("matchExpressions", []).append(
            {"key": IMAGE_KEY, "operator": "NotIn", "values": list(images)})
    return stage


def leave_deletion_to_standin(stage: dict) -> dict:
    """kwok's deletion stage, with a condition that keeps it off the vLLM
    stand-in's pods (hack/openai_standin.py, Kubelet, finishes their deletion)."""
    if stage["metadata"]["name"] == "pod-delete":
        stage["spec"].setdefault("selector", {}).setdefault("matchExpressions", []).append(
            {"key": ".metadata.name", "operator": "NotIn", "values": list(STANDIN_PODS)})
    return stage


def ready_after(pod_ready: dict) -> dict:
    """kwok's own pod-ready stage (so the status it writes is kwok's), for
    pods annotated READY_AFTER, after that delay. Its weight wins over
    pod-ready's (none): kwok leaves out stages of weight 0 when one that
    matches has more (sigs.k8s.io/kwok v0.8.0 pkg/utils/lifecycle/lifecycle.go)."""
    import copy

    stage = copy.deepcopy(pod_ready)
    stage["metadata"]["name"] = "sandbox-pod-ready-after"
    spec = stage["spec"]
    spec["selector"]["matchExpressions"].append({"key": f'.metadata.annotations["{READY_AFTER}"]', "operator": "Exists"})
    spec["weight"] = 10000
    spec["delay"] = {"durationFrom": {"jq": {"expression": f'.metadata.annotations["{READY_AFTER}"]'}},
                     "jitterDurationFrom": {"jq": {"expression": f'.metadata.annotations["{READY_WITHIN}"]'}}}
    return stage


def stages(images: list[str]) -> list[dict]:
    import yaml

    kwok_src = go_module_dir(ROOT / "hack" / "cluster" / "kwok", "sigs.k8s.io/kwok") / "kustomize" / "stage"
    docs = []
    for path in [STAGES_DIR / n for n in OUR_STAGES] + [kwok_src / p for p in KWOK_STAGES]:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    docs += [ready_after(d) for d in docs if d["metadata"]["name"] == "pod-ready"]
    return [leave_deletion_to_standin(leave_alone(d, images)) for d in docs]


def extras(state: dict, fixtures: dict) -> list[dict]:
    """Port-forwards and logs: the vLLM stand-in's (always), then the
    fixtures' (tests)."""
    ports, state_dir = state["ports"], Path(state["state_dir"])
    forwards = [{"name": p, "pods": [p], "port": vllm_port_key(p)} for p in STANDIN_PODS] \
        + fixtures.get("port_forwards", [])
    docs = [
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterPortForward", "metadata": {"name": f["name"]},
         "spec": {"selector": {"matchNames": list(f["pods"])},
                  "forwards": [{"target": {"port": ports[f["port"]], "address": LOOPBACK}}]}}
        for f in forwards
    ]
    for log in fixtures.get("logs", []):
        # kwok reads container logs in the CRI log format: time, stream, tag, line.
        folder = state_dir / "fixtures"
        folder.mkdir(parents=True, exist_ok=True)
        current, previous = folder / f"{log['name']}-current.log", folder / f"{log['name']}-previous.log"
        current.write_text(log.get("current") or "")
        previous.write_text(log.get("previous") or "")
        docs.append(
            {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs", "metadata": {"name": log["name"]},
             "spec": {"selector": {"matchNames": list(log["pods"])},
                      "logs": [{"logsFile": str(current), "previousLogsFile": str(previous), "follow": False}]}})
    return docs


def write_config(state: dict, fixtures: dict, images: list[str]) -> Path:
    path = Path(state["state_dir"]) / "kwok-config.yaml"
    path.write_text("---\n".join(_dump(d) for d in stages(images) + extras(state, fixtures)))
    return path
