"""The monitoring objects: every series a query reads is one a real vLLM
exported (its /metrics, recorded on the GPU machine), or one of the three
named external series; 0.33's names, none of the retired ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ansible_collections.inferops.vllm.plugins.module_utils.serving import _monitoring as mon

RECORDED = json.loads((Path(__file__).resolve().parents[4] / "data" / "real-vllm" / "http" / "metrics.json").read_text())


def exported() -> set[str]:
    """Series names as Prometheus stores them: a histogram also as _bucket."""
    names = set(RECORDED["other_metric_names"])
    for name, kind in RECORDED["vllm_metric_types"].items():
        names |= {name + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" else {name}
    return names


def test_every_query_reads_a_series_vllm_exports_or_a_named_external_one():
    read = set().union(*(mon.series_names(q) for q in mon.queries("vllm", "ai-serving")))
    assert read - exported() == set(mon.EXTERNAL_SERIES), read - exported()
    # What the dashboard must show, by its 0.33 series.
    for name in ("vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_bucket",
                 "vllm:inter_token_latency_seconds_bucket", "vllm:e2e_request_latency_seconds_bucket",
                 "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:num_preemptions_total", "http_requests_total"):
        assert name in read, name


def test_no_retired_names():
    text = " ".join(mon.queries("vllm", "ai-serving"))
    for retired in ("vllm:gpu_cache_usage_perc", "vllm:time_per_output_token_seconds", "vllm:num_preemptions{",
                    "vllm:generation_tokens{", "vllm:prompt_tokens{"):
        assert retired not in text, retired


def test_the_queries_select_this_deployment_only():
    for q in mon.queries("vllm-b", "team-a"):
        assert 'namespace="team-a"' in q and ('job="vllm-b"' in q or 'pod=~"vllm\\-b(-rank[0-9]+)?-[0-9]+"' in q), q


def test_objects_carry_the_labels_prometheus_and_grafana_select():
    made = mon.objects("vllm", "ai-serving", {"app.kubernetes.io/name": "vllm"}, {"app.kubernetes.io/name": "vllm"},
                       {"release": "kube-prometheus-stack"}, mon.DASHBOARD_LABELS, "15s", 0.9, 10, 0.05)
    assert made["servicemonitor"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert made["servicemonitor"]["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    assert made["prometheusrule"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert made["dashboard"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(made["dashboard"]["data"]["vllm-ai-serving-vllm.json"])
    assert len(board["panels"]) == len(mon.PANELS) and all(p["targets"] for p in board["panels"])
    alerts = {r["alert"] for r in made["prometheusrule"]["spec"]["groups"][0]["rules"]}
    assert alerts == {"VLLMKVCacheNearlyFull", "VLLMRequestsWaiting", "VLLMRestarting", "VLLMServerErrors",
                      "VLLMEndpointDown"}


def test_the_restart_alert_counts_a_groups_workers_and_no_other_statefulset():
    [expr] = [r["expr"] for r in mon.alert_rules("vllm", "ai", 0.9, 10, 0.05) if r["alert"] == "VLLMRestarting"]
    pattern = re.search(r'pod=~"([^"]+)"', expr).group(1)
    # Prometheus anchors a regex matcher at both ends.
    for pod in ("vllm-0", "vllm-12", "vllm-rank1-0", "vllm-rank15-3"):
        assert re.fullmatch(pattern, pod), pod
    for pod in ("vllm-other-0", "vllm-rank1", "xvllm-0", "vllm-0-1"):
        assert not re.fullmatch(pattern, pod), pod
