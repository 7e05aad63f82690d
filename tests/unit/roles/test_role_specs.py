"""Every role's argument specs (roles/*/meta/argument_specs.yml) against its
defaults and its callers: every default documented with the same default in
each entry point that documents it, every entry point a tasks file and
described, every option typed, described and prefixed with the role's name,
the defaults passing each entry point's spec, and every tasks_from in the
collection naming an entry point (Ansible looks the spec up by that exact
name, so `tasks_from: host.yml` would validate nothing).

Ansible validates a role's variables against the spec but takes their values
from defaults/main.yml: a `default:` in the spec is documentation only, so the
two must say the same, and a required option must have no default (a default
would satisfy the requirement and the check would never fire)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from support.role_calls import calls_in_collection

ROOT = Path(__file__).resolve().parents[3]
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "meta" / "argument_specs.yml").is_file())
# Keys the spec documents that the validator does not take.
DOC_ONLY = {"description", "version_added"}


def specs(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]


def defaults(role: str) -> dict:
    path = ROOT / "roles" / role / "defaults" / "main.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


ENTRY_POINTS = [(role, entry_point) for role in ROLES for entry_point in sorted(specs(role))]


def test_every_role_has_a_spec():
    assert sorted(path.name for path in (ROOT / "roles").iterdir() if path.is_dir()) == ROLES


def is_text(value) -> bool:
    """A description: a string or a list of strings (a stray `key: value`
    inside unquoted YAML makes a dict, which ansible-doc renders badly)."""
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def strip_doc(options: dict) -> dict:
    """The options as the validator takes them (suboptions too)."""
    stripped = {}
    for name, spec in options.items():
        spec = {k: v for k, v in spec.items() if k not in DOC_ONLY}
        if isinstance(spec.get("options"), dict):
            spec["options"] = strip_doc(spec["options"])
        stripped[name] = spec
    return stripped


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_documented(role):
    documented = {name for spec in specs(role).values() for name in spec.get("options", {})}
    missing = sorted(set(defaults(role)) - documented)
    assert not missing, f"{role}: defaults/main.yml sets {missing}, which no entry point's options document"


@pytest.mark.parametrize(("role", "entry_point"), ENTRY_POINTS)
def test_the_spec_says_the_defaults_default(role, entry_point):
    """An option the entry point documents has, in the spec, the default
    defaults/main.yml gives it (none where it gives none)."""
    values = defaults(role)
    differ = []
    for name, spec in specs(role)[entry_point].get("options", {}).items():
        if spec.get("default") != values.get(name):
            differ.append(f"{name}: spec default {spec.get('default')!r}, defaults/main.yml "
                          + (repr(values[name]) if name in values else "sets none"))
    assert not differ, f"{role} entry point {entry_point}:\n" + "\n".join(differ)


@pytest.mark.parametrize(("role", "entry_point"), ENTRY_POINTS)
def test_entry_points_are_tasks_files_and_described(role, entry_point):
    spec = specs(role)[entry_point]
    assert (ROOT / "roles" / role / "tasks" / f"{entry_point}.yml").is_file(), f"{role}: no tasks/{entry_point}.yml"
    assert isinstance(spec.get("short_description"), str), f"{role} {entry_point}: short_description"
    assert is_text(spec.get("description")), f"{role} {entry_point}: description"


def option_problems(role: str, options: dict, where: str, top: bool) -> list[str]:
    problems = []
    for name, spec in options.items():
        if top and not name.startswith(f"{role}_"):
            problems.append(f"{where}{name}: not prefixed with {role}_")
        if not spec.get("type"):
            problems.append(f"{where}{name}: no type")
        if not spec.get("description") or not is_text(spec["description"]):
            problems.append(f"{where}{name}: no description (a string or a list of strings)")
        if spec.get("type") == "list" and not spec.get("elements"):
            problems.append(f"{where}{name}: a list without elements")
        if isinstance(spec.get("options"), dict):
            problems += option_problems(role, spec["options"], f"{where}{name}.", top=False)
    return problems


@pytest.mark.parametrize(("role", "entry_point"), ENTRY_POINTS)
def test_every_option_has_type_and_description(role, entry_point):
    problems = option_problems(role, specs(role)[entry_point].get("options", {}), "", top=True)
    assert not problems, f"{role} entry point {entry_point}:\n" + "\n".join(problems)


@pytest.mark.parametrize(("role", "entry_point"), ENTRY_POINTS)
def test_a_required_option_has_no_default(role, entry_point):
    values = defaults(role)
    for name, spec in specs(role)[entry_point].get("options", {}).items():
        if spec.get("required"):
            assert name not in values and "default" not in spec, (
                f"{role} {entry_point}: {name} is required but has a default, so the requirement never fires")


@pytest.mark.parametrize(("role", "entry_point"), ENTRY_POINTS)
def test_the_defaults_pass_their_spec(role, entry_point):
    options = specs(role)[entry_point].get("options", {})
    # Required options have no default: give each a value of its type, so the
    # check is of the defaults alone.
    samples = {"str": "x", "path": "/x", "int": 1, "float": 1.0, "bool": True, "list": [], "dict": {}, "raw": "x"}
    given = {name: samples.get(spec.get("type", "raw"), "x") for name, spec in options.items() if spec.get("required")}
    values = {**given, **{k: v for k, v in defaults(role).items() if k in options}}
    result = ArgumentSpecValidator(strip_doc(options)).validate(values)
    assert result.error_messages == [], f"{role} {entry_point}"


def test_every_tasks_from_names_an_entry_point():
    calls = [(where, role, tasks_from) for where, role, tasks_from in calls_in_collection() if role in ROLES]
    # The scan finds the calls (playbooks/gpu_nodes.yml's and playbooks/teardown.yml's among them).
    assert {call[1:] for call in calls} >= {("gpu_node", "host"), ("hami", "teardown")}
    wrong = [f"{where}: tasks_from {tasks_from!r} names no entry point of {role} ({sorted(specs(role))})"
             for where, role, tasks_from in calls if tasks_from not in specs(role)]
    assert not wrong, "\n".join(wrong)
