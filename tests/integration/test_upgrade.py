"""playbooks/upgrade.yml on the sandbox: three replicas, a new template
rolled one pod at a time with each new pod checked, then an upgrade broken
on purpose (its pods never become Ready) that stops at the first pod, keeps
the others serving, and rolls back."""

from __future__ import annotations

import pytest

from support.ansible import sandbox_playbook
from support.pods import PodRecorder

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROLL_TASK = "inferops.vllm.vllm_serve : Lower the partition pod by pod, each gated by readiness and an endpoint check of that pod"


def playbook(sandbox, name: str, namespace: str, **extra):
    # site.yml's model and serving stages only: the GPU and HAMi stages would leave node labels and a Helm
    # release behind for later files; the fresh sandbox's GPU nodes carry GPU feature discovery's label.
    extra_vars = {"vllm_serve_replicas": 3, "vllm_serve_wait_timeout": 120,
                  "vllm_serve_node_selector": {"nvidia.com/gpu.present": "true"}, **extra}
    return sandbox_playbook(sandbox, name, namespace, ["--tags", "model,serve"] if name == "site.yml" else None,
                            **extra_vars)


def sts(kube, namespace):
    return kube.get("apps/v1", "StatefulSet", namespace, "vllm")


def test_upgrade_rolls_one_pod_at_a_time_then_a_broken_one_rolls_back(sandbox, kube, namespace):
    first = playbook(sandbox, "site.yml", namespace, **{"vllm_serve_max_model_len": 512})
    assert first.rc == 0, first.failures()
    before = sts(kube, namespace)
    assert before["status"]["readyReplicas"] == 3
    original = before["status"]["currentRevision"]

    # A good upgrade: new serving arguments.
    with PodRecorder(kube, namespace) as recorder:
        good = playbook(sandbox, "playbooks/upgrade.yml", namespace, vllm_serve_max_model_len=256)
    assert good.rc == 0, good.failures()
    rolled = good.task(ROLL_TASK)
    assert [r["pod"] for r in rolled["replicas"]] == ["vllm-2", "vllm-1", "vllm-0"]
    # Each new pod was asked, through the API, before the next was touched.
    assert all(r["check"]["models"]["ids"] == ["tiny-chat"] for r in rolled["replicas"])
    after = sts(kube, namespace)
    new = after["status"]["updateRevision"]
    assert new != original and after["status"]["currentRevision"] == new
    assert after["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 0
    pods = kube.list("v1", "Pod", namespace, label_selector="app.kubernetes.io/instance=vllm")
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == {new}
    assert all("256" in p["spec"]["containers"][0]["args"] for p in pods)
    # Never more than one pod out of service at a time.
    assert recorder.states, "the watch saw no change"
    assert max(sum(1 for s in state.values() if not s["ready"] or s["deleting"]) for state in recorder.states) == 1

    # The same again changes nothing.
    again = playbook(sandbox, "playbooks/upgrade.yml", namespace, vllm_serve_max_model_len=256)
    assert again.rc == 0, again.failures()
    assert again.changed() == 0, [t["task"]["name"] for t in again.tasks()
                                  if any(h.get("changed") for h in t["hosts"].values())]

    # A broken upgrade: the new pods never become Ready.
    serving = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
    with PodRecorder(kube, namespace) as recorder:
        broken = playbook(sandbox, "playbooks/upgrade.yml", namespace, vllm_serve_max_model_len=256,
                          vllm_serve_wait_timeout=20,
                          vllm_serve_pod_labels={"sandbox.inferops.io/fail": "readiness"})
    assert broken.rc != 0
    failed = broken.task(ROLL_TASK)
    assert failed["failed"] is True
    assert failed["failed_pod"]["pod"] == "vllm-2"
    assert any(d["cause"] == "ProbeFailed" for d in failed["failed_pod"]["diagnosis"]), failed["failed_pod"]
    assert failed["rolled_back"] is True
    assert "upgrade stopped at pod vllm-2" in failed["msg"] and "Rolled back to revision " + new in failed["msg"]
    assert [r["pod"] for r in failed["restored"]] == ["vllm-0", "vllm-1", "vllm-2"]
    assert all(r["check"]["models"]["ids"] == ["tiny-chat"] for r in failed["restored"])
    # The pods not yet rolled kept serving throughout: never deleted, never not Ready.
    for state in recorder.states:
        for name in ("vllm-0", "vllm-1"):
            assert state[name]["uid"] == serving[name] and state[name]["ready"] and not state[name]["deleting"], state
    # Only vllm-2 ever ran the broken revision.
    broken_revisions = {s["revision"] for state in recorder.states for s in state.values()} - {new}
    assert len(broken_revisions) == 1
    assert {n for state in recorder.states for n, s in state.items() if s["revision"] in broken_revisions} == {"vllm-2"}
    # Restored: every pod Ready on the revision before, none carrying the broken template.
    restored = sts(kube, namespace)
    assert restored["status"]["currentRevision"] == restored["status"]["updateRevision"] == new
    assert restored["status"]["readyReplicas"] == 3
    assert "sandbox.inferops.io/fail" not in restored["spec"]["template"]["metadata"]["labels"]
    pods = kube.list("v1", "Pod", namespace, label_selector="app.kubernetes.io/instance=vllm")
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == {new}
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods if p["metadata"]["name"] != "vllm-2"} \
        == {k: v for k, v in serving.items() if k != "vllm-2"}

    # A new model revision into the folder the running pods read is refused
    # before anything is fetched or touched.
    version = restored["metadata"]["resourceVersion"]
    jobs = kube.list("batch/v1", "Job", namespace)
    overwrite = playbook(sandbox, "playbooks/upgrade.yml", namespace, vllm_serve_max_model_len=256,
                         model_store_revision="v2")
    assert overwrite.rc != 0
    refusal = overwrite.task("Refuse a new model revision into the folder the running pods read")["msg"]
    assert "model_store_revision v2 would be fetched into /models/tiny-chat" in refusal
    assert "tiny-chat@v2" in refusal
    assert sts(kube, namespace)["metadata"]["resourceVersion"] == version
    assert kube.list("batch/v1", "Job", namespace) == jobs


def test_a_fix_rolls_out_over_a_broken_deployment(sandbox, kube, namespace):
    """Each step waits for its own pod only: pods of the broken revision that
    are still there do not hold the fix back (or roll it back)."""
    broken = playbook(sandbox, "site.yml", namespace, vllm_serve_replicas=2, vllm_serve_wait_timeout=20,
                      vllm_serve_pod_labels={"sandbox.inferops.io/fail": "readiness"})
    assert broken.rc != 0
    assert broken.task("inferops.vllm.vllm_serve : Wait for the rollout")["failed"] is True
    assert sts(kube, namespace)["status"].get("readyReplicas", 0) == 0

    fixed = playbook(sandbox, "site.yml", namespace, vllm_serve_replicas=2)
    assert fixed.rc == 0, fixed.failures()
    rolled = fixed.task(ROLL_TASK)
    assert [r["pod"] for r in rolled["replicas"]] == ["vllm-1", "vllm-0"] and rolled["rolled_back"] is False
    after = sts(kube, namespace)
    assert after["status"]["readyReplicas"] == 2
    assert after["status"]["currentRevision"] == after["status"]["updateRevision"]
    assert "sandbox.inferops.io/fail" not in after["spec"]["template"]["metadata"]["labels"]
