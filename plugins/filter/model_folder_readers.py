# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: model_folder_readers
short_description: Where running pods read a model folder, one entry a copy of it
version_added: 0.1.0
positional: storage, claim, hostpath, subpath
description:
  - Given pods as C(kubernetes.core.k8s_info) returns them, the copies of the model folder C(subpath) that running
    pods read - a claim (storage C(claim) or C(per_replica)) or a node's hostPath folder (storage C(hostpath)) - each
    with a node one of its readers runs on, the pod's model volume and tolerations (to read it there) and its readers.
  - A pod reads the folder when its C(vllm) container's first argument (the model path) is the folder under the
    mount of its C(models) volume, and that volume is one the download writes. The rules are
    C(plugins/module_utils/model/_held.py).
options:
  _input:
    description: The pods (API objects).
    type: list
    elements: dict
    required: true
  storage:
    description: model_store_storage (claim, per_replica or hostpath).
    type: str
    required: true
  claim:
    description: The shared claim's name (storage claim).
    type: str
    required: true
  hostpath:
    description: The nodes' cache folder (storage hostpath).
    type: str
    required: true
  subpath:
    description: The model's folder inside the volume.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: The copies of the folder running pods read
  ansible.builtin.set_fact:
    copies: "{{ pods.resources | inferops.vllm.model_folder_readers('claim', 'models-qwen', '', 'qwen') }}"
"""

RETURN = r"""
_value:
  description: One dict a copy (node, volume, tolerations, pods).
  type: list
  elements: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils.model._held import folder_readers


class FilterModule:
    def filters(self):
        return {"model_folder_readers": folder_readers}
