# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What differs between HAMi releases, for whoever installs or uses one:
the chart's values layout, the kube-scheduler tag the chart derives, and the
releases that fixed vLLM with tensor parallelism. Read from HAMi's
repository (charts/hami, CHANGELOG.md) at the tags v2.7.1 to v2.10.0; each
entry names its source."""

from __future__ import annotations

import re

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError

# The chart the role installs when none is named: the newest release.
DEFAULT_CHART_VERSION = "2.10.0"
OLDEST_CHART_VERSION = "2.7.1"

# Values that moved: (old path, new path, the release that reads the new path).
# A value under the path the chosen release does not read is silently
# ignored by the chart.
MOVED_VALUES = (
    # charts/hami/values.yaml: nvidianodeSelector at v2.7.1 (line 309), nvidiaNodeSelector from
    # v2.8.0 (HAMi PR #1546; line 419 at v2.10.0, read by templates/device-plugin/daemonsetnvidia.yaml).
    ("devicePlugin.nvidianodeSelector", "devicePlugin.nvidiaNodeSelector", (2, 8, 0)),
    # The monitor's resources: devicePlugin.vgpuMonitor up to 2.7, devicePlugin.monitor from v2.8.0.
    ("devicePlugin.vgpuMonitor", "devicePlugin.monitor", (2, 8, 0)),
    # The bundled kube-scheduler's tag: scheduler.kubeScheduler.imageTag up to 2.6,
    # scheduler.kubeScheduler.image.tag from 2.7.
    ("scheduler.kubeScheduler.imageTag", "scheduler.kubeScheduler.image.tag", (2, 7, 0)),
)
# Values a release range reads, and no release outside it (the DRA subchart,
# v2.8.0 to v2.9.x; removed by HAMi PR #2038 before v2.10.0).
RANGED_VALUES = (
    ("dra", (2, 8, 0), (2, 10, 0)),
    ("hami-dra", (2, 8, 0), (2, 10, 0)),
)

# vLLM newer than 0.18 with tensor parallelism on HAMi (CHANGELOG.md at v2.10.0):
# 2.8.1 "Fix vLLM with version above 0.18 failing to launch with multiple GPUs";
# 2.9.0 "Fix initialization error when using tensor parallelism on vLLM above 0.18",
# through HAMi-core commit 5091a2f, which 2.8.3 already bundles.
# The oldest release whose chart layout the values are written for (docs/hami.md).
OLDEST_SUPPORTED = (2, 7, 0)
VLLM_TP_LAUNCH_FIXED = (2, 8, 1)
VLLM_TP_INIT_FIXED = (2, 8, 3)
VLLM_TP_AFFECTED_FROM = (0, 18, 0)


def parse_version(version, what: str = "chart_version (hami_chart_version)") -> tuple[int, int, int]:
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", str(version or "").strip())
    if not match:
        raise ParameterError(f"{what}: {version!r} is not a HAMi release such as {DEFAULT_CHART_VERSION}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def local_chart_version(path: str) -> str:
    """The version in a local chart's Chart.yaml: a chart folder, or a
    tarball as `helm package` writes it (one top folder, Chart.yaml in it).
    What `helm show chart` prints for it, without starting helm."""
    import os
    import tarfile

    import yaml

    what = "chart_path (hami_chart_ref)"
    try:
        if os.path.isdir(path):
            with open(os.path.join(path, "Chart.yaml"), encoding="utf-8") as handle:
                text = handle.read()
        else:
            with tarfile.open(path) as archive:
                member = next((m for m in archive.getmembers()
                               if m.isfile() and m.name.count("/") == 1 and m.name.endswith("/Chart.yaml")), None)
                if member is None:
                    raise ParameterError(f"{what}: {path} holds no <chart>/Chart.yaml; give a chart folder or a "
                                         "tarball made by helm package")
                text = archive.extractfile(member).read().decode("utf-8")
    except (OSError, tarfile.TarError) as exc:
        raise ParameterError(f"{what}: cannot read a chart at {path} ({exc}); give a chart folder or a tarball made "
                             "by helm package, or hami_chart_ref: hami-charts/hami for the repository") from None
    try:
        chart = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(f"{what}: {path}: Chart.yaml is not YAML ({exc})") from None
    version = chart.get("version") if isinstance(chart, dict) else None
    if not version:
        raise ParameterError(f"{what}: {path}: Chart.yaml has no version")
    return str(version)


def node_selector_key(version) -> str:
    """The device plugin's node selector value, as the release spells it."""
    return "nvidiaNodeSelector" if parse_version(version) >= (2, 8, 0) else "nvidianodeSelector"


