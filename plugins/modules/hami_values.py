#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: hami_values
short_description: The values of HAMi's Helm chart, in the layout of the chosen HAMi release
version_added: 0.1.0
description:
  - Renders the chart values for HAMi's scheduler and device plugin in the layout that O(chart_version) reads
    (HAMi 2.8.0 renamed C(devicePlugin.nvidianodeSelector) to C(devicePlugin.nvidiaNodeSelector)), merges
    O(extra_values) over them, and fails when a value sits under a path the chosen release does not read, which the
    chart would drop without a word.
  - The bundled kube-scheduler's tag is O(kube_scheduler_image_tag), or the cluster's version without a
    distribution's suffix (C(v1.34.1+k3s1) gives C(v1.34.1)), as the chart itself derives it.
  - It only computes; nothing is changed.
options:
  chart_version:
    description:
      - The HAMi chart release that will be installed, for example C(2.10.0).
      - One of O(chart_version) and O(chart_path) is required.
    type: str
  chart_path:
    description:
      - A local chart to install (a chart folder, or a tarball made by C(helm package)), on the host the module runs
        on; its C(Chart.yaml) gives the release, as C(helm show chart) would.
    type: path
  cluster_version:
    description: The cluster's Kubernetes version (C(gitVersion)), for the kube-scheduler tag.
    type: str
    required: true
  kube_scheduler_image_tag:
    description: The kube-scheduler image tag; empty takes the cluster's version.
    type: str
    default: ""
  node_label:
    description: The label the device plugin DaemonSet selects (what the GPU nodes carry).
    type: dict
    required: true
  resource_name:
    description: The GPU count resource.
    type: str
    default: nvidia.com/gpu
  resource_mem:
    description: The GPU memory resource (MiB per GPU).
    type: str
    default: nvidia.com/gpumem
  resource_cores:
    description: The GPU cores resource (percent per GPU).
    type: str
    default: nvidia.com/gpucores
  device_split_count:
    description: How many pods may share one GPU.
    type: int
    default: 10
  node_scheduler_policy:
    description: How HAMi's scheduler picks nodes.
    type: str
    choices: [binpack, spread]
    default: binpack
  gpu_scheduler_policy:
    description: How HAMi's scheduler picks GPUs on a node.
    type: str
    choices: [binpack, spread]
    default: spread
  extra_values:
    description: More chart values, merged over the ones above (dicts merge, other values replace).
    type: dict
    default: {}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
  - inferops.vllm.attributes.READ_ONLY
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Read the cluster's version
  kubernetes.core.k8s_cluster_info:
  register: cluster

- name: HAMi 2.10's values
  inferops.vllm.hami_values:
    chart_version: "2.10.0"
    cluster_version: "{{ cluster.version.server.kubernetes.gitVersion }}"
    node_label: {gpu: "on"}
  register: hami

- name: Install it
  kubernetes.core.helm:
    name: hami
    chart_ref: hami-charts/hami
    chart_version: "2.10.0"
    release_namespace: kube-system
    values: "{{ hami.chart_values }}"
"""

RETURN = r"""
chart_version:
  description: The chart release the values are for (O(chart_version), or the one O(chart_path) holds).
  returned: success
  type: str
chart_values:
  description: The chart values to install with.
  returned: success
  type: dict
kube_scheduler_tag:
  description: The kube-scheduler image tag in RV(chart_values).
  returned: success
  type: str
node_selector_key:
  description: The name this release gives the device plugin's node selector value.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _hami as hami


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run(module):
    p = dict(module.params)
    if p["chart_path"]:
        p["chart_version"] = hami.local_chart_version(p["chart_path"])
    # What the user gave is checked alone: the role's own values are always right for the release.
    ignored = hami.ignored_values(p["extra_values"], p["chart_version"])
    if ignored:
        raise ParameterError("extra_values: the chart would ignore " + "; ".join(ignored), ignored=ignored)
    tag = p["kube_scheduler_image_tag"] or hami.kube_scheduler_tag(p["cluster_version"])
    values = hami.chart_values(p["chart_version"], p["node_label"], p["resource_name"], p["resource_mem"],
                               p["resource_cores"], p["device_split_count"], p["node_scheduler_policy"],
                               p["gpu_scheduler_policy"], tag)
    return {"changed": False, "chart_version": p["chart_version"],
            "chart_values": merge(values, p["extra_values"]), "kube_scheduler_tag": tag,
            "node_selector_key": hami.node_selector_key(p["chart_version"])}


def main():
    spec = dict(
        chart_version=dict(type="str"),
        chart_path=dict(type="path"),
        cluster_version=dict(type="str", required=True),
        kube_scheduler_image_tag=dict(type="str", default=""),
        node_label=dict(type="dict", required=True),
        resource_name=dict(type="str", default="nvidia.com/gpu"),
        resource_mem=dict(type="str", default="nvidia.com/gpumem"),
        resource_cores=dict(type="str", default="nvidia.com/gpucores"),
        device_split_count=dict(type="int", default=10),
        node_scheduler_policy=dict(type="str", choices=["binpack", "spread"], default="binpack"),
        gpu_scheduler_policy=dict(type="str", choices=["binpack", "spread"], default="spread"),
        extra_values=dict(type="dict", default={}),
    )
    _runner.run(AnsibleModule(argument_spec=spec, supports_check_mode=True,
                              required_one_of=[("chart_version", "chart_path")],
                              mutually_exclusive=[("chart_version", "chart_path")]), run)


if __name__ == "__main__":
    main()
