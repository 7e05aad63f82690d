# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vllm_serve role's names and numbers, checked before anything is read
or changed: every problem at once, each naming its variable and the fix.
(Types are the argument spec's; these are the rules it cannot say.)"""

from __future__ import annotations

import re

NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# A pod's controller-revision-hash label is <StatefulSet>-<10 characters>, at most 63.
STATEFULSET_MAX = 52
STATEFULSET = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")
SECRET = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def problems(v: dict) -> list[str]:
    """``v``: the role's variables without their prefix (name, namespace,
    served_model_name, replicas, port, wait_timeout, network_policy_enabled,
    network_policy_from)."""
    found = []
    if "served_model_name" in v and not str(v["served_model_name"] or "").strip():
        found.append("vllm_serve_served_model_name is empty: give the name clients will ask for (the model id of "
                     "/v1/models)")
    if not NAMESPACE.match(str(v.get("namespace", ""))):
        found.append(f"vllm_serve_namespace {v.get('namespace')} is not a namespace name: lower-case letters, digits "
                     "and -")
    if not STATEFULSET.match(str(v.get("name", ""))):
        found.append(f"vllm_serve_name {v.get('name')} is not a StatefulSet name: lower-case letters, digits and -, "
                     f"{STATEFULSET_MAX} at most")
    if "replicas" in v and int(v["replicas"]) < 0:
        found.append(f"vllm_serve_replicas {v['replicas']} is negative")
    if "port" in v and not 1 <= int(v["port"]) <= 65535:
        found.append(f"vllm_serve_port {v['port']} is outside 1-65535")
    if "wait_timeout" in v and int(v["wait_timeout"]) <= 0:
        found.append("vllm_serve_wait_timeout must be more than 0 seconds")
    if "api_key_secret" in v and not SECRET.match(str(v["api_key_secret"])):
        found.append(f"vllm_serve_api_key_secret {v['api_key_secret']} is not a Secret name: lower-case letters, "
                     "digits, - and .")
    if v.get("network_policy_enabled") and not v.get("network_policy_from"):
        found.append("vllm_serve_network_policy_enabled is true but vllm_serve_network_policy_from is empty: the "
                     "policy would let no client in. Name the namespaces (and optionally pod labels) of the clients, "
                     "e.g. [{namespace: ingress-nginx}, {namespace: apps, pod_labels: {app: chat}}]")
    cut_off = [what for what, on in (("vllm_serve_ingress_enabled (the Ingress controller)", v.get("ingress_enabled")),
                                     ("vllm_serve_service_monitor (Prometheus)", v.get("service_monitor")),
                                     ("vllm_serve_autoscaling (Prometheus' metrics)", v.get("autoscaling"))) if on]
    if v.get("router") and cut_off and not v.get("network_policy_user_from"):
        found.append("with the fleet's router on (vllm_router_enabled), the model's NetworkPolicy admits only the "
                     f"router's pods, which would cut off {', '.join(cut_off)}: name their namespaces in "
                     "vllm_serve_network_policy_from (e.g. [{namespace: monitoring}]), or turn them off")
    return found


def rank_names(name: str, nodes: int) -> list[str]:
    """The StatefulSets of a replica of ``nodes`` pods (one a node): rank 0
    is ``name`` (it serves the API), rank r is ``name-rank<r>``."""
    return [name] + [f"{name}-rank{r}" for r in range(1, int(nodes))]


def rank_problems(name: str, nodes: int) -> list[str]:
    last = rank_names(name, nodes)[-1]
    if len(last) <= STATEFULSET_MAX:
        return []
    return [f"vllm_serve_name {name} is too long for a group of {nodes} pods: its StatefulSet {last} would pass "
            f"{STATEFULSET_MAX} characters. Choose a name of at most {STATEFULSET_MAX - (len(last) - len(name))} "
            "characters"]


def scale_problems(ranks: list[dict], scaled_objects: list[dict], name: str, namespace: str) -> list[str]:
    """Why a replica count cannot be applied now: no StatefulSet, KEDA owns
    the count, or a rollout is under way (``ranks``: the service's
    StatefulSets, rank 0 first)."""
    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._rollout import mid_rollout

    where = f"{namespace}/{name}"
    if not ranks or ranks[0]["metadata"]["name"] != name:
        return [f"StatefulSet {name} does not exist in namespace {namespace} (vllm_serve_name, vllm_serve_namespace): "
                "there is nothing to scale; deploy it first (site.yml)"]
    found = []
    if scaled_objects:
        found.append(f"StatefulSet {where} is scaled by KEDA (ScaledObject {scaled_objects[0]['metadata']['name']}, "
                     "vllm_serve_autoscaling): a count set here would be undone at KEDA's next poll. Change "
                     "vllm_serve_autoscaling_min_replicas / _max_replicas and run site.yml, or turn autoscaling off")
    for sts in ranks:
        if mid_rollout(sts):
            status = sts.get("status") or {}
            found.append(f"StatefulSet {namespace}/{sts['metadata']['name']} is in the middle of a rollout (revision "
                         f"{status.get('currentRevision', '?')} to {status.get('updateRevision', '?')}): finish it "
                         "first (playbooks/upgrade.yml), so that new replicas start on one known revision")
    return found


def model_subpath(sts: dict, container: str = "vllm", volume: str = "models") -> str:
    """The model folder a running StatefulSet's vLLM reads, relative to its
    model volume's mount: the first argument of the container (the model
    path ``vllm serve`` takes) under the mount path; empty when it is not
    under it."""
    spec = (((sts.get("spec") or {}).get("template") or {}).get("spec") or {})
    main = next((c for c in spec.get("containers") or [] if c.get("name") == container), {})
    mount = next((m.get("mountPath") for m in main.get("volumeMounts") or [] if m.get("name") == volume), "/models")
    mount = mount.rstrip("/") + "/"
    path = (main.get("args") or [""])[0]
    return path[len(mount):].strip("/") if path.startswith(mount) else ""
