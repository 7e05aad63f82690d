from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._diagnosis import (
    diagnose_pod, diagnose_workload, final_findings)
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._wait import selector_string


def pod(name="p-0", statuses=None, conditions=None, volumes=None):
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.12.0"}], "volumes": volumes or []},
            "status": {"containerStatuses": statuses or [], "conditions": conditions or []}}


def test_image_pull_names_the_image():
    p = pod(statuses=[{"name": "vllm", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling"}}}])
    [f] = diagnose_pod(p, [], {})
    assert f.cause == "ImagePullBackOff" and f.image == "vllm/vllm-openai:v0.12.0" and f.object == "pod/ns/p-0"


def test_crashloop_names_container_restarts_and_exit_code():
    p = pod(statuses=[{"name": "vllm", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                       "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}])
    [f] = diagnose_pod(p, [], {})
    assert (f.cause, f.container, f.restart_count, f.last_exit_code) == ("CrashLoopBackOff", "vllm", 4, 1)


def test_unschedulable_carries_scheduler_message():
    msg = "0/5 nodes are available: 4 Insufficient nvidia.com/gpu, 1 node(s) had untolerated taint."
    p = pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}])
    [f] = diagnose_pod(p, [], {})
    assert f.cause == "Unschedulable" and f.message == msg


def test_pending_claim_is_the_cause_not_unschedulable():
    p = pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                         "message": "pod has unbound immediate PersistentVolumeClaims"}],
            volumes=[{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}])
    claim = {"metadata": {"name": "models", "namespace": "ns"}, "spec": {"storageClassName": "fast"}, "status": {"phase": "Pending"}}
    ev = {"involvedObject": {"kind": "PersistentVolumeClaim", "name": "models"}, "reason": "ProvisioningFailed",
          "message": "storageclass.storage.k8s.io \"fast\" not found", "lastTimestamp": "2026-01-01T00:00:00Z"}
    [f] = diagnose_pod(p, [ev], {"models": claim})
    assert f.cause == "PVCPending" and f.claim == "models" and "not found" in f.message


def test_probe_failure_from_events():
    ev = {"involvedObject": {"kind": "Pod", "name": "p-0"}, "reason": "Unhealthy", "type": "Warning",
          "message": "Readiness probe failed: HTTP probe failed with statuscode: 503"}
    [f] = diagnose_pod(pod(), [ev], {})
    assert f.cause == "ProbeFailed" and "Readiness probe failed" in f.message


def test_job_backoff_limit_and_dedup_across_pods():
    job = {"metadata": {"name": "fetch", "namespace": "ns"},
           "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                      "message": "Job has reached the specified backoff limit"}]}}
    msg = "0/5 nodes are available: 5 Insufficient nvidia.com/gpu."
    pods = [pod(f"p-{i}", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}])
            for i in range(3)]
    causes = [f.cause for f in diagnose_workload("Job", job, pods, [], {})]
    assert causes == ["BackoffLimitExceeded", "Unschedulable"]


def test_selector_string():
    sel = {"matchLabels": {"b": "2", "a": "1"},
           "matchExpressions": [{"key": "c", "operator": "In", "values": ["x", "y"]}, {"key": "d", "operator": "DoesNotExist"}]}
    assert selector_string(sel) == "a=1,b=2,c in (x,y),!d"


def test_unschedulable_is_not_final_while_a_pod_of_the_workload_terminates():
    msg = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
    pending = pod("vllm-1", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                         "message": msg}])
    leaving = pod("vllm-0")
    leaving["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    findings = diagnose_workload("Deployment", {"metadata": {"name": "vllm", "namespace": "ns"}}, [pending, leaving],
                                 [], {})
    causes = ("Unschedulable", "ImagePullBackOff")
    assert [f.cause for f in findings] == ["Unschedulable"]
    assert final_findings(findings, [pending, leaving], causes) == []
    # Once it has gone, the pending pod's Unschedulable is final again.
    assert [f.cause for f in final_findings(findings, [pending], causes)] == ["Unschedulable"]
    # Other causes stay final whatever terminates, and only the causes asked for count.
    pulling = pod("vllm-2", statuses=[{"name": "vllm", "state": {"waiting": {"reason": "ImagePullBackOff"}}}])
    both = diagnose_workload("Deployment", {"metadata": {"name": "vllm", "namespace": "ns"}},
                             [pending, leaving, pulling], [], {})
    assert [f.cause for f in final_findings(both, [pending, leaving, pulling], causes)] == ["ImagePullBackOff"]
    assert final_findings(both, [pending, pulling], ("ImagePullBackOff",))[0].cause == "ImagePullBackOff"


