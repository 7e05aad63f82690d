# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: model_held_conflict
short_description: What a model folder holds, when fetching another source or revision into it would change its files
version_added: 0.1.0
positional: params
description:
  - Given what the folder's completion marker says (the answer of the read pod upgrade.yml runs), and the model_store
    source settings of this run, an empty string when fetching them into the folder leaves its files as they are
    (the same source and revision, or no complete model there), else what the folder holds, for the refusal.
  - The new source's identity is the fetcher's own (C(build_source)); which files are selected (allow and ignore
    patterns) does not count. A revision given for a source that has none (S3, a directory) is a conflict too - the
    fetcher would ignore it. The rules are C(plugins/module_utils/model/_held.py).
options:
  _input:
    description: The marker's summary (C(marker), C(source), C(completed_at); or C(error)).
    type: dict
    required: true
  params:
    description: C(source), C(model_id), C(revision), C(bucket), C(prefix), C(endpoint_url), C(local_path).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Refuse a new revision into the folder running pods read
  ansible.builtin.assert:
    that: >-
      (read | inferops.vllm.model_held_conflict({'source': 'huggingface', 'model_id': 'Qwen/Qwen3-8B',
                                                 'revision': 'v2'})) == ''
"""

RETURN = r"""
_value:
  description: Empty, or what the folder holds.
  type: str
"""

from ansible_collections.inferops.vllm.plugins.module_utils.model._held import held_conflict


class FilterModule:
    def filters(self):
        return {"model_held_conflict": held_conflict}
