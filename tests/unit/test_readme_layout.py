"""README.md's layout section names every file under plugins/ with a line
saying what it is, and nothing that is not there: a file added, moved or
removed without its line fails here, so the map cannot go stale."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A row of the section's table: | `plugins/...py` | what it is |
ROW = re.compile(r"^\|\s*`(plugins/[^`]+)`\s*\|(.*)\|\s*$")


def layout_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = re.search(r"^## Layout\b.*$", text, re.M)
    assert start, "README.md has no '## Layout' section"
    end = re.search(r"^## ", text[start.end():], re.M)
    return text[start.end(): start.end() + end.start() if end else len(text)]


def rows() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2).strip()) for line in layout_section().splitlines() if (m := ROW.match(line))]


def plugin_files() -> set[str]:
    return {str(path.relative_to(ROOT)) for path in (ROOT / "plugins").rglob("*.py")
            if path.name != "__init__.py" and "__pycache__" not in path.parts}


def test_every_file_under_plugins_is_in_the_layout_map():
    missing = sorted(plugin_files() - {row[0] for row in rows()})
    assert not missing, f"README.md's layout section has no line for {missing}"


def test_the_layout_map_names_only_files_that_exist():
    mentioned = {row[0] for row in rows()} | set(re.findall(r"\bplugins/[\w./-]+\.py\b", layout_section()))
    stale = sorted(name for name in mentioned if not (ROOT / name).is_file())
    assert not stale, f"README.md's layout section names files that do not exist: {stale}"


def test_each_file_has_one_line_saying_what_it_is():
    assert rows(), "README.md's layout section has no table of plugins/ files"
    twice = sorted(name for name, count in Counter(row[0] for row in rows()).items() if count > 1)
    assert not twice, f"named more than once: {twice}"
    undescribed = sorted(name for name, what in rows() if len(what) < 10)
    assert not undescribed, f"no description: {undescribed}"
