"""The rolled_out filter: the roles skip a wait only when the object an
apply returned already says what the wait would check."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.vllm.plugins.filter.rolled_out import rolled_out


def sts(generation=2, observed=2, replicas=2, ready=2, updated=2, current="r1", update="r1"):
    return {"kind": "StatefulSet", "metadata": {"name": "vllm", "generation": generation},
            "spec": {"replicas": replicas, "updateStrategy": {"type": "RollingUpdate"}},
            "status": {"observedGeneration": observed, "replicas": replicas, "readyReplicas": ready,
                       "updatedReplicas": updated, "availableReplicas": ready, "currentReplicas": replicas,
                       "currentRevision": current, "updateRevision": update}}


def test_statefulset_with_every_pod_updated_and_ready_is_rolled_out():
    assert rolled_out(sts()) is True


@pytest.mark.parametrize("change", [
    {"generation": 3},            # the apply just changed the spec: not observed yet
    {"ready": 1},                 # a pod not Ready
    {"updated": 1, "update": "r2"},  # mid-rollout
])
def test_statefulset_not_done_still_waits(change):
    assert rolled_out(sts(**change)) is False


def test_job_claim_and_empty_values():
    job = {"kind": "Job", "metadata": {"name": "fetch"}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    failed = {"kind": "Job", "metadata": {"name": "fetch"}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    bound = {"kind": "PersistentVolumeClaim", "metadata": {"name": "models"}, "status": {"phase": "Bound"}}
    pending = {"kind": "PersistentVolumeClaim", "metadata": {"name": "models"}, "status": {"phase": "Pending"}}
    assert rolled_out(job) and rolled_out(bound)
    # A failed Job still goes to the wait: it reports the failure with its diagnosis.
    assert not rolled_out(failed) and not rolled_out(pending)
    # A skipped task's result, a kind the wait does not know, nothing.
    assert not rolled_out({}) and not rolled_out(None) and not rolled_out({"kind": "Service", "metadata": {"name": "x"}})
