# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GPU host preflight's rules, as pure functions: from the facts a play
gathers on a host (kernel, glibc, PCI vendor ids, the driver version, the
container runtime's package or binary version) to the list of what the host
lacks and a report of what was seen. Nothing here reads the host; the
gpu_preflight module and the gpu_node role hand the facts in."""

from __future__ import annotations

import re

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError

NVIDIA_PCI_VENDOR = "0x10de"
RUNTIMES = ("containerd", "docker", "crio")

# The oldest NVIDIA driver branch each CUDA major version runs on, through
# CUDA's minor version compatibility: NVIDIA's "CUDA Toolkit 11.x, 12.x, and
# 13.x Driver Version Ranges" table (CUDA Compatibility guide, "Minor Version
# Compatibility",
# https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html):
# CUDA 13.x >= 580, CUDA 12.x >= 525, CUDA 11.x >= 450. Newer drivers keep
# running older CUDA majors (backward compatibility), so "or newer" holds.
# Re-check the table when NVIDIA ships a new CUDA major.
_CUDA_MIN_DRIVER_BRANCH = {11: 450, 12: 525, 13: 580}

_VERSION = re.compile(r"\d+(?:\.\d+)*")
# The first x.y.z in what `containerd --version`, `dockerd --version` or
# `crio --version` prints, with its distribution suffix (1.6.20~ds1,
# 20.10.24+dfsg1).
_BINARY_VERSION = re.compile(r"[0-9]+[.][0-9]+[.][0-9]+[^ ,\s]*")
_PCI_VENDOR = re.compile(r"(?:0x)?([0-9a-f]{4})")


def min_driver_branch(cuda_major) -> int:
    """The oldest NVIDIA driver branch (its major number, e.g. 580) that runs
    programs built with CUDA ``cuda_major`` (an int, or a version such as
    "12.8" whose major is taken), per NVIDIA's table cited above.

    >>> min_driver_branch(13)
    580
    """
    major = _cuda_major(cuda_major)
    if major not in _CUDA_MIN_DRIVER_BRANCH:
        raise ParameterError(f"cuda_major: CUDA {major} is not in NVIDIA's driver table this collection knows "
                             f"(CUDA {_known_cuda_majors()})")
    return _CUDA_MIN_DRIVER_BRANCH[major]


def _cuda_major(value) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"(\d+)(?:\.\d+)*", "" if value is None or isinstance(value, bool) else str(value).strip())
    if not match:
        raise ParameterError(f"cuda_major: {value!r} is not a CUDA major version (one of {_known_cuda_majors()}, "
                             "such as 12)")
    return int(match.group(1))


def _known_cuda_majors() -> str:
    return ", ".join(str(m) for m in sorted(_CUDA_MIN_DRIVER_BRANCH))


def parse_version(value, name: str, example: str) -> tuple:
    """The leading numeric part of a version as a tuple of ints: kernel
    ``6.1.0-18-amd64`` is (6, 1, 0), driver ``580.95.05`` is (580, 95, 5).
    ``name`` and ``example`` make the error say which parameter is wrong and
    what a right value looks like."""
    text = "" if value is None else str(value).strip()
    match = _VERSION.match(text)
    if not match:
        raise ParameterError(f"{name}: {value!r} is not a version (want it to start with numbers and dots, "
                             f"such as {example})")
    return tuple(int(part) for part in match.group(0).split("."))


def older_than(version: tuple, minimum: tuple) -> bool:
    """Whether ``version`` is below ``minimum``; missing trailing parts count
    as nothing, so kernel 5.4.0 is not older than 5.4 and 5.4 is older than
    5.4.1 (as Ansible's ``version`` test compares them)."""
    return version < minimum


def glibc_version(text) -> str:
    """The version out of `getconf GNU_LIBC_VERSION` ("glibc 2.36") or a bare
    "2.36"; empty when nothing was read."""
    words = ("" if text is None else str(text)).split()
    return words[-1] if words else ""


def count_nvidia(vendor_ids) -> int:
    """How many of the PCI vendor ids (the content of
    /sys/bus/pci/devices/*/vendor, such as "0x10de") are NVIDIA's."""
    count = 0
    for raw in vendor_ids or []:
        text = str(raw).strip().lower()
        match = _PCI_VENDOR.fullmatch(text)
        if not match:
            raise ParameterError(f"pci_vendor_ids: {raw!r} is not a PCI vendor id (want four hex digits, "
                                 f"such as {NVIDIA_PCI_VENDOR})")
        if "0x" + match.group(1) == NVIDIA_PCI_VENDOR:
            count += 1
    return count


def binary_version(output) -> str:
    """The runtime's version from what its binary printed for --version."""
    match = _BINARY_VERSION.search(output or "")
    return match.group(0) if match else ""


def runtime_version(package_version, binary_output) -> str:
    """The runtime's version as the report shows it: the package's version,
    else the binary's with "(binary, no package)" (a runtime installed from a
    release archive, as kubespray installs containerd), else empty."""
    if package_version:
        return str(package_version).strip()
    version = binary_version(binary_output)
    return f"{version} (binary, no package)" if version else ""


def kernel_problems(kernel, min_kernel) -> list:
    minimum = parse_version(min_kernel, "min_kernel", "5.4")
    if older_than(parse_version(kernel, "kernel", "6.1.0-18-amd64"), minimum):
        return [f"kernel {kernel} is older than {min_kernel}"]
    return []


def gpu_problems(nvidia_on_pci: int, require_gpus: bool) -> list:
    if require_gpus and nvidia_on_pci == 0:
        return ["no NVIDIA GPU on the PCI bus"]
    return []


def driver_problems(driver_version, min_driver_version, require_driver=True, manage_driver=True,
                    cuda_major=None) -> list:
    """A driver older than ``min_driver_version`` (or than what CUDA
    ``cuda_major`` needs, when given); no driver where none will be
    installed."""
    minimum = parse_version(min_driver_version, "min_driver_version", "550")
    wanted = str(min_driver_version)
    reason = ""
    if cuda_major is not None:
        branch = min_driver_branch(cuda_major)
        if (branch,) > minimum:
            minimum, wanted, reason = (branch,), str(branch), f" (CUDA {_cuda_major(cuda_major)} needs it)"
    if driver_version:
        if older_than(parse_version(driver_version, "driver_version", "580.95.05"), minimum):
            return [f"driver {driver_version} is older than {wanted}{reason}"]
        return []
    if require_driver and not manage_driver:
        return ["no NVIDIA driver, and manage_driver is false (nothing will install one)"]
    return []


def runtime_problems(runtime, version, packages=(), binary="") -> list:
    if version:
        return []
    looked_for = []
    if packages:
        looked_for.append("none of the packages " + ", ".join(packages))
    if binary:
        looked_for.append(f"no {binary} binary on the PATH")
    detail = f" ({', and '.join(looked_for)})" if looked_for else ""
    return [f"{runtime} is not installed{detail}"]


def preflight(*, kernel, container_runtime, glibc="", pci_vendor_ids=None, nvidia_pci_count=None,
              driver_version=None, runtime_packages=(), runtime_package_version="", runtime_binary="",
              runtime_binary_version="", min_kernel="5.4", min_driver_version="550", require_gpus=True,
              require_driver=True, manage_driver=True, cuda_major=None) -> dict:
    """Every rule over one host's facts. Returns ``{"report": ..., "problems":
    [...]}``: an empty list means the host is ready. Bad input raises
    ParameterError naming the parameter, before any rule is applied."""
    if container_runtime not in RUNTIMES:
        raise ParameterError(f"container_runtime: {container_runtime!r} is not one of {', '.join(RUNTIMES)}")
    if pci_vendor_ids is not None and nvidia_pci_count is not None:
        raise ParameterError("pci_vendor_ids and nvidia_pci_count: give one of them, not both")
    if pci_vendor_ids is None and nvidia_pci_count is None:
        raise ParameterError("pci_vendor_ids or nvidia_pci_count: one is required (the NVIDIA devices on the PCI bus)")
    if nvidia_pci_count is not None:
        if isinstance(nvidia_pci_count, bool) or not isinstance(nvidia_pci_count, int) or nvidia_pci_count < 0:
            raise ParameterError(f"nvidia_pci_count: {nvidia_pci_count!r} is not a count (want 0 or more)")
        on_pci = nvidia_pci_count
    else:
        on_pci = count_nvidia(pci_vendor_ids)
    version = runtime_version(runtime_package_version, runtime_binary_version)
    problems = (kernel_problems(kernel, min_kernel)
                + gpu_problems(on_pci, require_gpus)
                + driver_problems(driver_version, min_driver_version, require_driver, manage_driver, cuda_major)
                + runtime_problems(container_runtime, version, runtime_packages, runtime_binary))
    report = {
        "kernel": str(kernel),
        "glibc": glibc_version(glibc),
        "gpus_on_pci": on_pci,
        "driver": driver_version or None,
        "runtime": f"{container_runtime} {version or '(not installed)'}",
        "problems": problems,
    }
    return {"report": report, "problems": problems}