def running_not_ready(node="gpu-node-1"):
    p = pod(statuses=[{"name": "vllm", "ready": False, "state": {"running": {"startedAt": "2026-11-26T10:00:00Z"}}}],
            conditions=[{"type": "Ready", "status": "False"}])
    p["spec"]["nodeName"] = node
    return p


def test_not_ready_without_any_reason_says_so():
    [f] = diagnose_pod(running_not_ready(), [], {}, {"gpu-node-1": {"status": {"conditions": [
        {"type": "Ready", "status": "True"}]}}})
    assert f.cause == "NotReady" and "no reason from its containers and no event" in f.message
    assert "containers running: vllm; node gpu-node-1" in f.message


def test_not_ready_because_its_node_is_names_the_node():
    node = {"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                                       "message": "Kubelet stopped posting node status."}]}}
    [f] = diagnose_pod(running_not_ready(), [], {}, {"gpu-node-1": node})
    assert f.cause == "NodeNotReady"
    assert f.message.startswith("its node gpu-node-1 is not Ready (NodeStatusUnknown: Kubelet stopped posting")


def test_node_not_ready_event_is_named():
    event = {"involvedObject": {"kind": "Pod", "name": "p-0"}, "reason": "NodeNotReady", "message": "Node is not ready",
             "lastTimestamp": "2026-11-26T10:01:00Z"}
    [f] = diagnose_pod(running_not_ready(), [event], {})
    assert f.cause == "NodeNotReady" and f.message == "Node is not ready (node gpu-node-1)"


def test_a_ready_pod_has_no_finding():
    p = running_not_ready()
    p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert diagnose_pod(p, [], {}) == []


def test_unschedulable_because_the_pinned_node_is_not_ready_names_it():
    msg = "0/5 nodes are available: 1 node(s) had untolerated taint(s), 4 node(s) didn't match Pod's node affinity."
    p = pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}])
    p["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "gpu-node-3"}
    down = {"metadata": {"name": "gpu-node-3", "labels": {"kubernetes.io/hostname": "gpu-node-3"}},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                                       "message": "the kubelet stopped"}]}}
    other = {"metadata": {"name": "gpu-node-0", "labels": {"kubernetes.io/hostname": "gpu-node-0"}},
             "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
    unschedulable, not_ready = diagnose_pod(p, [], {}, {"gpu-node-3": down, "gpu-node-0": other})
    assert unschedulable.cause == "Unschedulable" and unschedulable.message == msg
    assert not_ready.cause == "NodeNotReady"
    assert not_ready.message == ("the node(s) its nodeSelector allows are not Ready: "
                                 "gpu-node-3 (KubeletNotReady: the kubelet stopped)")
    # Without a nodeSelector no node is blamed.
    del p["spec"]["nodeSelector"]
    assert [f.cause for f in diagnose_pod(p, [], {}, {"gpu-node-3": down})] == ["Unschedulable"]


def daemonset(desired=500, available=485):
    return {"kind": "DaemonSet", "metadata": {"name": "hami-device-plugin", "namespace": "kube-system"},
            "status": {"desiredNumberScheduled": desired, "numberAvailable": available}}


def ready_pod(name, node="gpu-node-0"):
    p = pod(name)
    p["spec"]["nodeName"] = node
    p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return p


def test_every_pod_ready_but_status_behind_says_the_controller_has_not_caught_up():
    # What a 500-node run once ended with: "485 of 500 updated pods are available" and diagnosis [].
    pods = [ready_pod(f"hami-device-plugin-{i}") for i in range(500)]
    [f] = diagnose_workload("DaemonSet", daemonset(), pods, [], {})
    assert f.cause == "Progressing" and f.object == "daemonset/kube-system/hami-device-plugin"
    assert f.message.startswith("500 of 500 pods Ready; its status counts 485 available of 500: the controller has "
                                "not caught up with its pods")


def test_pods_not_created_yet_and_not_placed_are_named():
    pods = [ready_pod("dp-a"), pod("dp-b")]  # dp-b: no node, no condition yet
    [f] = diagnose_workload("DaemonSet", daemonset(desired=4, available=1), pods, [], {})
    assert f.message == ("1 of 2 pods Ready; not placed on a node yet: dp-b; 4 nodes should run one, 2 pods exist: "
                         "the controller has not created the others yet; its status counts 1 available of 4")


def test_a_pod_with_a_reason_gets_its_own_finding_not_the_progress_one():
    event = {"involvedObject": {"kind": "Pod", "name": "p-0"}, "reason": "NodeNotReady", "message": "Node is not ready",
             "lastTimestamp": "2026-11-26T10:01:00Z"}
    findings = diagnose_workload("DaemonSet", daemonset(desired=1, available=0), [running_not_ready()], [event], {})
    assert [f.cause for f in findings] == ["NodeNotReady"]


FETCH_SAID = ('progress 0/0 bytes (0.0%) 0.0 MiB/s\n'
              '{"failed": true, "msg": "s3: no object under s3://models/no-such-prefix/ (bucket models): '
              'nothing to download"}')


def failed_job():
    return {"metadata": {"name": "fetch", "namespace": "ns"},
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                       "message": "Job has reached the specified backoff limit"}]}}