def kube_scheduler_tag(cluster_version: str) -> str:
    """The tag the chart itself derives from the cluster's version when none
    is given (_helpers.tpl, resolvedKubeSchedulerTag/strippedKubeVersion,
    v2.7.1 to v2.10.0): vX.Y.Z, without a distribution's suffix
    (v1.34.1+k3s1 and v1.31.4-eks-2d5f260 are v1.34.1 and v1.31.4)."""
    match = re.match(r"^v?(\d+\.\d+\.\d+)", str(cluster_version or "").strip())
    if not match:
        raise ParameterError(f"cluster_version: {cluster_version!r} has no vX.Y.Z in it; give the kube-scheduler "
                             "image tag as kube_scheduler_image_tag (hami_kube_scheduler_image_tag)")
    return f"v{match.group(1)}"


def _paths(values: dict, prefix: str = ""):
    for key, value in (values or {}).items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict):
            yield from _paths(value, path + ".")


def ignored_values(values: dict, version) -> list[str]:
    """Each value under a path the chosen release does not read, with the
    path it reads instead: a value the chart would silently drop."""
    release = parse_version(version)
    shown = ".".join(str(x) for x in release)
    paths = set(_paths(values))
    problems = []
    for old, new, since in MOVED_VALUES:
        since_text = ".".join(str(x) for x in since)
        if release >= since and any(p == old or p.startswith(old + ".") for p in paths):
            problems.append(f"{old} is not read by HAMi {shown} (it became {new} in {since_text}); use {new}")
        if release < since and any(p == new or p.startswith(new + ".") for p in paths):
            problems.append(f"{new} is not read by HAMi {shown} (it is read from {since_text} on); use {old}")
    for key, first, until in RANGED_VALUES:
        if key in paths and not first <= release < until:
            problems.append(f"{key} is read only by HAMi {'.'.join(map(str, first))} to before "
                            f"{'.'.join(map(str, until))}, not {shown}; remove it")
    return problems


def chart_values(version, node_label: dict, resource_name: str, resource_mem: str, resource_cores: str,
                 split_count: int, node_policy: str, gpu_policy: str, scheduler_tag: str) -> dict:
    """The values the role sets, in the chosen release's layout."""
    if parse_version(version) < OLDEST_SUPPORTED:
        raise ParameterError(f"chart_version (hami_chart_version): {version} is older than HAMi "
                             f"{'.'.join(map(str, OLDEST_SUPPORTED))}, the oldest release this collection knows the "
                             f"layout of; use {DEFAULT_CHART_VERSION} (or another from 2.7 on)")
    if split_count < 1:
        raise ParameterError(f"device_split_count (hami_device_split_count): {split_count} must be 1 or more (10 is "
                             "HAMi's default)")
    if not node_label:
        raise ParameterError("node_label (hami_node_label): empty; the device plugin would run on no node. Give the "
                             'label the GPU nodes carry, e.g. {gpu: "on"}')
    return {
        "resourceName": resource_name,
        "resourceMem": resource_mem,
        "resourceCores": resource_cores,
        "scheduler": {
            "defaultSchedulerPolicy": {"nodeSchedulerPolicy": node_policy, "gpuSchedulerPolicy": gpu_policy},
            "kubeScheduler": {"image": {"tag": scheduler_tag}},
        },
        "devicePlugin": {"deviceSplitCount": split_count, node_selector_key(version): dict(node_label)},
    }


def vllm_tensor_parallel_findings(hami_version, vllm_version: tuple[int, ...], tp: int) -> tuple[list[str], list[str]]:
    """(problems, warnings) of vLLM with tensor parallelism on a HAMi release."""
    if tp <= 1 or vllm_version < VLLM_TP_AFFECTED_FROM or not hami_version:
        return [], []
    release = parse_version(hami_version, "hami_version")
    shown = ".".join(map(str, release))
    if release < VLLM_TP_LAUNCH_FIXED:
        return [f"tensor_parallel_size {tp} with vLLM above 0.18 fails to launch on HAMi {shown} (fixed in HAMi "
                "2.8.1, per its changelog); upgrade HAMi (2.8.3 or newer) or serve on one GPU"], []
    if release < VLLM_TP_INIT_FIXED:
        return [], [f"HAMi {shown} still has the tensor-parallel initialization error with vLLM above 0.18 "
                    "(fixed by HAMi-core 5091a2f, bundled from HAMi 2.8.3; listed in 2.9.0's changelog)"]
    return [], []


