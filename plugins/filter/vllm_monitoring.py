# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: vllm_monitoring
short_description: The ServiceMonitor, PrometheusRule and Grafana dashboard ConfigMap that watch a vLLM StatefulSet
version_added: 0.1.0
description:
  - Given the StatefulSet's name and namespace, returns a dict of three objects, C(servicemonitor),
    C(prometheusrule) and C(dashboard), as the vllm_serve role applies them.
  - The ServiceMonitor scrapes the Service's C(http) port at C(/metrics) (no API key needed there). The alerts fire on
    a KV cache nearly full for 10 minutes, requests waiting for 5 minutes, a restart, a 5xx ratio, the endpoint down.
    The dashboard shows throughput, time to first token, inter-token and end-to-end latency quantiles, running and
    waiting requests, KV cache usage, preemptions and GPU memory.
  - Every query names series vLLM 0.33 exports (or its HTTP server's); GPU memory comes from NVIDIA's dcgm-exporter,
    restarts from kube-state-metrics (C(plugins/module_utils/serving/_monitoring.py), docs/observability.md).
options:
  _input:
    description:
      - C(name), C(namespace), C(labels) (on every object), C(selector) (the Service's pod labels),
        C(monitoring_labels) (what the Prometheus selects), C(dashboard_labels) (what Grafana's sidecar selects),
        C(interval), C(kv_cache_usage) (0-1), C(waiting_requests), C(error_ratio) (0-1).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Monitoring objects for vllm in ai-serving
  ansible.builtin.set_fact:
    watched: >-
      {{ {'name': 'vllm', 'namespace': 'ai-serving', 'labels': {}, 'selector': {'app': 'vllm'},
          'monitoring_labels': {'release': 'kube-prometheus-stack'}, 'dashboard_labels': {'grafana_dashboard': '1'},
          'interval': '15s', 'kv_cache_usage': 0.9, 'waiting_requests': 10, 'error_ratio': 0.05}
         | inferops.vllm.vllm_monitoring }}
"""

RETURN = r"""
_value:
  description: C(servicemonitor), C(prometheusrule) and C(dashboard) (a ConfigMap), each a full object.
  type: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils.serving._monitoring import objects


def vllm_monitoring(params: dict) -> dict:
    return objects(params["name"], params["namespace"], dict(params.get("labels") or {}),
                   dict(params["selector"]), dict(params.get("monitoring_labels") or {}),
                   dict(params.get("dashboard_labels") or {}), str(params.get("interval") or "15s"),
                   float(params["kv_cache_usage"]), int(params["waiting_requests"]), float(params["error_ratio"]))


class FilterModule:
    def filters(self):
        return {"vllm_monitoring": vllm_monitoring}
