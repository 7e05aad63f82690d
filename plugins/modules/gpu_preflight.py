#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_preflight
short_description: Decide whether a GPU host is ready for the NVIDIA container runtime, from facts already gathered
version_added: 0.1.0
description:
  - Applies the GPU host preflight's rules to facts a play has gathered on a host and returns what the host lacks
    (RV(problems)) and a report (RV(report)) of what was seen. It reads nothing itself, so its answer depends only on its
    parameters.
  - The rules are the kernel against O(min_kernel); NVIDIA devices on the PCI bus when O(require_gpus); the
    driver against O(min_driver_version), raised to what CUDA O(cuda_major) needs when that is given; a host with
    no driver when O(require_driver) and nothing will install one (O(manage_driver) false); and the container
    runtime, found by its package's version or, for one installed outside the package manager, by its binary's.
  - glibc is reported, never refused. HAMi's glibc range concerns the workload images it injects into, not the
    host.
  - A host with problems is not a failure of this module; the caller decides (the C(inferops.vllm.gpu_node) role
    collects every host's problems into one failure). Bad input fails, naming the parameter and the bad value.
options:
  kernel:
    description: The running kernel's release (C(ansible_facts.kernel), C(uname -r)).
    type: str
    required: true
  glibc:
    description: What C(getconf GNU_LIBC_VERSION) printed (C(glibc 2.36)) or a bare version; reported only.
    type: str
    default: ""
  pci_vendor_ids:
    description:
      - The vendor id of each PCI device (the content of C(/sys/bus/pci/devices/*/vendor)); those equal to
        C(0x10de) are NVIDIA's.
      - One of O(pci_vendor_ids) and O(nvidia_pci_count) is required.
    type: list
    elements: str
  nvidia_pci_count:
    description: How many NVIDIA devices are on the PCI bus, when counted elsewhere.
    type: int
  driver_version:
    description:
      - The NVIDIA driver version, as C(inferops.vllm.gpu_facts) reports it (C(inferops_gpu.driver_version));
        empty or null when there is no driver.
    type: str
  container_runtime:
    description: The node's container runtime.
    type: str
    choices: [containerd, docker, crio]
    default: containerd
  runtime_packages:
    description: The packages the runtime may come in, in order (named in the problem when none is installed).
    type: list
    elements: str
    default: []
  runtime_package_version:
    description: The version of the first of O(runtime_packages) that is installed; empty when none is.
    type: str
    default: ""
  runtime_binary:
    description: The runtime's binary (C(containerd), C(dockerd), C(crio)); named in the problem.
    type: str
    default: ""
  runtime_binary_version:
    description:
      - What C(<runtime_binary> --version) printed; empty when it is not there or failed. The first C(x.y.z)
        version in it is taken, used only when O(runtime_package_version) is empty.
    type: str
    default: ""
  min_kernel:
    description: The oldest kernel accepted.
    type: str
    default: "5.4"
  min_driver_version:
    description:
      - The oldest NVIDIA driver accepted (a branch such as C(550), or a full version such as C(550.127.05)).
    type: str
    default: "550"
  cuda_major:
    description:
      - The CUDA major version the workloads are built with. When given, the driver must also be at least the
        branch NVIDIA's CUDA minor version compatibility table names for it (CUDA 11 - 450, 12 - 525, 13 - 580).
    type: int
  vllm_version:
    description:
      - The vLLM release whose official image will run on the host (C(latest) - the newest the collection knows).
        Its image's CUDA major version (CUDA 13 from vLLM 0.20, 12.9 before) sets O(cuda_major). Mutually
        exclusive with O(cuda_major).
    type: str
  vllm_image_tag:
    description: The image's tag, when it carries a CUDA suffix such as C(-cu129) (vLLM's CUDA 12.9 image).
    type: str
    default: ""
  require_gpus:
    description: A host with no NVIDIA device on the PCI bus is a problem.
    type: bool
    default: true
  require_driver:
    description: A host with no driver is a problem when O(manage_driver) is false.
    type: bool
    default: true
  manage_driver:
    description: Whether a driver will be installed after the preflight (so that a missing one is not a problem).
    type: bool
    default: true
notes:
  - The C(inferops.vllm.gpu_node) role gathers these facts and calls this module in C(tasks_from=host).
seealso:
  - module: inferops.vllm.gpu_facts
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
  - inferops.vllm.attributes.READ_ONLY
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Read the GPU driver's facts
  inferops.vllm.gpu_facts:

- name: Decide whether the host is ready
  inferops.vllm.gpu_preflight:
    kernel: "{{ ansible_facts.kernel }}"
    nvidia_pci_count: 8
    driver_version: "{{ inferops_gpu.driver_version }}"
    container_runtime: containerd
    runtime_packages: [containerd, containerd.io]
    runtime_package_version: "{{ ansible_facts.packages['containerd'][0].version | default('') }}"
    min_driver_version: "550"
    cuda_major: 13
  register: preflight

- name: Stop when it is not
  ansible.builtin.assert:
    that: preflight.problems | length == 0
    fail_msg: "{{ inventory_hostname }}: {{ preflight.problems | join('; ') }}"
"""

RETURN = r"""
problems:
  description: What the host lacks, one sentence each; empty when it is ready.
  returned: always
  type: list
  elements: str
  sample: ["no NVIDIA GPU on the PCI bus", "driver 535.183.01 is older than 580 (CUDA 13 needs it)"]
report:
  description: What was seen.
  returned: always
  type: dict
  contains:
    kernel:
      description: The kernel release.
      type: str
      sample: "6.1.0-18-amd64"
    glibc:
      description: The glibc version, empty when unknown.
      type: str
      sample: "2.36"
    gpus_on_pci:
      description: NVIDIA devices on the PCI bus.
      type: int
      sample: 8
    driver:
      description: The driver version, null when there is none.
      type: str
      sample: "580.95.05"
    runtime:
      description: The runtime and its version, C((binary, no package)) when only its binary was found,
        C((not installed)) when neither.
      type: str
      sample: "containerd 1.7.24-1"
    problems:
      description: The same as RV(problems).
      type: list
      elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _preflight
from ansible_collections.inferops.vllm.plugins.module_utils.serving import _vllm_releases as releases

ARGUMENT_SPEC = dict(
    kernel=dict(type="str", required=True),
    glibc=dict(type="str", default=""),
    pci_vendor_ids=dict(type="list", elements="str"),
    nvidia_pci_count=dict(type="int"),
    driver_version=dict(type="str"),
    container_runtime=dict(type="str", choices=list(_preflight.RUNTIMES), default="containerd"),
    runtime_packages=dict(type="list", elements="str", default=[]),
    runtime_package_version=dict(type="str", default=""),
    runtime_binary=dict(type="str", default=""),
    runtime_binary_version=dict(type="str", default=""),
    min_kernel=dict(type="str", default="5.4"),
    min_driver_version=dict(type="str", default="550"),
    cuda_major=dict(type="int"),
    vllm_version=dict(type="str"),
    vllm_image_tag=dict(type="str", default=""),
    require_gpus=dict(type="bool", default=True),
    require_driver=dict(type="bool", default=True),
    manage_driver=dict(type="bool", default=True),
)


def check(module):
    params = dict(module.params)
    version, tag = params.pop("vllm_version"), params.pop("vllm_image_tag")
    if version:
        # The CUDA of the vLLM image that will run here sets the oldest driver: one rule,
        # the one the serving plan reports too.
        if version == "latest":
            version = releases.LATEST
        params["cuda_major"] = releases.image_cuda_major(version, tag)
    result = _preflight.preflight(**params)
    return {"changed": False, **result}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC,
                           mutually_exclusive=[("pci_vendor_ids", "nvidia_pci_count"), ("cuda_major", "vllm_version")],
                           required_one_of=[("pci_vendor_ids", "nvidia_pci_count")],
                           supports_check_mode=True)
    _runner.run(module, check)


if __name__ == "__main__":
    main()
