"""Where the collection calls its roles with include_role/import_role, and
with which tasks_from (the entry point whose argument spec Ansible applies)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE_KEYS = ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role")


def role_calls(node, found: list | None = None) -> list:
    """Each include_role/import_role in a parsed YAML file: (role name, tasks_from)."""
    found = [] if found is None else found
    if isinstance(node, dict):
        for key in ROLE_KEYS:
            if isinstance(node.get(key), dict):
                found.append((node[key].get("name", ""), node[key].get("tasks_from", "main")))
        for value in node.values():
            role_calls(value, found)
    elif isinstance(node, list):
        for value in node:
            role_calls(value, found)
    return found


def calls_in_collection() -> list[tuple[Path, str, str]]:
    """(file relative to the checkout, role's short name, tasks_from) for every
    call in site.yml, playbooks/, every role's tasks/ and molecule/, and the
    ansible-test targets."""
    paths = [ROOT / "site.yml", *(ROOT / "playbooks").rglob("*.yml")]
    for role in sorted((ROOT / "roles").iterdir()):
        paths += [*(role / "tasks").rglob("*.yml"), *(role / "molecule").rglob("*.yml")]
    paths += [*(ROOT / "tests" / "integration" / "targets").rglob("*.yml")]
    calls = []
    for path in paths:
        if path.is_file():
            for name, tasks_from in role_calls(yaml.safe_load(path.read_text())):
                calls.append((path.relative_to(ROOT), str(name).rsplit(".", maxsplit=1)[-1], tasks_from))
    return calls
