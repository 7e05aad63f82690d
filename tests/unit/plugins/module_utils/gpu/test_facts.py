from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils.gpu._facts import container_runtime, parse_nvidia_smi

# What nvidia-smi printed on the device tool's H100 (2026-11-25), in the query form gpu_facts uses.
SMI_CSV = "0, NVIDIA H100 80GB HBM3, GPU-c1d8ae68-1524-9cf5-762c-4f51646bae33, 81559, 00000000:00:06.0, Disabled, 580.159.04\n"
SMI_HEADER = "| NVIDIA-SMI 580.159.04    Driver Version: 580.159.04    CUDA Version: 13.0     |"


def test_parse_nvidia_smi():
    facts = parse_nvidia_smi(SMI_CSV, SMI_HEADER)
    assert facts["driver_version"] == "580.159.04" and facts["cuda_driver_version"] == "13.0"
    assert facts["gpus"] == [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-c1d8ae68-1524-9cf5-762c-4f51646bae33",
                              "memory_total_mib": 81559, "pci_bus_id": "00000000:00:06.0", "mig_mode": "disabled"}]


def test_mig_not_supported_reads_as_unsupported():
    facts = parse_nvidia_smi("0, Tesla T4, GPU-x, 15360, 00000000:00:04.0, [N/A], 550.54\n")
    assert facts["gpus"][0]["mig_mode"] == "unsupported" and facts["cuda_driver_version"] is None


def test_containerd_dropin_sets_nvidia_default(tmp_path):
    (tmp_path / "etc/containerd/conf.d").mkdir(parents=True)
    main = 'version = 2\nimports = ["/etc/containerd/conf.d/*.toml"]\ndefault_runtime_name = "runc"\n'
    (tmp_path / "etc/containerd/config.toml").write_text(main)
    (tmp_path / "etc/containerd/conf.d/99-nvidia.toml").write_text(
        '[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "nvidia"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\n'
        '  BinaryName = "/usr/bin/nvidia-container-runtime"\n')
    facts = container_runtime(str(tmp_path))
    assert facts["containerd"]["default_runtime"] == "nvidia" and facts["containerd"]["nvidia_runtime"] is True
    assert facts["docker"] is None
