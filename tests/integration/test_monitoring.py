"""The monitoring objects vllm_serve adds, accepted by a real API server
against the Prometheus Operator's own CRD schemas (v0.85.0, as its project
ships them: hack/sandbox crds), and refused before anything is applied when
the cluster does not serve their kind or the schema says no.

It needs nothing another file set up, and leaves nothing behind: the pods are
placed by the label the fresh sandbox's GPU nodes carry (GPU feature
discovery's; the GPU stage that puts gpu=on does not run here), and the CRDs
its second test installs are removed when the file is done."""

from __future__ import annotations

import json
import uuid

import pytest
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import wait_until

from support.ansible import sandbox_playbook
from support.k8s import cluster_state, changed_between
from support.sandbox import sandbox_cmd

from ansible_collections.inferops.vllm.plugins.module_utils.serving import _monitoring as mon

pytestmark = pytest.mark.integration
MONITORING = {"vllm_serve_service_monitor": True, "vllm_serve_prometheus_rule": True,
              "vllm_serve_grafana_dashboard": True, "vllm_serve_monitoring_labels": {"release": "kube-prometheus-stack"}}


CRDS = [f"{plural}.monitoring.coreos.com" for plural in ("servicemonitors", "podmonitors", "prometheusrules")]
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

APPLY_TASK = "StatefulSet, Service, PodDisruptionBudget, Ingress, NetworkPolicy, monitoring and autoscaling"


def site(sandbox, namespace, **extra):
    return sandbox_playbook(sandbox, "site.yml", namespace, ["--tags", "model,serve"],
                            **{"vllm_serve_node_selector": {"nvidia.com/gpu.present": "true"}, **extra})


def installed_crds(kube) -> set[str]:
    return {c["metadata"]["name"] for c in kube.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")} \
        & set(CRDS)


@pytest.fixture(scope="module", autouse=True)
def operator_crds_removed_after(kube):
    """The Prometheus Operator's CRDs as a fresh sandbox has them (none), and
    again after this file: the ones it installed are deleted, and waited for
    until the API server no longer serves them."""
    there = installed_crds(kube)
    yield there
    made = installed_crds(kube) - there
    for name in made:
        kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name, missing_ok=True)
    wait_until(kube.api, CRD_PATH, lambda crds: not {c["metadata"]["name"] for c in crds} & made, 120)


@pytest.fixture
def site_namespace(kube):
    name = f"t-monitoring-{uuid.uuid4().hex[:5]}"
    yield name
    kube.delete("v1", "Namespace", None, name, missing_ok=True)


def test_without_the_crds_the_role_stops_before_applying_anything(
        sandbox, kube, site_namespace, operator_crds_removed_after):
    assert not operator_crds_removed_after, (
        f"the sandbox serves {sorted(operator_crds_removed_after)} already, which a fresh one does not: an earlier "
        "test file left them (the sandbox's state check names it)")
    deployed = site(sandbox, site_namespace)
    assert deployed.rc == 0, deployed.failures()
    before = cluster_state(kube)
    refused = site(sandbox, site_namespace, **MONITORING)
    assert refused.rc != 0
    message = refused.task(APPLY_TASK)["msg"]
    assert "ServiceMonitor/vllm: the cluster does not serve monitoring.coreos.com/v1/ServiceMonitor: install the " \
        "Prometheus Operator's CRDs, or turn that option off" in message, message
    assert "PrometheusRule/vllm: the cluster does not serve" in message and "nothing was applied" in message
    assert changed_between(before, cluster_state(kube)) == []


def test_servicemonitor_rule_and_dashboard_accepted_against_the_operators_schemas(sandbox, kube, site_namespace):
    installed = sandbox_cmd("crds", "prometheus-operator", state_dir=sandbox.state_dir, check=False)
    assert installed.returncode == 0, installed.stdout
    first = site(sandbox, site_namespace, **MONITORING)
    assert first.rc == 0, first.failures()

    monitor = kube.get("monitoring.coreos.com/v1", "ServiceMonitor", site_namespace, "vllm")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    # It selects the Service, by the Service's own labels, on a port the Service has.
    service = kube.get("v1", "Service", site_namespace, "vllm")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "http" in {p["name"] for p in service["spec"]["ports"]}

    rule = kube.get("monitoring.coreos.com/v1", "PrometheusRule", site_namespace, "vllm")
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert set(alerts) == {"VLLMKVCacheNearlyFull", "VLLMRequestsWaiting", "VLLMRestarting", "VLLMServerErrors",
                           "VLLMEndpointDown"}
    assert f'namespace="{site_namespace}", job="vllm"' in alerts["VLLMRequestsWaiting"]["expr"]

    board = kube.get("v1", "ConfigMap", site_namespace, "vllm-dashboard")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(board["data"][f"vllm-{site_namespace}-vllm.json"])["panels"]
    read = set().union(*(mon.series_names(t["expr"]) for p in panels for t in p["targets"]))
    assert {"vllm:time_to_first_token_seconds_bucket", "vllm:kv_cache_usage_perc"} <= read

    again = site(sandbox, site_namespace, **MONITORING)
    assert again.rc == 0 and again.changed() == 0, again.failures()

    # A value the schema refuses (the ServiceMonitor's interval is a Prometheus duration):
    # the dry run says so, and nothing is applied.
    before = cluster_state(kube)
    bad = site(sandbox, site_namespace, **MONITORING, vllm_serve_scrape_interval="15 seconds", vllm_serve_max_num_seqs=17)
    assert bad.rc != 0
    message = bad.task(APPLY_TASK)["msg"]
    assert "the API server refused, in a dry run, ServiceMonitor/vllm: " in message, message
    assert "spec.endpoints[0].interval" in message and "Nothing was applied" in message, message
    assert changed_between(before, cluster_state(kube)) == []
