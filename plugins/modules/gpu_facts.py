#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_facts
short_description: Gather a host's NVIDIA GPU facts - driver, CUDA, GPUs, MIG mode, container runtime
version_added: 0.1.0
description:
  - Reads the driver and CUDA driver versions and each GPU's index, name, UUID, memory, PCI bus id and MIG mode
    through NVML (the C(nvidia-ml-py) bindings) when they are installed, else from C(nvidia-smi).
  - Reports whether containerd (main config and C(conf.d) drop-ins) or Docker use the NVIDIA runtime by default.
  - Sets them as the fact C(inferops_gpu). A host without a driver is not an error; it reports C(gpu_count=0) and why.
options:
  method:
    description: How to read the GPUs.
    type: str
    choices: [auto, nvml, nvidia-smi]
    default: auto
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
  - inferops.vllm.attributes
  - inferops.vllm.attributes.READ_ONLY
attributes:
  facts:
    support: full
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Read the GPUs
  inferops.vllm.gpu_facts:

- name: Show them
  ansible.builtin.debug:
    msg: "{{ inferops_gpu.gpu_count }} x {{ inferops_gpu.gpus[0].name }}, driver {{ inferops_gpu.driver_version }}"
"""

RETURN = r"""
ansible_facts:
  description: The facts.
  returned: always
  type: dict
  contains:
    inferops_gpu:
      description: GPU facts.
      type: dict
      contains:
        source:
          description: C(nvml), C(nvidia-smi) or C(none).
          type: str
        driver_version:
          description: NVIDIA driver version.
          type: str
          sample: "580.95.05"
        cuda_driver_version:
          description: Highest CUDA version the driver supports.
          type: str
          sample: "13.0"
        gpu_count:
          description: Number of GPUs.
          type: int
        gpus:
          description: Each GPU - index, name, uuid, memory_total_mib, pci_bus_id, mig_mode.
          type: list
          elements: dict
        container_runtime:
          description: containerd and docker default runtimes and whether the NVIDIA runtime is configured.
          type: dict
        error:
          description: Why no GPU could be read, when none was.
          type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _facts as gpu_facts
from ansible_collections.inferops.vllm.plugins.module_utils import _runner


def gather(module):
    method = module.params["method"]
    facts = None
    errors = []
    if method in ("auto", "nvml"):
        try:
            import pynvml

            facts = gpu_facts.from_nvml(pynvml)
        except Exception as exc:  # noqa: BLE001 - missing bindings or library: try the next way
            errors.append(f"NVML: {exc}")
    if facts is None and method in ("auto", "nvidia-smi"):
        smi = module.get_bin_path("nvidia-smi")
        if smi:
            rc, out, err = module.run_command([smi, "--query-gpu=" + ",".join(gpu_facts.SMI_FIELDS),
                                               "--format=csv,noheader,nounits"])
            if rc == 0:
                header = module.run_command([smi])[1]
                facts = gpu_facts.parse_nvidia_smi(out, header)
            else:
                errors.append(f"nvidia-smi: {err.strip() or out.strip()}")
        else:
            errors.append("nvidia-smi: not found")
    if facts is None:
        facts = {"source": "none", "driver_version": None, "cuda_driver_version": None, "gpu_count": 0, "gpus": [],
                 "error": "; ".join(errors)}
    facts["container_runtime"] = gpu_facts.container_runtime()
    return {"changed": False, "ansible_facts": {"inferops_gpu": facts}}


def main():
    module = AnsibleModule(argument_spec=dict(method=dict(type="str", choices=["auto", "nvml", "nvidia-smi"],
                                                          default="auto")),
                           supports_check_mode=True)
    _runner.run(module, gather)


if __name__ == "__main__":
    main()
