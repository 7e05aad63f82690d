# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: router_config
short_description: The fleet router's configuration from the models' routes, with every problem named
version_added: 0.6.0
description:
  - Given the routes of the fleet's models (each model's vllm_serve role, C(tasks_from=route)) and the vllm_router
    role's settings, the router's configuration (the JSON of its ConfigMap) and the problems with the input, each
    naming the variable to change.
  - The rules are C(plugins/module_utils/router/_routes.py) (C(config_from_routes)).
options:
  _input:
    description: The routes, a list of C(name), C(service), C(namespace), C(port_name), C(key_secret).
    type: list
    elements: dict
    required: true
  settings:
    description: C(policy), C(session_header), C(prefix_chars), C(load_factor), C(unhealthy_s), C(models_refresh_s).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: The router's configuration
  ansible.builtin.set_fact:
    router: "{{ routes | inferops.vllm.router_config(settings={'policy': 'affinity', 'session_header': 'x-session-id',
               'prefix_chars': 1024, 'load_factor': 1.25, 'unhealthy_s': 10, 'models_refresh_s': 10}) }}"
"""

RETURN = r"""
_value:
  description: C(config) (the router's configuration) and C(problems) (a list of strings, empty when all is well).
  type: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils.router._routes import config_from_routes


def router_config(routes, settings):
    return config_from_routes([dict(r) for r in routes or []], dict(settings))


class FilterModule:
    def filters(self):
        return {"router_config": router_config}
