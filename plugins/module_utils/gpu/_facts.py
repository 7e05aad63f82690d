# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GPU facts of a host: driver, CUDA, each GPU (name, memory, UUID, MIG
mode) through NVML (the nvidia-ml-py bindings) or, without them, nvidia-smi;
and whether the container runtime is set to use the NVIDIA runtime."""

from __future__ import annotations

import csv
import io
import json
import os
import re

SMI_FIELDS = ("index", "name", "uuid", "memory.total", "pci.bus_id", "mig.mode.current", "driver_version")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def from_nvml(nvml) -> dict:
    """Facts through NVML; ``nvml`` is the pynvml module."""
    nvml.nvmlInit()
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda = nvml.nvmlSystemGetCudaDriverVersion_v2() if hasattr(nvml, "nvmlSystemGetCudaDriverVersion_v2") \
            else nvml.nvmlSystemGetCudaDriverVersion()
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = nvml.nvmlDeviceGetMemoryInfo(h)
            try:
                mig = "enabled" if nvml.nvmlDeviceGetMigMode(h)[0] else "disabled"
            except nvml.NVMLError:
                mig = "unsupported"
            gpus.append({
                "index": i,
                "name": _text(nvml.nvmlDeviceGetName(h)),
                "uuid": _text(nvml.nvmlDeviceGetUUID(h)),
                "memory_total_mib": int(mem.total // (1024 * 1024)),
                "pci_bus_id": _text(nvml.nvmlDeviceGetPciInfo(h).busId),
                "mig_mode": mig,
            })
    finally:
        nvml.nvmlShutdown()
    return {"source": "nvml", "driver_version": driver, "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}",
            "gpu_count": len(gpus), "gpus": gpus}


def parse_nvidia_smi(csv_text: str, header_text: str = "") -> dict:
    """Facts from `nvidia-smi --query-gpu=<SMI_FIELDS> --format=csv,noheader,nounits`
    and (for the CUDA version) the header of plain `nvidia-smi`."""
    gpus, driver = [], None
    for row in csv.reader(io.StringIO(csv_text)):
        if not row or len(row) < len(SMI_FIELDS):
            continue
        values = dict(zip(SMI_FIELDS, (c.strip() for c in row)))
        driver = values["driver_version"]
        mig = values["mig.mode.current"]
        gpus.append({
            "index": int(values["index"]),
            "name": values["name"],
            "uuid": values["uuid"],
            "memory_total_mib": int(float(values["memory.total"])),
            "pci_bus_id": values["pci.bus_id"],
            "mig_mode": mig.lower() if mig not in ("[N/A]", "N/A") else "unsupported",
        })
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header_text or "")
    return {"source": "nvidia-smi", "driver_version": driver, "cuda_driver_version": cuda.group(1) if cuda else None,
            "gpu_count": len(gpus), "gpus": gpus}


def container_runtime(root: str = "/") -> dict:
    """What the node's container runtime would start containers with."""
    facts: dict = {"containerd": None, "docker": None}
    cfg_dir = os.path.join(root, "etc/containerd")
    texts = []
    main = os.path.join(cfg_dir, "config.toml")
    dropins = os.path.join(cfg_dir, "conf.d")
    names = sorted(os.listdir(dropins)) if os.path.isdir(dropins) else []
    for path in [main] + [os.path.join(dropins, n) for n in names]:
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.append((path, f.read()))
    if texts:
        default = None
        for _path, text in texts:
            m = re.search(r'^\s*default_runtime_name\s*=\s*"([^"]+)"', text, re.M)
            if m:
                default = m.group(1)  # later files win, as containerd merges imports over the main file
        facts["containerd"] = {"config_files": [p for p, _t in texts], "default_runtime": default,
                               "nvidia_runtime": any("nvidia-container-runtime" in t for _p, t in texts)}
    daemon = os.path.join(root, "etc/docker/daemon.json")
    if os.path.isfile(daemon):
        try:
            with open(daemon, encoding="utf-8") as f:
                d = json.load(f)
            facts["docker"] = {"default_runtime": d.get("default-runtime"), "nvidia_runtime": "nvidia" in (d.get("runtimes") or {})}
        except ValueError:
            facts["docker"] = {"error": f"{daemon} is not valid JSON"}
    return facts
