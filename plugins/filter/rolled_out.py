# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: rolled_out
short_description: Whether an object a task just read or applied is already rolled out, by workload_wait's own rules
version_added: 0.1.0
description:
  - Given an object as the API returned it (the C(result) of a C(kubernetes.core.k8s) apply, an item of
    C(kubernetes.core.k8s_info)'s C(resources)), true when C(inferops.vllm.workload_wait) would return at once for it,
    that is for a StatefulSet, Deployment or DaemonSet whose controller has observed its spec and whose pods are all updated and
    ready, a Job that completed, a claim that is bound. False for anything else, an empty value included.
  - The roles use it to skip the wait on a rerun that changed nothing, when the object the apply returned already
    says what the wait would check; any other case still waits (and a failure still gets the wait's diagnosis).
  - The rules are C(plugins/module_utils/k8s/_rollout.py), the wait's own, so the two cannot disagree.
options:
  _input:
    description: The object (a dict with C(kind), C(metadata), C(spec) and C(status)).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Wait for the rollout, unless the apply's answer says it is done
  when: not (applied.result | default({}) | inferops.vllm.rolled_out)
  inferops.vllm.workload_wait:
    kind: StatefulSet
    name: vllm
    namespace: ai-serving
"""

RETURN = r"""
_value:
  description: Whether the object is rolled out now.
  type: bool
"""

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._rollout import KINDS, mid_rollout, status_of


def rolled_out(obj) -> bool:
    if not hasattr(obj, "get") or obj.get("kind") not in KINDS or not (obj.get("metadata") or {}).get("name"):
        return False
    return status_of(obj["kind"], obj).done


def statefulset_mid_rollout(obj) -> bool:
    """A StatefulSet's partition holds pods back, or its pods are not all on
    the update revision (``_rollout.mid_rollout``)."""
    return hasattr(obj, "get") and mid_rollout(obj)


class FilterModule:
    def filters(self):
        return {"rolled_out": rolled_out, "mid_rollout": statefulset_mid_rollout}
