# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place for the label, annotation and resource names of GPU nodes:
what HAMi selects on, what NVIDIA's GPU feature discovery writes, what HAMi's
device plugin registers."""

from __future__ import annotations

# HAMi's device plugin DaemonSet selects nodes with this label
# (chart value devicePlugin.nvidianodeSelector, default {gpu: "on"}).
HAMI_NODE_LABEL = ("gpu", "on")

# Labels NVIDIA GPU feature discovery puts on GPU nodes.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"

# Extended resources (HAMi's chart values resourceName / resourceMem /
# resourceCores; these are the defaults).
RESOURCE_GPU = "nvidia.com/gpu"
RESOURCE_GPUMEM = "nvidia.com/gpumem"
RESOURCE_GPUCORES = "nvidia.com/gpucores"
# Chart value resourceMemPercentage (charts/hami/values.yaml, v2.7.1 to
# v2.10.0): memory per GPU as a percentage of the device's.
RESOURCE_GPUMEM_PERCENTAGE = "nvidia.com/gpumem-percentage"
GPU_RESOURCES = (RESOURCE_GPU, RESOURCE_GPUMEM, RESOURCE_GPUCORES)

# Annotations on a node HAMi has registered: the device plugin's list of GPUs,
# and the handshake (2.7.1: the plugin's "Reported <time>"; the scheduler's
# "Requesting_<time>"; "Deleted_<time>" after cleanup, which 2.10.0 deletes
# instead). Read from HAMi's sources at v2.7.1 to v2.10.0.
HAMI_REGISTER_ANNOTATION = "hami.io/node-nvidia-register"
HAMI_HANDSHAKE_ANNOTATIONS = ("hami.io/node-handshake",)

# Pod annotations HAMi's scheduler reads.
HAMI_USE_GPUTYPE = "nvidia.com/use-gputype"
HAMI_NOUSE_GPUTYPE = "nvidia.com/nouse-gputype"
HAMI_USE_GPUUUID = "nvidia.com/use-gpuuuid"
HAMI_NOUSE_GPUUUID = "nvidia.com/nouse-gpuuuid"
HAMI_NODE_POLICY = "hami.io/node-scheduler-policy"
HAMI_GPU_POLICY = "hami.io/gpu-scheduler-policy"

# Pod annotations HAMi's scheduler writes when it has placed a pod: the node
# (util.AssignedNodeAnnotations, pkg/util/types.go) and the GPUs each
# container got (device.SupportDevices["NVIDIA"], set in InitNvidiaDevice and
# written by PatchAnnotations, pkg/device/nvidia/device.go), v2.7.1 to v2.10.0.
HAMI_ASSIGNED_NODE_ANNOTATION = "hami.io/vgpu-node"
HAMI_ALLOCATED_ANNOTATION = "hami.io/vgpu-devices-allocated"
# Node annotation: UUIDs of GPUs HAMi must not place on (DeviceCordonAnnotation,
# pkg/device/nvidia/device.go, from v2.10.0).
HAMI_DEVICE_CORDON_ANNOTATION = "hami.io/device-cordon"