def test_a_failed_job_says_what_its_container_said_not_only_backoff_limit():
    """The Job controller deletes a failed Job's running pods: the runs the
    wait saw (their termination messages) are what is left to tell why."""
    runs = [{"pod": "fetch-abc", "container": "model-fetch", "exitCode": 1, "reason": "Error",
             "finishedAt": "2026-01-01T00:00:05Z", "message": FETCH_SAID}]
    [f] = diagnose_workload("Job", failed_job(), [], [], {}, failed_runs=runs)
    assert f.cause == "BackoffLimitExceeded"
    assert f.message == ("Job has reached the specified backoff limit; container 'model-fetch' of pod fetch-abc "
                         "exited with code 1: s3: no object under s3://models/no-such-prefix/ (bucket models): "
                         "nothing to download")
    assert f.log_tail == FETCH_SAID.splitlines()


def test_the_latest_failed_run_is_named_and_a_log_tail_stands_in_for_a_missing_message():
    runs = [{"pod": "a", "container": "c", "exitCode": 2, "reason": "Error", "finishedAt": "2026-01-01T00:00:01Z",
             "message": "old"},
            {"pod": "b", "container": "c", "exitCode": 1, "reason": "Error", "finishedAt": "2026-01-01T00:00:09Z",
             "log_tail": ["Traceback (most recent call last):", "FileNotFoundError: config.json"]}]
    [f] = diagnose_workload("Job", failed_job(), [], [], {}, failed_runs=runs)
    assert f.message.endswith("container 'c' of pod b exited with code 1: FileNotFoundError: config.json")


def test_failed_runs_read_from_pods_state_and_last_state():
    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._diagnosis import failed_runs

    p = pod(statuses=[{"name": "vllm", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                       "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "boom",
                                                    "finishedAt": "t1"}}}])
    never = pod("p-1", statuses=[{"name": "vllm", "restartCount": 0, "state": {"terminated": {
        "exitCode": 3, "reason": "Error", "finishedAt": "t2"}}}])
    ok = pod("p-2", statuses=[{"name": "vllm", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}])
    runs = failed_runs(p) + failed_runs(never) + failed_runs(ok)
    assert [(r["pod"], r["exitCode"], r["restartCount"], r.get("message")) for r in runs] == [
        ("p-0", 1, 1, "boom"), ("p-1", 3, 0, None)]


def test_a_crash_loop_says_what_the_crashed_run_said():
    p = pod(statuses=[{"name": "vllm", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                       "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                    "message": "INFO start\nValueError: no config.json in /models"}}}])
    [f] = diagnose_pod(p, [], {})
    assert f.message.endswith("last exit code 1 (Error): ValueError: no config.json in /models"), f.message


def test_a_scheduler_behind_on_an_existing_claim_is_not_final():
    """Right after a kube-apiserver restart the scheduler said "persistentvolumeclaim ... not found" of a claim that
    existed and was Bound (seen in the sandbox's outage test): waiting fixes it, so the wait must not stop early."""
    msg = '0/5 nodes are available: persistentvolumeclaim "models" not found. not found'
    p = pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}],
            volumes=[{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}])
    bound = {"metadata": {"name": "models", "namespace": "ns"}, "status": {"phase": "Bound"}}
    [f] = diagnose_pod(p, [], {"models": bound})
    assert f.cause == "SchedulerBehind" and f.claim == "models" and "retries" in f.message
    assert final_findings([f], [p], ("Unschedulable", "PVCMissing")) == []
    # A claim that is really missing stays the (final) cause.
    [missing] = diagnose_pod(p, [], {})
    assert missing.cause == "PVCMissing"
