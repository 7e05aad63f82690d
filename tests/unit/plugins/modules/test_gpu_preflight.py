"""gpu_preflight with the vLLM image that will run: its CUDA major sets the
oldest driver, by the same rule the serving plan reports."""

from __future__ import annotations

import pytest

from support.modules import call

HOST = {"kernel": "6.8.0-45-generic", "nvidia_pci_count": 8, "driver_version": "570.172.08",
        "container_runtime": "containerd", "runtime_packages": ["containerd"], "runtime_package_version": "1.7.28"}


@pytest.mark.parametrize("vllm_version, tag, refused", [
    ("latest", "", True),             # vLLM 0.34's image is CUDA 13: branch 580
    ("0.20.0", "", True),
    ("0.20.0", "v0.20.0-cu129", False),  # the CUDA 12.9 image beside it
    ("0.19.1", "", False),            # CUDA 12.9
])
def test_driver_570_against_the_vllm_image(capsys, vllm_version, tag, refused):
    result = call("gpu_preflight", {**HOST, "vllm_version": vllm_version, "vllm_image_tag": tag}, capsys)
    assert result.get("failed") is not True, result.get("msg")
    assert any("570.172.08" in p and "580" in p for p in result["problems"]) is refused, result["problems"]


def test_cuda_major_and_vllm_version_are_exclusive(capsys):
    result = call("gpu_preflight", {**HOST, "vllm_version": "latest", "cuda_major": 12}, capsys)
    assert result["failed"] is True and "mutually exclusive" in result["msg"]
