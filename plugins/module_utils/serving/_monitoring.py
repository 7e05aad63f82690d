# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the Prometheus Operator and Grafana need to watch a vLLM
StatefulSet: a ServiceMonitor for its Service's /metrics, a PrometheusRule
of alerts and a Grafana dashboard (a ConfigMap Grafana's dashboard sidecar
picks up by label). Plain dicts; no API calls here.

Every query names series vLLM exports, with 0.33's names
(vllm/v1/metrics/loggers.py at v0.33.0: counters carry ``_total``,
histograms are read as ``_bucket``; ``vllm:kv_cache_usage_perc`` is a 0-1
fraction; there is no ``vllm:gpu_cache_usage_perc`` and no
``vllm:time_per_output_token_seconds``), or its API server's HTTP metrics
(prometheus-fastapi-instrumentator: ``http_requests_total`` with the status
grouped as ``5xx``). Those are checked against the /metrics recorded from a
real vLLM (tests/data/real-vllm/http/metrics.json). Three series come from
elsewhere, named in EXTERNAL_SERIES: Prometheus' own ``up``,
kube-state-metrics' restart counter and GPU memory, which vLLM does not
export (NVIDIA dcgm-exporter's framebuffer gauge)."""

from __future__ import annotations

import re

# Series the rules and the dashboard read that vLLM does not export, and who does.
EXTERNAL_SERIES = {
    "up": "Prometheus, for every scrape target",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
    "DCGM_FI_DEV_FB_USED": "NVIDIA dcgm-exporter (GPU framebuffer used, MiB)",
}
# The Grafana dashboard sidecar's default label (grafana helm chart:
# sidecar.dashboards.label grafana_dashboard, labelValue "1").
DASHBOARD_LABELS = {"grafana_dashboard": "1"}


def selector(namespace: str, job: str) -> str:
    """The scrape's own labels: a ServiceMonitor's targets carry the
    namespace and, by default, job = the Service's name."""
    return f'namespace="{namespace}", job="{job}"'


def pod_pattern(name: str) -> str:
    """The StatefulSet's pods, and a group's workers (<name>-rank<r>-<i>,
    docs/multi-node.md), as a PromQL regex (anchored at both ends)."""
    return f"{re.escape(name)}(-rank[0-9]+)?-[0-9]+"


def _q(expr: str, sel: str) -> str:
    return expr.replace("SEL", sel)


def alert_rules(name: str, namespace: str, kv_cache_usage: float, waiting_requests: int,
                error_ratio: float) -> list[dict]:
    """Alerts on what a user of the service feels: a KV cache full for
    minutes (requests queue or get preempted), requests waiting, restarts,
    server errors, the endpoint down."""
    sel = selector(namespace, name)
    pods = f'namespace="{namespace}", pod=~"{pod_pattern(name)}"'
    return [
        {"alert": "VLLMKVCacheNearlyFull",
         "expr": _q(f"max by (namespace, pod) (vllm:kv_cache_usage_perc{{SEL}}) > {kv_cache_usage:g}", sel),
         "for": "10m", "labels": {"severity": "warning"},
         "annotations": {"summary": f"vLLM {namespace}/{name}: KV cache over {kv_cache_usage:.0%} for 10 minutes",
                         "description": "Requests wait or are preempted for cache room: lower max_num_seqs or "
                                        "max_model_len, or add replicas."}},
        {"alert": "VLLMRequestsWaiting",
         "expr": _q(f"sum(vllm:num_requests_waiting{{SEL}}) > {waiting_requests}", sel),
         "for": "5m", "labels": {"severity": "warning"},
         "annotations": {"summary": f"vLLM {namespace}/{name}: more than {waiting_requests} requests waiting "
                                    "for 5 minutes",
                         "description": "The replicas cannot keep up: add replicas (playbooks/scale.yml)."}},
        {"alert": "VLLMRestarting",
         "expr": f"increase(kube_pod_container_status_restarts_total{{{pods}}}[15m]) > 0",
         "for": "0m", "labels": {"severity": "warning"},
         "annotations": {"summary": f"vLLM {namespace}/{name}: a container restarted in the last 15 minutes",
                         "description": "Read its previous log (kubectl logs --previous): out of GPU memory, "
                                        "a failed health check, an engine error."}},
        {"alert": "VLLMServerErrors",
         "expr": _q(f'sum(rate(http_requests_total{{SEL, status="5xx"}}[5m])) '
                    f"/ sum(rate(http_requests_total{{SEL}}[5m])) > {error_ratio:g}", sel),
         "for": "5m", "labels": {"severity": "critical"},
         "annotations": {"summary": f"vLLM {namespace}/{name}: more than {error_ratio:.0%} of requests answered "
                                    "5xx for 5 minutes",
                         "description": "vLLM answers 500 when a request fails in the engine."}},
        {"alert": "VLLMEndpointDown",
         "expr": _q("up{SEL} == 0", sel),
         "for": "2m", "labels": {"severity": "critical"},
         "annotations": {"summary": f"vLLM {namespace}/{name}: /metrics of {{{{ $labels.pod }}}} not answering "
                                    "for 2 minutes",
                         "description": "The server is down or not reachable from Prometheus (a NetworkPolicy "
                                        "must let Prometheus' namespace in)."}},
    ]


def _quantiles(histogram: str) -> list[tuple[str, str]]:
    return [(f"p{q}", f"histogram_quantile(0.{q}, sum by (le) (rate({histogram}_bucket{{SEL}}[5m])))")
            for q in (50, 95, 99)]


# (title, unit, [(legend, expr)]) in reading order: load, latency, capacity.
PANELS = (
    ("Generation throughput", "tok/s", [
        ("generated", "sum(rate(vllm:generation_tokens_total{SEL}[5m]))"),
        ("prompt", "sum(rate(vllm:prompt_tokens_total{SEL}[5m]))")]),
    ("Requests finished", "reqps", [
        ("{{finished_reason}}", "sum by (finished_reason) (rate(vllm:request_success_total{SEL}[5m]))")]),
    ("Time to first token", "s", _quantiles("vllm:time_to_first_token_seconds")),
    ("Inter-token latency", "s", _quantiles("vllm:inter_token_latency_seconds")),
    ("End-to-end request latency", "s", _quantiles("vllm:e2e_request_latency_seconds")),
    ("Requests running and waiting", "short", [
        ("running", "sum(vllm:num_requests_running{SEL})"),
        ("waiting", "sum(vllm:num_requests_waiting{SEL})")]),
    ("KV cache usage", "percentunit", [
        ("{{pod}}", "max by (pod) (vllm:kv_cache_usage_perc{SEL})")]),
    ("Preemptions", "short", [
        ("{{pod}}", "sum by (pod) (rate(vllm:num_preemptions_total{SEL}[5m]))")]),
    ("GPU memory used (dcgm-exporter)", "decmbytes", [
        ("{{pod}}", 'sum by (pod) (DCGM_FI_DEV_FB_USED{namespace="NAMESPACE", pod=~"POD"})')]),
)


# The fleet router's (plugins/module_utils/router/_metrics.py): what it
# answered, by model and status; retries; ready replicas; time to the
# replicas' headers; requests in flight per replica.
ROUTER_PANELS = (
    ("Requests by model", "reqps", [
        ("{{model}} {{code}}", "sum by (model, code) (rate(inferops_router_requests_total{SEL}[5m]))")]),
    ("Answered by the router itself (404, 502, 503)", "reqps", [
        ("{{model}} {{code}}", 'sum by (model, code) (rate(inferops_router_requests_total{SEL, code=~"404|502|503"}[5m]))')]),
    ("Time to the replica's headers", "s", [
        (legend, expr.replace("sum by (le)", "sum by (le, model)"))
        for legend, expr in _quantiles("inferops_router_response_seconds")]),
    ("Retries to another replica", "reqps", [
        ("{{model}}", "sum by (model) (rate(inferops_router_retries_total{SEL}[5m]))")]),
    ("Ready replicas", "short", [("{{model}}", "max by (model) (inferops_router_replicas{SEL})")]),
    ("Requests in flight per replica", "short", [
        ("{{model}} {{replica}}", "sum by (model, replica) (inferops_router_in_flight{SEL})")]),
)


def dashboard(name: str, namespace: str, panel_specs=PANELS, title: str = "vLLM", uid: str = "vllm") -> dict:
    """A Grafana dashboard (JSON model, schemaVersion 39) of the panels above,
    two a row, each a timeseries on the default Prometheus data source."""
    sel = selector(namespace, name)
    panels = []
    for i, (title_, unit, targets) in enumerate(panel_specs):
        panels.append({
            "id": i + 1, "type": "timeseries", "title": title_,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
            "targets": [{"refId": chr(ord("A") + j), "legendFormat": legend,
                         "expr": _q(expr, sel).replace("NAMESPACE", namespace)
                         .replace("POD", pod_pattern(name))}
                        for j, (legend, expr) in enumerate(targets)],
        })
    return {"title": f"{title} {namespace}/{name}", "uid": f"{uid}-{namespace}-{name}"[:40], "schemaVersion": 39,
            "tags": ["vllm", "inferops"], "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
            "editable": True, "panels": panels}


def router_dashboard(name: str, namespace: str) -> dict:
    """The fleet router's dashboard: ROUTER_PANELS on its ServiceMonitor's series."""
    return dashboard(name, namespace, ROUTER_PANELS, title="inferops router", uid="router")


def series_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (what precedes a
    selector's brace), without PromQL's function names."""
    return set(re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\{", expr))


def queries(name: str, namespace: str) -> list[str]:
    """Every expression the rules and the dashboard hold."""
    rules = alert_rules(name, namespace, 0.9, 10, 0.05)
    return [r["expr"] for r in rules] + [t["expr"] for p in dashboard(name, namespace)["panels"] for t in p["targets"]]


def objects(name: str, namespace: str, labels: dict, selector_labels: dict, monitoring_labels: dict,
            dashboard_labels: dict, interval: str, kv_cache_usage: float, waiting_requests: int,
            error_ratio: float) -> dict:
    """The ServiceMonitor, the PrometheusRule and the dashboard ConfigMap."""
    import json

    meta = {"name": name, "namespace": namespace, "labels": {**labels, **monitoring_labels}}
    return {
        "servicemonitor": {
            "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": meta,
            "spec": {"selector": {"matchLabels": dict(selector_labels)},
                     "namespaceSelector": {"matchNames": [namespace]},
                     # /metrics needs no API key (vLLM guards /v1 and a few other prefixes only).
                     "endpoints": [{"port": "http", "path": "/metrics", "interval": interval}]}},
        "prometheusrule": {
            "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": meta,
            "spec": {"groups": [{"name": f"vllm-{name}", "rules": alert_rules(
                name, namespace, kv_cache_usage, waiting_requests, error_ratio)}]}},
        "dashboard": {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"{name}-dashboard", "namespace": namespace,
                         "labels": {**labels, **dashboard_labels}},
            "data": {f"vllm-{namespace}-{name}.json": json.dumps(dashboard(name, namespace), indent=1)}},
    }
