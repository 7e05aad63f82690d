"""The GPU host preflight's rules (module_utils/gpu/_preflight.py) and the
gpu_preflight module around them."""

from __future__ import annotations

import pytest

from support.modules import call

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _preflight as pf

# What a ready H100 host gives (the device tool's machine: Ubuntu 24.04,
# glibc 2.39, driver 580), with containerd from the distribution.
READY = dict(kernel="6.8.0-1015-nvidia", glibc="glibc 2.39", pci_vendor_ids=["0x8086", "0x10de\n", "0x1af4"],
             driver_version="580.159.04", container_runtime="containerd",
             runtime_packages=["containerd", "containerd.io"], runtime_package_version="1.7.24-0ubuntu1",
             runtime_binary="containerd", runtime_binary_version="")


def facts(**changes):
    return {**READY, **changes}


# --- the whole check --------------------------------------------------------

def test_a_ready_host_has_no_problems_and_a_full_report():
    result = pf.preflight(**READY)
    assert result["problems"] == []
    assert result["report"] == {"kernel": "6.8.0-1015-nvidia", "glibc": "2.39", "gpus_on_pci": 1,
                                "driver": "580.159.04", "runtime": "containerd 1.7.24-0ubuntu1", "problems": []}


def test_every_problem_at_once_in_rule_order():
    result = pf.preflight(**facts(kernel="4.19.0-26-amd64", pci_vendor_ids=["0x8086"], driver_version=None,
                                  manage_driver=False, runtime_package_version=""))
    assert result["problems"] == [
        "kernel 4.19.0-26-amd64 is older than 5.4",
        "no NVIDIA GPU on the PCI bus",
        "no NVIDIA driver, and manage_driver is false (nothing will install one)",
        "containerd is not installed (none of the packages containerd, containerd.io, and no containerd binary "
        "on the PATH)",
    ]
    assert result["report"]["runtime"] == "containerd (not installed)" and result["report"]["driver"] is None


# --- kernel -----------------------------------------------------------------

@pytest.mark.parametrize("kernel, minimum, older", [
    ("5.4.0-100-generic", "5.4", False),     # 5.4.0 is 5.4
    ("5.3.18-59", "5.4", True),
    ("5.4", "5.4.1", True),
    ("6.1.0-18-amd64", "5.4", False),
    ("5.10.0", "5.9", False),                # numbers, not text: 10 > 9
    ("4.18.0-513.el8.x86_64", "5.4", True),
])
def test_kernel_rule(kernel, minimum, older):
    problems = pf.kernel_problems(kernel, minimum)
    assert problems == ([f"kernel {kernel} is older than {minimum}"] if older else [])


# --- GPUs on the PCI bus ----------------------------------------------------

def test_nvidia_devices_are_counted_by_vendor_id():
    assert pf.count_nvidia(["0x10de", "0x10DE\n", " 0x10de ", "0x8086", "10de"]) == 4
    assert pf.count_nvidia([]) == 0


def test_gpu_rule_only_when_gpus_are_required():
    assert pf.gpu_problems(0, True) == ["no NVIDIA GPU on the PCI bus"]
    assert pf.gpu_problems(0, False) == []
    assert pf.gpu_problems(8, True) == []


def test_a_count_from_elsewhere_stands_for_the_vendor_ids():
    result = pf.preflight(**facts(pci_vendor_ids=None, nvidia_pci_count=8))
    assert result["report"]["gpus_on_pci"] == 8 and result["problems"] == []
    result = pf.preflight(**facts(pci_vendor_ids=None, nvidia_pci_count=0))
    assert result["problems"] == ["no NVIDIA GPU on the PCI bus"]


# --- driver -----------------------------------------------------------------

@pytest.mark.parametrize("driver, minimum, problems", [
    ("580.95.05", "550", []),
    ("550.127.05", "550", []),
    ("535.183.01", "550", ["driver 535.183.01 is older than 550"]),
    ("550.54.14", "550.127.05", ["driver 550.54.14 is older than 550.127.05"]),
])
def test_driver_version_rule(driver, minimum, problems):
    assert pf.driver_problems(driver, minimum) == problems


