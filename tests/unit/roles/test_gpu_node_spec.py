"""The gpu_node role's argument specs, what is particular to them (the checks
every role's spec gets are in test_role_specs.py): its four entry points,
every default documented on the cluster or the host side, the host entry point
called as such by playbooks/gpu_nodes.yml; and a wrong type for a host
variable, or an unsupported OS, refused by the role before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from support.role_calls import calls_in_collection

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "gpu_node"
SPECS = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def test_entry_points_are_the_tasks_files_users_call():
    assert set(SPECS) == {"main", "host", "cluster", "teardown"}
    for name in SPECS:
        assert (ROLE / "tasks" / f"{name}.yml").is_file(), name


def test_every_cluster_and_host_option_has_a_default():
    documented = {**SPECS["cluster"]["options"], **SPECS["host"]["options"]}
    assert set(DEFAULTS) == set(documented)
    for name, value in DEFAULTS.items():
        assert documented[name].get("default") == value, name


def test_gpu_nodes_yml_calls_the_host_entry_point():
    calls = {(str(where), tasks_from) for where, role, tasks_from in calls_in_collection() if role == "gpu_node"}
    assert ("playbooks/gpu_nodes.yml", "host") in calls


def run_host_side(tmp_path, role_vars: str):
    """ansible-playbook on localhost with the role's host entry point, as
    playbooks/gpu_nodes.yml calls it. Only for runs that stop at the role's
    first checks: nothing of the role may run on this machine."""
    play = tmp_path / "play.yml"
    play.write_text(f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: inferops.vllm.gpu_node
        tasks_from: host
      vars:
{role_vars}
""")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(play)], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
                          env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})
    return proc.returncode, proc.stdout + proc.stderr


def test_the_role_refuses_a_wrong_type_for_a_host_variable_before_any_task(tmp_path):
    rc, out = run_host_side(tmp_path, "        gpu_node_require_gpus: perhaps\n"
                                      "        gpu_node_container_runtime: podman")
    assert rc == 2, out
    assert "Validating arguments against arg spec 'host'" in out
    assert "argument 'gpu_node_require_gpus' is of type str and we were unable to convert to bool" in out
    assert "value of gpu_node_container_runtime must be one of: containerd, docker, crio, got: podman" in out
    # The validation was the only task of the role that ran.
    assert out.count("TASK [inferops.vllm.gpu_node : ") == 1 and "failed=1" in out


def test_an_unsupported_os_family_stops_the_host_side_at_once(tmp_path):
    # The facts as setup would give them on an openSUSE host (so setup is skipped).
    rc, out = run_host_side(tmp_path, "        ansible_facts: {kernel: 6.4.0, os_family: Suse, "
                                      "distribution: openSUSE Leap}")
    assert rc == 2, out
    assert ("localhost runs openSUSE Leap, of the Suse OS family; gpu_node supports the Debian family (Debian, "
            "Ubuntu) and the RedHat family") in out
    # Validation, the skipped setup and the refusal: nothing after it ran.
    assert out.count("TASK [inferops.vllm.gpu_node : ") == 3 and "failed=1" in out
