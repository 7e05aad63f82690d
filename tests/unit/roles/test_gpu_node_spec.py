"""The gpu_node role's argument specs: every variable documented with its
type, default and description; the defaults pass their own spec; every
tasks_from in the collection names an entry point (Ansible looks the spec up
by that exact name, so `tasks_from: host.yml` would validate nothing); and a
wrong type for a host variable is refused by the role before any task runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "gpu_node"
SPECS = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
# Keys the spec documents that the validator does not take.
DOC_ONLY = {"description", "version_added"}


def validator(entry_point: str) -> ArgumentSpecValidator:
    options = {name: {k: v for k, v in spec.items() if k not in DOC_ONLY}
               for name, spec in SPECS[entry_point]["options"].items()}
    return ArgumentSpecValidator(options)


def test_entry_points_are_the_tasks_files_users_call():
    assert set(SPECS) == {"main", "host", "cluster", "teardown"}
    for name in SPECS:
        assert (ROLE / "tasks" / f"{name}.yml").is_file(), name


def test_every_default_is_documented_with_the_same_default():
    documented = {**SPECS["cluster"]["options"], **SPECS["host"]["options"]}
    assert set(DEFAULTS) == set(documented)
    for name, value in DEFAULTS.items():
        assert documented[name].get("default") == value, name


def is_text(value) -> bool:
    """A description: a string or a list of strings (a stray `key: value`
    inside unquoted YAML makes a dict, which ansible-doc renders badly)."""
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


@pytest.mark.parametrize("entry_point", sorted(SPECS))
def test_entry_points_are_described(entry_point):
    spec = SPECS[entry_point]
    assert isinstance(spec["short_description"], str) and is_text(spec["description"])


@pytest.mark.parametrize("entry_point", sorted(SPECS))
def test_every_option_has_type_and_description_and_none_is_required(entry_point):
    for name, spec in SPECS[entry_point]["options"].items():
        assert name.startswith("gpu_node_"), name
        assert spec.get("type") and spec.get("description") and is_text(spec["description"]), name
        assert not spec.get("required"), name
        if spec["type"] == "list":
            assert spec.get("elements"), name


@pytest.mark.parametrize("entry_point", sorted(SPECS))
def test_the_defaults_pass_their_spec(entry_point):
    options = SPECS[entry_point]["options"]
    result = validator(entry_point).validate({k: v for k, v in DEFAULTS.items() if k in options})
    assert result.error_messages == []


def role_calls(node, found: list) -> list:
    """Each include_role/import_role in a parsed playbook: (role name, tasks_from)."""
    if isinstance(node, dict):
        for key in ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role"):
            if isinstance(node.get(key), dict):
                found.append((node[key].get("name", ""), node[key].get("tasks_from", "main")))
        for value in node.values():
            role_calls(value, found)
    elif isinstance(node, list):
        for value in node:
            role_calls(value, found)
    return found


def test_every_tasks_from_names_an_entry_point():
    calls = []
    for path in [*(ROOT / "playbooks").glob("*.yml"), ROOT / "site.yml", *(ROLE / "molecule").rglob("*.yml")]:
        if not path.is_file():
            continue
        calls += [(path.name, tasks_from) for name, tasks_from in role_calls(yaml.safe_load(path.read_text()), [])
                  if name.split(".")[-1] == "gpu_node"]
    assert ("gpu_nodes.yml", "host") in calls
    for where, entry_point in calls:
        assert entry_point in SPECS, f"{where}: tasks_from {entry_point!r} names no entry point of {sorted(SPECS)}"


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
