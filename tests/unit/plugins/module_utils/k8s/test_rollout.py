from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _rollout as rollout


def sts(generation=2, observed=2, replicas=2, ready=2, updated=2, current="r1", update="r1", partition=None, strategy="RollingUpdate"):
    spec = {"replicas": replicas, "updateStrategy": {"type": strategy}}
    if partition is not None:
        spec["updateStrategy"]["rollingUpdate"] = {"partition": partition}
    return {"metadata": {"name": "s", "generation": generation}, "spec": spec,
            "status": {"observedGeneration": observed, "readyReplicas": ready, "updatedReplicas": updated,
                       "currentRevision": current, "updateRevision": update}}


def test_statefulset_rules():
    assert rollout.statefulset(sts()).done
    assert not rollout.statefulset(sts(observed=1)).done  # new spec not yet seen
    assert "1 of 2 pods" in rollout.statefulset(sts(ready=1)).message
    assert not rollout.statefulset(sts(update="r2")).done  # rolling update under way
    assert rollout.statefulset(sts(update="r2", partition=1, updated=1)).done  # partitioned: only 1 of 2 must update
    assert not rollout.statefulset(sts(update="r2", partition=1, updated=0)).done
    assert rollout.statefulset(sts(update="r2", strategy="OnDelete")).done


def dep(generation=1, observed=1, replicas=3, updated=3, total=3, available=3, progressing=None):
    conditions = [{"type": "Progressing", "reason": progressing}] if progressing else []
    return {"metadata": {"name": "d", "generation": generation}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total,
                       "availableReplicas": available, "conditions": conditions}}


def test_deployment_rules():
    assert rollout.deployment(dep()).done
    assert "updated replicas" in rollout.deployment(dep(updated=1)).message
    assert "pending termination" in rollout.deployment(dep(total=4)).message
    assert not rollout.deployment(dep(available=2)).done
    status = rollout.deployment(dep(progressing="ProgressDeadlineExceeded"))
    assert status.failed and status.reason == "ProgressDeadlineExceeded"


def test_daemonset_rules():
    ds = {"metadata": {"name": "ds", "generation": 1},
          "status": {"observedGeneration": 1, "desiredNumberScheduled": 4, "updatedNumberScheduled": 4, "numberAvailable": 3}}
    assert "3 of 4" in rollout.daemonset(ds).message
    ds["status"]["numberAvailable"] = 4
    assert rollout.daemonset(ds).done


def test_job_rules():
    job = {"metadata": {"name": "j"}, "spec": {"completions": 1}, "status": {"active": 1}}
    assert not rollout.job(job).done and not rollout.job(job).failed
    job["status"]["conditions"] = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                    "message": "Job has reached the specified backoff limit"}]
    status = rollout.job(job)
    assert status.failed and status.reason == "BackoffLimitExceeded"
    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    assert rollout.job(job).done


def test_claim_rules():
    pvc = {"metadata": {"name": "models"}, "spec": {"volumeName": "pv-1"}, "status": {"phase": "Pending"}}
    assert not rollout.claim(pvc).done
    pvc["status"]["phase"] = "Bound"
    assert rollout.claim(pvc).done and "pv-1" in rollout.claim(pvc).message
    pvc["status"]["phase"] = "Lost"
    assert rollout.claim(pvc).failed
