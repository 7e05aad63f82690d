"""Regenerate the variables section of each roles/<role>/README.md from the
role's meta/argument_specs.yml (the one place the variables are described).
The section sits between the BEGIN/END markers; the rest of the README is
written by hand. `--check` exits 1 when a README is stale (the unit tests run
it)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- BEGIN VARIABLES (hack/role-readme.py) -->", "<!-- END VARIABLES -->"


def cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def render(spec: dict) -> str:
    out = []
    for entry, body in spec["argument_specs"].items():
        how = "`roles: [inferops.vllm.ROLE]`" if entry == "main" else f"`tasks_from: {entry}`"
        out.append(f"### Entry point `{entry}` ({how})\n")
        out.append(cell(body.get("short_description", "")) + "\n")
        out.append("| variable | type | default | description |")
        out.append("| --- | --- | --- | --- |")
        for name, opt in (body.get("options") or {}).items():
            kind = opt.get("type", "str")
            if kind == "list" and opt.get("elements"):
                kind = f"list of {opt['elements']}"
            if opt.get("required"):
                default = "**required**"
            elif "default" in opt:
                default = f"`{yaml.safe_dump(opt['default'], default_flow_style=True).strip().removesuffix('...').strip()}`"
            else:
                default = ""
            choices = f" One of: {', '.join(f'`{c}`' for c in opt['choices'])}." if opt.get("choices") else ""
            desc = opt.get("description", "")
            desc = " ".join(desc) if isinstance(desc, list) else desc
            out.append(f"| `{name}` | {kind} | {cell(default)} | {cell(desc)}{choices} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for spec_path in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        role = spec_path.parents[1]
        readme = role / "README.md"
        if not readme.exists():
            print(f"{readme}: missing; write it, with a {BEGIN} ... {END} section", file=sys.stderr)
            return 2
        text = readme.read_text()
        if BEGIN not in text or END not in text:
            print(f"{readme}: no {BEGIN} ... {END} section", file=sys.stderr)
            return 2
        body = render(yaml.safe_load(spec_path.read_text())).replace("ROLE", role.name)
        new = text[: text.index(BEGIN) + len(BEGIN)] + "\n" + body + text[text.index(END):]
        if new != text:
            stale.append(str(readme.relative_to(ROOT)))
            if "--check" not in argv:
                readme.write_text(new)
    if stale and "--check" in argv:
        print("stale role READMEs (run .venv/bin/python hack/role-readme.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