@pytest.mark.parametrize("require, manage, problems", [
    (True, False, ["no NVIDIA driver, and manage_driver is false (nothing will install one)"]),
    (True, True, []),    # the role installs one after the preflight
    (False, False, []),  # a host where a driver is not wanted (a container in the tests)
])
def test_missing_driver_rule(require, manage, problems):
    for absent in (None, ""):
        assert pf.driver_problems(absent, "550", require_driver=require, manage_driver=manage) == problems


def test_cuda_major_raises_the_minimum_to_what_nvidia_requires():
    assert pf.driver_problems("570.172.08", "550", cuda_major=13) == [
        "driver 570.172.08 is older than 580 (CUDA 13 needs it)"]
    assert pf.driver_problems("580.95.05", "550", cuda_major=13) == []
    # A minimum above CUDA's stays the minimum.
    assert pf.driver_problems("535.183.01", "550", cuda_major=12) == ["driver 535.183.01 is older than 550"]


# --- the driver branch a CUDA major needs (NVIDIA's compatibility table) ------

@pytest.mark.parametrize("cuda, branch", [(13, 580), (12, 525), (11, 450), ("12.8", 525), ("13", 580)])
def test_min_driver_branch(cuda, branch):
    assert pf.min_driver_branch(cuda) == branch


def test_the_role_default_minimum_runs_every_cuda_12_image():
    # gpu_node_min_driver_version defaults to 550: at or above what CUDA 12 needs,
    # below what CUDA 13 needs (set it to 580 for CUDA 13 images).
    assert pf.min_driver_branch(12) <= 550 < pf.min_driver_branch(13)


@pytest.mark.parametrize("cuda, message", [
    (10, "cuda_major: CUDA 10 is not in NVIDIA's driver table this collection knows (CUDA 11, 12, 13)"),
    (14, "cuda_major: CUDA 14 is not in NVIDIA's driver table"),
    ("twelve", "cuda_major: 'twelve' is not a CUDA major version (one of 11, 12, 13, such as 12)"),
    (None, "cuda_major: None is not a CUDA major version"),
    (True, "cuda_major: True is not a CUDA major version"),
])
def test_min_driver_branch_refuses_unknown_majors(cuda, message):
    with pytest.raises(ParameterError) as err:
        pf.min_driver_branch(cuda)
    assert message in err.value.msg


# --- container runtime --------------------------------------------------------

def test_the_package_version_wins_over_the_binary():
    assert pf.runtime_version("1.6.20~ds1-1+b1", "containerd github.com/containerd/containerd 9.9.9 x") == \
        "1.6.20~ds1-1+b1"


@pytest.mark.parametrize("output, version", [
    ("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1\n", "1.6.20~ds1"),
    ("containerd containerd.io v1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da\n", "1.7.27"),
    ("Docker version 20.10.24+dfsg1, build 297e128\n", "20.10.24+dfsg1"),
    ("crio version 1.31.3\nGitCommit: abc\n", "1.31.3"),
])
def test_a_runtime_outside_the_package_manager_is_found_by_its_binary(output, version):
    assert pf.runtime_version("", output) == f"{version} (binary, no package)"


def test_no_package_and_no_binary_is_a_problem_that_says_where_it_looked():
    result = pf.preflight(**facts(container_runtime="crio", runtime_packages=["cri-o"], runtime_package_version="",
                                  runtime_binary="crio", runtime_binary_version=""))
    assert result["problems"] == ["crio is not installed (none of the packages cri-o, and no crio binary on the PATH)"]
    assert result["report"]["runtime"] == "crio (not installed)"
    assert pf.runtime_problems("docker", "", (), "") == ["docker is not installed"]
    assert pf.runtime_problems("docker", "", (), "dockerd") == ["docker is not installed (no dockerd binary on the PATH)"]


def test_binary_output_without_a_version_is_no_version():
    assert pf.runtime_version("", "containerd: command not found") == ""


# --- glibc: reported, never refused -------------------------------------------

@pytest.mark.parametrize("glibc, reported", [("glibc 2.39", "2.39"), ("2.17", "2.17"), ("glibc 2.41\n", "2.41"),
                                             ("", "")])
def test_glibc_is_reported_and_never_a_problem(glibc, reported):
    result = pf.preflight(**facts(glibc=glibc))
    assert result["problems"] == [] and result["report"]["glibc"] == reported


