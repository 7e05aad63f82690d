# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: router_dashboard
short_description: A Grafana dashboard of the fleet router's metrics
version_added: 0.6.0
description:
  - The JSON model (schemaVersion 39) of a Grafana dashboard over the series the fleet router's ServiceMonitor
    scrapes (C(inferops_router_*)) - requests by model and status, the router's own answers, time to the replicas'
    headers, retries, ready replicas, requests in flight per replica.
  - The panels are C(ROUTER_PANELS) in C(plugins/module_utils/serving/_monitoring.py).
options:
  _input:
    description: The router's name (its Service's, the scrape's C(job)).
    type: str
    required: true
  namespace:
    description: The router's namespace.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: The router's dashboard as JSON
  ansible.builtin.set_fact:
    dashboard: "{{ 'inferops-router' | inferops.vllm.router_dashboard(namespace='ai-serving') | to_nice_json }}"
"""

RETURN = r"""
_value:
  description: The dashboard's JSON model.
  type: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils.serving._monitoring import router_dashboard as build


def router_dashboard(name, namespace):
    return build(str(name), str(namespace))


class FilterModule:
    def filters(self):
        return {"router_dashboard": router_dashboard}
