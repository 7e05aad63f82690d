# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: model_store_plan
short_description: The download container, model volume, claim template and download Job's name the model_store role uses
version_added: 0.4.0
description:
  - Given the model_store role's settings (its variables without the C(model_store_) prefix, no credentials), what
    the main entry point applies and exports - C(fetch_container) (the download's container, with its arguments, the
    credentials Secret as environment and the model volume at C(/models)), C(volume) (the shared claim or the nodes'
    cache folder; empty with storage per_replica), C(claim_template) (storage per_replica), C(job_hash) and
    C(job_name) (the download Job is named after its pod template, which cannot change once created),
    C(annotations) (the model's folder and revision, written on the download Job) and C(published) (the fact the
    serving role reads).
  - The rules are C(plugins/module_utils/model/_store.py).
options:
  _input:
    description: The settings (C(namespace), C(name), C(storage), C(source), C(subpath), C(fetch_image), ...).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Name the download Job
  ansible.builtin.debug:
    msg: "{{ (model_store_settings | inferops.vllm.model_store_plan).job_name }}"
"""

RETURN = r"""
_value:
  description: The plan (fetch_container, volume, claim_template, job_hash, job_name, annotations, published).
  type: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils.model._store import plan


class FilterModule:
    def filters(self):
        return {"model_store_plan": plan}