# --- bad input: refused, naming the parameter and what is right -----------------

@pytest.mark.parametrize("changes, message", [
    ({"kernel": ""}, "kernel: '' is not a version (want it to start with numbers and dots, such as 6.1.0-18-amd64)"),
    ({"kernel": "linux"}, "kernel: 'linux' is not a version"),
    ({"min_kernel": "five"}, "min_kernel: 'five' is not a version (want it to start with numbers and dots, "
                             "such as 5.4)"),
    ({"min_driver_version": "r550"}, "min_driver_version: 'r550' is not a version (want it to start with numbers "
                                     "and dots, such as 550)"),
    ({"driver_version": "N/A"}, "driver_version: 'N/A' is not a version"),
    ({"pci_vendor_ids": ["0x10de", "nvidia"]}, "pci_vendor_ids: 'nvidia' is not a PCI vendor id (want four hex "
                                               "digits, such as 0x10de)"),
    ({"pci_vendor_ids": None, "nvidia_pci_count": -1}, "nvidia_pci_count: -1 is not a count (want 0 or more)"),
    ({"nvidia_pci_count": 2}, "pci_vendor_ids and nvidia_pci_count: give one of them, not both"),
    ({"pci_vendor_ids": None}, "pci_vendor_ids or nvidia_pci_count: one is required"),
    ({"container_runtime": "podman"}, "container_runtime: 'podman' is not one of containerd, docker, crio"),
    ({"cuda_major": 9}, "cuda_major: CUDA 9 is not in NVIDIA's driver table"),
])
def test_bad_input_is_refused_with_a_message_that_names_it(changes, message):
    with pytest.raises(ParameterError) as err:
        pf.preflight(**facts(**changes))
    assert message in err.value.msg


def test_bad_min_kernel_is_refused_even_when_the_kernel_is_fine():
    # Input is checked whatever the host looks like, so a typo never passes silently.
    with pytest.raises(ParameterError, match="min_kernel"):
        pf.kernel_problems("6.8.0", "")


# --- the module ---------------------------------------------------------------

def test_module_returns_report_and_problems_and_changes_nothing(capsys):
    result = call("gpu_preflight", {**READY, "pci_vendor_ids": ["0x10de"] * 8, "min_driver_version": "550",
                                    "cuda_major": 13}, capsys, check_mode=True)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is False and result["problems"] == []
    assert result["report"]["gpus_on_pci"] == 8 and result["report"]["runtime"] == "containerd 1.7.24-0ubuntu1"


def test_module_reports_problems_without_failing(capsys):
    result = call("gpu_preflight", {"kernel": "6.1.0-18-amd64", "nvidia_pci_count": 0, "container_runtime": "docker",
                                    "runtime_packages": ["docker-ce", "docker.io"], "runtime_binary": "dockerd",
                                    "runtime_binary_version": "Docker version 20.10.24+dfsg1, build 297e128",
                                    "manage_driver": False}, capsys)
    assert result.get("failed") is not True, result.get("msg")
    assert result["problems"] == ["no NVIDIA GPU on the PCI bus",
                                  "no NVIDIA driver, and manage_driver is false (nothing will install one)"]
    assert result["report"]["runtime"] == "docker 20.10.24+dfsg1 (binary, no package)"


@pytest.mark.parametrize("args, message", [
    ({"kernel": "6.1.0"}, "one of the following is required: pci_vendor_ids, nvidia_pci_count"),
    ({"kernel": "6.1.0", "nvidia_pci_count": 1, "pci_vendor_ids": []},
     "parameters are mutually exclusive: pci_vendor_ids|nvidia_pci_count"),
    ({"kernel": "6.1.0", "nvidia_pci_count": 1, "container_runtime": "podman"},
     "value of container_runtime must be one of: containerd, docker, crio, got: podman"),
    ({"kernel": "6.1.0", "nvidia_pci_count": 1, "min_driver_version": "r550"},
     "min_driver_version: 'r550' is not a version"),
    ({"kernel": "6.1.0", "nvidia_pci_count": 1, "cuda_major": 14}, "cuda_major: CUDA 14 is not in NVIDIA's"),
])
def test_module_refuses_bad_input(args, message, capsys):
    result = call("gpu_preflight", args, capsys)
    assert result["failed"] is True and message in result["msg"]
