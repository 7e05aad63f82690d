"""Changelog fragments (changelogs/fragments/): each named NNNN-topic.yml with
a number no other fragment has (two branches that took the same next number
meet here when the second is merged), and each a mapping of the sections
changelogs/config.yaml knows (or antsibull-changelog's `trivial`)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1].parent
FRAGMENTS = ROOT / "changelogs" / "fragments"
NAME = re.compile(r"^(\d{4})-[a-z0-9][a-z0-9-]*\.yml$")


def fragments() -> list[Path]:
    return sorted(path for path in FRAGMENTS.iterdir() if not path.name.startswith("."))


def test_fragments_are_named_by_a_number_and_a_topic():
    wrong = [path.name for path in fragments() if not NAME.match(path.name)]
    assert not wrong, f"not NNNN-topic.yml: {wrong}"


def test_each_fragment_has_a_number_of_its_own():
    by_number = defaultdict(list)
    for path in fragments():
        if match := NAME.match(path.name):
            by_number[match.group(1)].append(path.name)
    taken = sorted(by_number)
    shared = {number: names for number, names in by_number.items() if len(names) > 1}
    assert not shared, (f"fragments sharing a number: {shared}; renumber all but the first "
                        f"(the next free number is {int(taken[-1]) + 1:04d})")


def test_each_fragment_is_a_mapping_of_known_sections():
    config = yaml.safe_load((ROOT / "changelogs" / "config.yaml").read_text())
    # antsibull-changelog's trivial section (not printed) is there whatever the config lists.
    sections = ({section[0] for section in config["sections"]} | {config["prelude_section_name"]}
                | {config.get("trivial_section_name", "trivial")})
    for path in fragments():
        body = yaml.safe_load(path.read_text())
        assert isinstance(body, dict) and body, path.name
        assert set(body) <= sections, f"{path.name}: {sorted(set(body) - sections)} are not sections of config.yaml"
