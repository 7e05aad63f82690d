"""Which claims are a deployment's StatefulSets' (every rank of a group), and
which volumes the teardown names: by labels and the controller's naming,
never by a name alone."""

from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._set_claims import model_volumes, set_claims

SELECTOR = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "vllm"}
RANK = "inferops.io/node-rank"


def claim(name, labels=None, uid=None, owners=None):
    meta = {"name": name, "uid": uid or f"uid-{name}", "labels": labels}
    if owners:
        meta["ownerReferences"] = owners
    return {"metadata": meta}


def names(claims):
    return [c["metadata"]["name"] for c in claims]


def test_every_rank_of_a_group_and_a_plain_set():
    claims = [claim("models-vllm-0", {**SELECTOR, RANK: "0"}), claim("models-vllm-rank1-0", {**SELECTOR, RANK: "1"}),
              claim("models-vllm-rank1-1", {**SELECTOR, RANK: "1"}), claim("models-vllm-3", SELECTOR)]
    assert names(set_claims(claims, "vllm", SELECTOR, RANK)) == [
        "models-vllm-0", "models-vllm-3", "models-vllm-rank1-0", "models-vllm-rank1-1"]


def test_a_claim_without_the_labels_or_named_otherwise_is_not_ours():
    claims = [claim("models-vllm-1"),  # the name fits, no labels
              claim("models-vllm-rank1-0", SELECTOR),  # a worker's name without its rank label
              claim("models-vllm-0", {**SELECTOR, RANK: "1"}),  # rank 1's labels, rank 0's name
              claim("models-vllm-0-copy", SELECTOR), claim("data-vllm-0", SELECTOR),
              claim("models-vllm-01", SELECTOR),
              claim("models-vllm-0", {**SELECTOR, "app.kubernetes.io/instance": "other"}),
              claim("models-vllm-rank1-0", {**SELECTOR, RANK: "x"})]
    assert set_claims(claims, "vllm", SELECTOR, RANK) == []


def test_owner_references_must_be_the_set_or_its_pod():
    own = claim("models-vllm-rank1-0", {**SELECTOR, RANK: "1"}, owners=[{"kind": "StatefulSet", "name": "vllm-rank1"}])
    pod = claim("models-vllm-rank1-1", {**SELECTOR, RANK: "1"}, owners=[{"kind": "Pod", "name": "vllm-rank1-1"}])
    other = claim("models-vllm-0", SELECTOR, owners=[{"kind": "ConfigMap", "name": "x"}])
    assert names(set_claims([own, pod, other], "vllm", SELECTOR, RANK)) == ["models-vllm-rank1-0", "models-vllm-rank1-1"]


def pv(name, claim_name, uid, namespace="ns"):
    return {"metadata": {"name": name}, "spec": {"claimRef": {"namespace": namespace, "name": claim_name, "uid": uid}}}


def test_volumes_named_bound_to_ours_or_released_by_ours_never_a_live_claim_not_ours():
    ours = [claim("models-vllm-rank1-0", {**SELECTOR, RANK: "1"}, uid="u1")]
    theirs = claim("models-vllm-1", uid="u2")
    volumes = [pv("pv-a", "models-vllm-rank1-0", "u1"), pv("pv-b", "models-vllm-1", "u2"),
               pv("pv-c", "models-vllm-0", "gone"),  # an earlier teardown's
               pv("pv-d", "models-vllm-0", "gone", namespace="other"), pv("pv-e", "unrelated-0", "gone2"),
               {"metadata": {"name": "pv-f"}, "spec": {}}]
    found = model_volumes(volumes, "ns", ours + [theirs], ours, "vllm")
    assert [v["metadata"]["name"] for v in found] == ["pv-c", "pv-a"]
    # The shared claim by its name, when no per-replica set is asked about.
    shared = [pv("pv-s", "models-tiny-chat", "gone3"), pv("pv-c", "models-vllm-0", "gone")]
    assert [v["metadata"]["name"] for v in model_volumes(shared, "ns", [], [], "", shared="models-tiny-chat")] == ["pv-s"]