def registration(nodes: list, plugin_status: dict, node_label: dict, check_mode: bool = False) -> dict:
    """Whether every node that carries the device plugin's label has its
    GPUs registered by HAMi (``nodes``: the gpu_node module's, each with
    ``hami.registered``) and runs a Ready device plugin pod (the DaemonSet's
    ``status.numberReady``): ``refusal`` (empty when so) and ``said`` (what
    was found, for check mode, where the install and the labels may only
    have been pretended and nothing real is refused)."""
    label = ",".join(f"{k}={v}" for k, v in (node_label or {}).items())
    nodes = nodes or []
    unregistered = [n.get("name") for n in nodes if not (n.get("hami") or {}).get("registered")]
    ready = int((plugin_status or {}).get("numberReady") or 0)
    refusal = ""
    if not nodes:
        refusal = f"No node carries {label}: label the GPU nodes first (playbooks/gpu_nodes.yml)."
    elif unregistered:
        refusal = (f"HAMi has not registered the GPUs of: {', '.join(unregistered)}. Check the device plugin pods on "
                   "those nodes and the NVIDIA runtime.")
    elif ready != len(nodes):
        refusal = (f"HAMi's device plugin is Ready on {ready} of the {len(nodes)} node(s) that carry {label}. Check "
                   "the device plugin pods on those nodes.")
    said = (f"Check mode: the GPU registration is not verified. Now {len(nodes)} node(s) carry {label}, "
            f"{len(nodes) - len(unregistered)} of them registered.")
    return {"refusal": "" if check_mode else refusal, "said": said if check_mode else ""}


# The HAMi-core commit each release vendors (its `libvgpu` submodule,
# .gitmodules and `git ls-tree vX.Y.Z libvgpu` in Project-HAMi/HAMi).
# HAMi-core (libvgpu.so) is what enforces a slice inside the pod.
VENDORED_HAMI_CORE = {
    "2.7.1": "8be6d90c1505396c9337b4f2c113d0966356b6fa",
    "2.8.0": "ec8979d1b7855541169ba7e765730d677c977679",
    "2.8.1": "94fff568c1ccb32cdbd0f2b51de6d12d2902f074",
    "2.8.2": "b6afdd021fbc88b76871ddbc1f93e9757151da30",
    "2.8.3": "5091a2fbe1816df1265490f771346730f29e2c8d",
    "2.9.0": "5091a2fbe1816df1265490f771346730f29e2c8d",
    "2.10.0": "b216ba1be1b8e21488d1c7370ed3357b3049aad1",
}

# Where HAMi's device plugin mounts the hook in the container, and the
# preload file it mounts over /etc/ld.so.preload (it never sets LD_PRELOAD):
# pkg/device-plugin/nvidiadevice/nvinternal/plugin/server.go, Allocate, at
# v2.7.1 (lines 513-579) and v2.10.0 (832-898), the same at every release
# between. Host side: <hook path>/vgpu/containers/<pod uid>_<container> at
# /usr/local/vgpu (read-write: the shared cache file), libvgpu.so.<version>
# at /usr/local/vgpu/libvgpu.so, /tmp/vgpulock, and the preload file.
HAMI_HOOK_DIR = "/usr/local/vgpu"
HAMI_PRELOAD_FILE = "/etc/ld.so.preload"
HAMI_LOCK_DIR = "/tmp/vgpulock"
LIBCUDA_LOG_LEVEL_DEFAULT = "1"  # charts/hami/values.yaml devicePlugin libCudaLogLevel


def container_env(chart_version, resources: dict, cache_id: str = "00000000-0000-0000-0000-000000000000",
                  core_policy: str = "default") -> dict:
    """The environment HAMi's device plugin gives a container of one GPU for
    these resources, at that release (server.go Allocate, lines above; the
    same at v2.7.1 and v2.10.0): CUDA_DEVICE_MEMORY_LIMIT_<i> per device as
    "<MiB>m" (no unsuffixed form), CUDA_DEVICE_SM_LIMIT once (the first
    device's cores, 0 when none were asked), CUDA_DEVICE_MEMORY_SHARED_CACHE
    at a new <uuid4>.cache per allocation (cache_id stands for it), and the
    chart's LIBCUDA_LOG_LEVEL. NVIDIA_VISIBLE_DEVICES (the GPU's UUID) is the
    container runtime's business and left out. HAMi-core reads "m" as MiB."""
    parse_version(chart_version)
    env = {}
    mem = resources.get("nvidia.com/gpumem")
    if mem:
        env["CUDA_DEVICE_MEMORY_LIMIT_0"] = f"{int(mem)}m"
    cores = resources.get("nvidia.com/gpucores")
    env["CUDA_DEVICE_SM_LIMIT"] = str(int(cores)) if cores else "0"
    env["CUDA_DEVICE_MEMORY_SHARED_CACHE"] = f"{HAMI_HOOK_DIR}/{cache_id}.cache"
    env["LIBCUDA_LOG_LEVEL"] = LIBCUDA_LOG_LEVEL_DEFAULT
    # The chart's devices.nvidia.gpuCorePolicy, when not "default", is added by HAMi's admission webhook
    # (pkg/device/nvidia/device.go MutateAdmission, v2.7.1 lines 317-323, v2.10.0 360-366).
    if core_policy != "default":
        env["GPU_CORE_UTILIZATION_POLICY"] = core_policy
    return env
