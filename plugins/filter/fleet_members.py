# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_members
short_description: The models of a fleet (inferops_models), each with its role variables and its download
version_added: 0.6.0
description:
  - Given C(inferops_models) (a list; each entry a C(name) and any variables of the model_store and vllm_serve roles
    by their full names), the members - one per model, with the role variables that make it that model (the names of
    its objects derived from C(name)) - and the stores (one download per distinct source, model and revision, shared
    by the models that serve it).
  - An entry's keys are checked against the two roles' argument specs (C(meta/argument_specs.yml), entry point
    C(main)); every problem is listed at once, each naming the entry and the key.
  - The rules are C(plugins/module_utils/serving/_fleet.py).
options:
  _input:
    description: C(inferops_models); an empty value or none is the one-model case (the inventory's variables).
    type: raw
    required: true
  inventory:
    description:
      - The store-identity variables (C(model_store_source), C(model_store_model_id), C(model_store_revision),
        C(model_store_endpoint_url), C(model_store_s3_bucket), C(model_store_s3_prefix), C(model_store_local_path))
        and the one-model names (C(vllm_serve_name), C(model_store_name), ...) as the inventory sets them for all
        models; a value of none is unset.
    type: dict
    default: {}
  selected:
    description: One model's name (a day-2 run on that model only), or empty for all.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: The models of this run
  ansible.builtin.set_fact:
    fleet: "{{ inferops_models | inferops.vllm.fleet_members(inventory={'model_store_source': 's3'}) }}"
"""

RETURN = r"""
_value:
  description: C(members) (each C(name), C(store), C(fetches) - whether this member runs its store's download -,
    C(store_members) and C(vars), its role variables) and C(stores) (each C(name), C(members), C(identity)).
  type: dict
"""

from pathlib import Path

import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.serving import _fleet

ROLES = Path(__file__).resolve().parent.parent.parent / "roles"


def role_variables(role: str) -> list[str]:
    """The variables of a role's main entry point, from its argument spec."""
    spec = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    return list(((spec.get("argument_specs") or {}).get("main") or {}).get("options") or {})


def fleet_members(models, inventory=None, selected=""):
    allowed = role_variables("model_store") + role_variables("vllm_serve")
    try:
        if not models:
            return _fleet.one_model(selected, str((inventory or {}).get("vllm_serve_name") or "vllm"))
        return _fleet.members(models, allowed, inventory or {}, selected or "")
    except ParameterError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {"fleet_members": fleet_members}
