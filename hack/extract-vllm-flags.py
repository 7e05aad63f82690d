"""Regenerate plugins/module_utils/serving/_vllm_flags_data.py: the option
strings that `vllm serve` accepts in each vLLM release, read from the
released wheels' own Python sources (parsed with `ast`, never imported).

    make vllm-flags
    # which runs:
    .venv/bin/python hack/extract-vllm-flags.py --output plugins/module_utils/serving/_vllm_flags_data.py

With no SOURCE, the releases are every minor from 0.10 on that the package
index serves (its latest patch; `pip index versions vllm`) plus
KEEP_VERSIONS; each wheel is fetched with `pip download --no-deps` into a
temporary folder, read, and deleted before the next one. A SOURCE may also
be a version (X.Y.Z), a wheel file, or an unpacked wheel (a folder holding
vllm/).

How `vllm serve` builds its parser, and so what is read (each step is
followed in the release's own files, wherever the release keeps them):

- vllm/entrypoints/cli/serve.py: `subparser_init` adds the `serve`
  subparser (argparse's -h/--help included) and calls `make_arg_parser`,
  imported from the module that defines it in that release
  (vllm/entrypoints/openai/cli_args.py up to 0.28, .../launchers/cli_args.py
  in 0.29-0.32, .../common/cli_args.py from 0.33);
- `make_arg_parser` adds a few literal flags, then `FrontendArgs.add_cli_args`
  and `AsyncEngineArgs.add_cli_args` (which calls `EngineArgs.add_cli_args`);
- `FrontendArgs.add_cli_args` turns every dataclass field of FrontendArgs
  (with those inherited from BaseFrontendArgs, from 0.17) into `--field-name`,
  plus extra names put under "flags" by `_customize_cli_kwargs`;
- `EngineArgs.add_cli_args` names each flag literally and takes its argparse
  kwargs from `get_kwargs(SomeConfig)["field"]`: a field whose type holds
  `bool` becomes a BooleanOptionalAction (`--x` and `--no-x`), except a
  field of a dataclass type and, in releases whose `_compute_kwargs` says
  so, a `bool | str | None` field (an optional-valued flag, no `--no-`);
  the config classes and type aliases are looked up across vllm/config;
- FlexibleArgumentParser (vllm/utils/argparse_utils.py): from 0.33 it
  registers EnableDisableAction for BooleanOptionalAction, so `--enable-x`
  also takes `--disable-x` (and `--disable-x` takes `--enable-x`), read from
  the class's `_inverse_prefixes`; the `--no-` forms still parse, hidden.

The statements of those functions are followed in order (assignments,
subscripts, `del`, loops over literal lists and over the kwargs table,
both arms of an `if` whose condition cannot be known statically). Anything
the reader cannot follow where a flag is added stops it with an error
rather than leaving a flag out.

A flag is deprecated when its add_argument says `deprecated=True`, its
action class is named Deprecated..., or its help says so ("is deprecated",
"[DEPRECATED]", "Deprecated:"...): see DEPRECATED_HELP.

The catalog, per version: "flags" (long option strings, the inverse
--disable-/--enable- forms included), "short_flags", "boolean" (the flags
that also take a hidden or shown `--no-` form) and "deprecated". Stored as
the first version plus, for each later one, what it adds and removes.

Proof against vLLM's own parser (see docs/serving_plan.md):

    python hack/extract-vllm-flags.py --dump-parser > vllm-X.Y.Z.json

run with the Python of a throwaway venv where that vLLM (and its torch) is
installed, prints every option string the real `vllm serve` parser accepts;
tests/unit/plugins/module_utils/serving/ compares the catalog with those
dumps.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile

FIRST_MINOR = (0, 10)
# Releases kept besides each minor's latest patch: 0.10.0 and 0.11.0 were in
# the catalog before; 0.20.0 is the release whose torch pin (2.11.0) the
# project's GPU test machine carries.
KEEP_VERSIONS = ("0.10.0", "0.11.0", "0.20.0")
CATALOG = "plugins/module_utils/serving/_vllm_flags_data.py"
DEPRECATED_HELP = re.compile(r"\bis deprecated\b|\[DEPRECATED\]|^\s*DEPRECATED\b|\bDeprecated[:.]|\bdeprecated and will be removed\b"
                             r"|\bhas been deprecated\b|\bare deprecated\b",
                             re.IGNORECASE | re.MULTILINE)
BUILTIN_TYPES = {"bool", "str", "int", "float", "dict", "list", "tuple", "set", "bytes", "frozenset"}


class ReadError(Exception):
    """The sources do something the reader cannot follow."""


def vkey(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])


# --------------------------------------------------------------------------
# Sources: a wheel or an unpacked wheel, module by module.

class Sources:
    def __init__(self, path: str):
        self.path = path
        self._zip = zipfile.ZipFile(path) if zipfile.is_zipfile(path) else None
        self._modules: dict[str, Module | None] = {}
        self.version = self._version()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def read(self, rel: str) -> str | None:
        if self._zip is not None:
            try:
                return self._zip.read(rel).decode()
            except KeyError:
                return None
        full = os.path.join(self.path, rel)
        if os.path.isfile(full):
            with open(full, encoding="utf-8") as f:
                return f.read()
        return None

    def _version(self) -> str:
        names = self._zip.namelist() if self._zip is not None else os.listdir(self.path)
        for name in names:
            m = re.match(r"vllm-(\d+\.\d+\.\d+(?:\.post\d+)?)\.dist-info", name)
            if m:
                return m.group(1)
        text = self.read("vllm/_version.py") or ""
        m = re.search(r"version = '(\d+\.\d+\.\d+)", text)
        if m:
            return m.group(1)
        raise SystemExit(f"{self.path}: no vllm-X.Y.Z.dist-info and no vllm/_version.py")

    def module(self, name: str) -> Module | None:
        if name not in self._modules:
            rel = name.replace(".", "/")
            text, is_pkg = self.read(rel + ".py"), False
            if text is None:
                text, is_pkg = self.read(rel + "/__init__.py"), True
            self._modules[name] = Module(self, name, text, is_pkg) if text is not None else None
        return self._modules[name]


class Module:
    def __init__(self, sources: Sources, name: str, text: str, is_pkg: bool):
        self.sources, self.name, self.is_pkg = sources, name, is_pkg
        self.tree = ast.parse(text)
        self.defs: dict[str, tuple] = {}
        self.star: list[str] = []  # modules of `from X import *`
        self._collect(self.tree.body)

    def _collect(self, body):
        for stmt in body:
            if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                self.defs[stmt.name] = ("node", stmt)
            elif isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        self.defs[target.id] = ("value", stmt.value)
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                self.defs[stmt.target.id] = ("value", stmt.value)
            elif isinstance(stmt, getattr(ast, "TypeAlias", ())) and isinstance(stmt.name, ast.Name):
                self.defs[stmt.name.id] = ("value", stmt.value)
            elif isinstance(stmt, ast.ImportFrom):
                base = self._absolute(stmt.module, stmt.level)
                for alias in stmt.names:
                    if alias.name == "*":
                        self.star.append(base)
                    else:
                        self.defs.setdefault(alias.asname or alias.name, ("from", base, alias.name))
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname:
                        self.defs.setdefault(alias.asname, ("module", alias.name))
                    else:
                        top = alias.name.split(".")[0]
                        self.defs.setdefault(top, ("module", top))
            elif isinstance(stmt, (ast.If, ast.Try)):
                self._collect(stmt.body)
                for handler in getattr(stmt, "handlers", []):
                    self._collect(handler.body)
                self._collect(stmt.orelse)

    def _absolute(self, module: str | None, level: int) -> str:
        if not level:
            return module or ""
        parts = self.name.split(".")
        if not self.is_pkg:
            parts = parts[:-1]
        parts = parts[:len(parts) - (level - 1)]
        return ".".join(parts + ([module] if module else []))


# --------------------------------------------------------------------------
# References and abstract values of the little interpreter.

class Opaque:
    """A value the reader does not know (and does not need to)."""

    def __init__(self, what: str = "?"):
        self.what = what

    def __repr__(self):
        return f"Opaque({self.what})"


class Sym:
    """A name outside vLLM's sources (argparse.BooleanOptionalAction, json.loads)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"Sym({self.name})"


class ModRef:
    def __init__(self, name: str):
        self.name = name


class ClassRef:
    def __init__(self, module: Module, node: ast.ClassDef):
        self.module, self.node = module, node


class FuncRef:
    def __init__(self, module: Module, node, owner: ClassRef | None = None, bound=None):
        self.module, self.node, self.owner, self.bound = module, node, owner, bound


class SuperRef:
    def __init__(self, owner: ClassRef, bound):
        self.owner, self.bound = owner, bound


class Parser:
    """The serve parser, or one of its argument groups (same option namespace)."""

    def __init__(self, record: list):
        self.record = record


class Table(dict):
    """get_kwargs(SomeConfig): field name -> argparse kwargs."""


def copy_value(value):
    """copy.deepcopy for the reader's values: containers copied, references
    (classes, modules, the wheel) shared."""
    if isinstance(value, dict):
        return type(value)((k, copy_value(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(copy_value(v) for v in value)
    return value


class Subparsers:
    def __init__(self, record: list):
        self.record = record


class Reader:
    def __init__(self, sources: Sources):
        self.src = sources
        self.depth = 0
        self.rules = {}

    # -- names ------------------------------------------------------------
    def resolve(self, module: Module, name: str, seen=None):
        seen = seen or set()
        if (module.name, name) in seen:
            return None
        seen.add((module.name, name))
        entry = module.defs.get(name)
        if entry is None:
            # A lazy package (`__getattr__` with a name -> module table) or a submodule.
            sub = self.src.module(f"{module.name}.{name}") if module.is_pkg else None
            if sub is not None:
                return ModRef(sub.name)
            for star in module.star:
                target = self.src.module(star)
                found = self.resolve(target, name, seen) if target is not None else None
                if found is not None:
                    return found
            return self._lazy(module, name, seen)
        kind = entry[0]
        if kind == "node":
            node = entry[1]
            return ClassRef(module, node) if isinstance(node, ast.ClassDef) else FuncRef(module, node)
        if kind == "value":
            return ("value", module, entry[1])
        if kind == "module":
            return ModRef(entry[1])
        base, orig = entry[1], entry[2]
        target = self.src.module(base)
        if target is None:
            return Sym(f"{base}.{orig}")
        found = self.resolve(target, orig, seen)
        if found is None and target.is_pkg and self.src.module(f"{base}.{orig}") is not None:
            return ModRef(f"{base}.{orig}")
        return found if found is not None else Sym(f"{base}.{orig}")

    def _lazy(self, module: Module, name: str, seen):
        for stmt in module.tree.body:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(stmt.value, ast.Dict):
                for k, v in zip(stmt.value.keys, stmt.value.values):
                    if isinstance(k, ast.Constant) and k.value == name and isinstance(v, ast.Constant) \
                            and isinstance(v.value, str) and ":" in v.value:
                        mod, _sep, attr = v.value.partition(":")
                        mod = module._absolute(mod.lstrip("."), len(mod) - len(mod.lstrip("."))) \
                            if mod.startswith(".") else mod
                        target = self.src.module(mod)
                        if target is not None:
                            return self.resolve(target, attr, seen)
        return None

    def module_of(self, ref: ModRef) -> Module | None:
        return self.src.module(ref.name)

    # -- classes ----------------------------------------------------------
    def bases(self, cls: ClassRef) -> list[ClassRef]:
        out = []
        for base in cls.node.bases:
            ref = self.eval_static(base, cls.module)
            if isinstance(ref, ClassRef):
                out.append(ref)
        return out

    def mro(self, cls: ClassRef) -> list[ClassRef]:
        out, todo = [], [cls]
        while todo:
            c = todo.pop(0)
            if all(c.node is not o.node for o in out):
                out.append(c)
                todo.extend(self.bases(c))
        return out

    def is_dataclass(self, cls: ClassRef) -> bool:
        for dec in cls.node.decorator_list:
            target = dec.func if isinstance(dec, ast.Call) else dec
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if name in ("dataclass", "config"):
                return True
        return any(self.is_dataclass(b) for b in self.bases(cls))

    def is_dict_subclass(self, cls: ClassRef) -> bool:
        for base in cls.node.bases:
            if isinstance(base, ast.Name) and base.id == "dict":
                return True
        return any(self.is_dict_subclass(b) for b in self.bases(cls))

    def fields(self, cls: ClassRef) -> dict[str, tuple]:
        """Dataclass fields in dataclasses' order: (annotation, module, doc)."""
        out: dict[str, tuple] = {}
        for base in reversed(self.bases(cls)):
            if self.is_dataclass(base):
                for name, info in self.fields(base).items():
                    out[name] = info
        body = cls.node.body
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                ann = ast.unparse(stmt.annotation)
                if re.match(r"^(typing\.)?(ClassVar|InitVar|dataclasses\.InitVar|KW_ONLY)\b", ann) or \
                        ann in ("KW_ONLY", "dataclasses.KW_ONLY"):
                    continue
                doc = ""
                if i + 1 < len(body) and isinstance(body[i + 1], ast.Expr) and \
                        isinstance(body[i + 1].value, ast.Constant) and isinstance(body[i + 1].value.value, str):
                    doc = body[i + 1].value.value
                out[stmt.target.id] = (stmt.annotation, cls.module, doc)
        return out

    def method(self, cls: ClassRef, name: str, start_after: ClassRef | None = None):
        chain = self.mro(cls)
        if start_after is not None:
            idx = next(i for i, c in enumerate(chain) if c.node is start_after.node)
            chain = chain[idx + 1:]
        for c in chain:
            for stmt in c.node.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
                    return FuncRef(c.module, stmt, owner=c)
        return None

    # -- types --------------------------------------------------------------
    def type_atoms(self, node, module: Module, depth=0) -> set[str]:
        """The top-level members of a type hint as vLLM's get_type_hints
        flattens it (Annotated and Union/Optional/| unpacked)."""
        if depth > 20:
            raise ReadError(f"{module.name}: type alias loop at {ast.unparse(node)}")
        if node is None or (isinstance(node, ast.Constant) and node.value is None):
            return {"None"}
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return self.type_atoms(ast.parse(node.value, mode="eval").body, module, depth + 1)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self.type_atoms(node.left, module, depth + 1) | self.type_atoms(node.right, module, depth + 1)
        if isinstance(node, ast.Subscript):
            base = self._type_name(node.value)
            elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if base == "Optional":
                return self.type_atoms(elts[0], module, depth + 1) | {"None"}
            if base == "Union":
                return set().union(*(self.type_atoms(e, module, depth + 1) for e in elts))
            if base in ("Annotated", "SkipValidation"):  # pydantic's SkipValidation[T] is Annotated[T, ...]
                return self.type_atoms(elts[0], module, depth + 1)
            if base in ("Literal", "list", "dict", "tuple", "set", "List", "Dict", "Tuple", "Set", "type"):
                return {base.lower() if base != "Literal" else "Literal"}
            ref = self.eval_static(node.value, module)
            return {self._atom_of_ref(ref, module, depth)}
        if isinstance(node, (ast.Name, ast.Attribute)):
            name = self._type_name(node)
            if name in BUILTIN_TYPES:
                return {name}
            if name in ("Any", "Callable"):
                return {name}
            ref = self.eval_static(node, module)
            return {self._atom_of_ref(ref, module, depth)} if not isinstance(ref, set) else ref
        return {"?" + ast.unparse(node)}

    def _atom_of_ref(self, ref, module, depth):
        if isinstance(ref, ClassRef):
            if self.is_dataclass(ref):
                return "dataclass"
            return "dict" if self.is_dict_subclass(ref) else "class:" + ref.node.name
        if isinstance(ref, tuple) and ref[0] == "value":
            atoms = self.type_atoms(ref[2], ref[1], depth + 1)
            if len(atoms) == 1:
                return next(iter(atoms))
            return "|".join(sorted(atoms))
        return "ext"

    @staticmethod
    def _type_name(node) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return node.attr if isinstance(node.value, ast.Name) and node.value.id in ("typing", "typing_extensions") \
                else ast.unparse(node)
        return ast.unparse(node)

    def flatten(self, node, module) -> set[str]:
        out = set()
        for atom in self.type_atoms(node, module):
            out.update(atom.split("|"))
        return out

    # -- the kwargs vLLM computes for a config dataclass's fields -----------
    def get_kwargs(self, cls: ClassRef) -> dict[str, dict]:
        table = Table()
        for name, (ann, module, doc) in self.fields(cls).items():
            atoms = self.flatten(ann, module)
            kw = {"default": Opaque("default"), "help": doc}
            if "dataclass" in atoms:
                kw["type"] = Sym("parse_dataclass")
            elif self.rules["optional_valued"] and atoms == {"bool", "str", "None"}:
                kw.update(type=Sym("str"), nargs="?", const=True)
            elif "bool" in atoms:
                kw["action"] = Sym("argparse.BooleanOptionalAction")
            else:
                kw["type"] = Sym("?")
                if atoms & {"list", "tuple", "set"}:
                    kw["nargs"] = "+"
            table[name] = kw
        return table

    # -- static evaluation (module level: constants, aliases, references) ----
    def eval_static(self, node, module: Module):
        if isinstance(node, ast.Name):
            if node.id in BUILTIN_TYPES:
                return Sym(node.id)
            ref = self.resolve(module, node.id)
            return ref if ref is not None else Sym(node.id)
        if isinstance(node, ast.Attribute):
            base = self.eval_static(node.value, module)
            if isinstance(base, ModRef):
                target = self.module_of(base)
                if target is None:
                    return Sym(f"{base.name}.{node.attr}")
                ref = self.resolve(target, node.attr)
                return ref if ref is not None else Sym(f"{base.name}.{node.attr}")
            if isinstance(base, ClassRef):
                return self.method(base, node.attr) or Opaque(ast.unparse(node))
            if isinstance(base, Sym):
                return Sym(f"{base.name}.{node.attr}")
            return Opaque(ast.unparse(node))
        return Opaque(ast.unparse(node))

    def constant(self, node, module: Module, depth=0):
        """A module-level string (help texts kept in constants)."""
        if depth > 10:
            return Opaque()
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            a, b = self.constant(node.left, module, depth + 1), self.constant(node.right, module, depth + 1)
            return a + b if isinstance(a, str) and isinstance(b, str) else Opaque()
        if isinstance(node, ast.JoinedStr):
            return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        if isinstance(node, ast.Name):
            ref = self.resolve(module, node.id)
            if isinstance(ref, tuple) and ref[0] == "value":
                return self.constant(ref[2], ref[1], depth + 1)
        return Opaque()

    # -- the interpreter ------------------------------------------------------
    def call_function(self, func: FuncRef, args: list, kwargs: dict):
        self.depth += 1
        if self.depth > 40:
            raise ReadError("call depth")
        node = func.node
        decorators = {ast.unparse(d) for d in node.decorator_list}
        params = [a.arg for a in node.args.posonlyargs + node.args.args]
        env: dict = {}
        if func.bound is not None and "staticmethod" not in decorators:
            env[params[0]] = func.bound
            params = params[1:]
        defaults = node.args.defaults
        for i, p in enumerate(params):
            d = i - (len(params) - len(defaults))
            if d >= 0:
                env[p] = self.eval(defaults[d], func, {})
        for p, v in zip(params, args):
            env[p] = v
        for kwo, d in zip(node.args.kwonlyargs, node.args.kw_defaults):
            env[kwo.arg] = self.eval(d, func, {}) if d is not None else Opaque()
        env.update(kwargs)
        env["__return__"] = None
        self.exec_body(node.body, func, env)
        self.depth -= 1
        return env["__return__"]

    def exec_body(self, body, func: FuncRef, env: dict):
        for stmt in body:
            self.exec_stmt(stmt, func, env)

    def exec_stmt(self, stmt, func, env):
        if isinstance(stmt, ast.Expr):
            self.eval(stmt.value, func, env)
        elif isinstance(stmt, ast.Assign):
            value = self.eval(stmt.value, func, env)
            for target in stmt.targets:
                self.assign(target, value, func, env)
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.value is not None:
                self.assign(stmt.target, self.eval(stmt.value, func, env), func, env)
        elif isinstance(stmt, ast.AugAssign):
            if isinstance(stmt.target, ast.Name):
                env[stmt.target.id] = Opaque()
        elif isinstance(stmt, ast.Delete):
            for target in stmt.targets:
                if isinstance(target, ast.Subscript):
                    container = self.eval(target.value, func, env)
                    key = self.eval(target.slice, func, env)
                    if isinstance(container, dict) and isinstance(key, str):
                        container.pop(key, None)
        elif isinstance(stmt, ast.Return):
            env["__return__"] = self.eval(stmt.value, func, env) if stmt.value is not None else None
        elif isinstance(stmt, ast.If):
            cond = self.eval(stmt.test, func, env)
            if cond is True or cond is False:
                self.exec_body(stmt.body if cond else stmt.orelse, func, env)
            else:
                self.exec_body(stmt.body, func, env)
                self.exec_body(stmt.orelse, func, env)
        elif isinstance(stmt, ast.For):
            items = self.eval(stmt.iter, func, env)
            if not isinstance(items, (list, tuple)):
                if self.adds_arguments(stmt):
                    raise ReadError(f"{func.module.name}:{stmt.lineno}: a loop over {ast.unparse(stmt.iter)} adds flags")
                return
            for item in items:
                self.assign(stmt.target, item, func, env)
                self.exec_body(stmt.body, func, env)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            self.exec_body(stmt.body, func, env)
        elif isinstance(stmt, ast.Try):
            self.exec_body(stmt.body, func, env)
            self.exec_body(stmt.orelse, func, env)
            self.exec_body(stmt.finalbody, func, env)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                name = alias.asname or alias.name.split(".")[0]
                if isinstance(stmt, ast.ImportFrom):
                    base = func.module._absolute(stmt.module, stmt.level)
                    target = self.src.module(base)
                    ref = self.resolve(target, alias.name) if target is not None else None
                    env[name] = ref if ref is not None else Sym(f"{base}.{alias.name}")
                else:
                    env[name] = ModRef(alias.asname and alias.name or name)
        elif isinstance(stmt, (ast.Pass, ast.Raise, ast.Assert, ast.Global, ast.Nonlocal, ast.FunctionDef,
                               ast.ClassDef, ast.Break, ast.Continue, ast.While)):
            if isinstance(stmt, ast.While) and self.adds_arguments(stmt):
                raise ReadError(f"{func.module.name}:{stmt.lineno}: a while loop adds flags")
        else:
            if self.adds_arguments(stmt):
                raise ReadError(f"{func.module.name}:{stmt.lineno}: cannot follow {type(stmt).__name__}")

    @staticmethod
    def adds_arguments(node) -> bool:
        return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                   and n.func.attr in ("add_argument", "add_cli_args") for n in ast.walk(node))

    def assign(self, target, value, func, env):
        if isinstance(target, ast.Name):
            env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = list(value) if isinstance(value, (list, tuple)) else [Opaque()] * len(target.elts)
            for t, v in zip(target.elts, values):
                self.assign(t, v, func, env)
        elif isinstance(target, ast.Subscript):
            container = self.eval(target.value, func, env)
            key = self.eval(target.slice, func, env)
            if isinstance(container, dict) and isinstance(key, str):
                container[key] = value

    def eval(self, node, func: FuncRef, env: dict):
        if node is None:
            return None
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            if node.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.id]
            ref = self.resolve(func.module, node.id)
            if isinstance(ref, tuple) and ref[0] == "value":
                value = self.constant(ref[2], ref[1])
                return value if not isinstance(value, Opaque) else Opaque(node.id)
            return ref if ref is not None else Sym(node.id)
        if isinstance(node, (ast.List, ast.Tuple)):
            out = []
            for elt in node.elts:
                if isinstance(elt, ast.Starred):
                    inner = self.eval(elt.value, func, env)
                    out.extend(inner if isinstance(inner, (list, tuple)) else [Opaque()])
                else:
                    out.append(self.eval(elt, func, env))
            return out if isinstance(node, ast.List) else tuple(out)
        if isinstance(node, ast.Dict):
            out = {}
            for k, v in zip(node.keys, node.values):
                if k is None:
                    inner = self.eval(v, func, env)
                    if isinstance(inner, dict):
                        out.update(copy_value(inner))
                    else:
                        out["**"] = Opaque(ast.unparse(v))
                else:
                    key = self.eval(k, func, env)
                    out[key if isinstance(key, str) else repr(key)] = self.eval(v, func, env)
            return out
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                if isinstance(v, ast.Constant):
                    parts.append(v.value)
                else:
                    inner = self.eval(v.value, func, env)
                    if not isinstance(inner, (str, int, float)):
                        return Opaque(ast.unparse(node))
                    parts.append(str(inner))
            return "".join(parts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            a, b = self.eval(node.left, func, env), self.eval(node.right, func, env)
            if isinstance(a, str) and isinstance(b, str) or isinstance(a, list) and isinstance(b, list):
                return a + b
            return Opaque(ast.unparse(node))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            v = self.eval(node.operand, func, env)
            return (not v) if isinstance(v, bool) else Opaque()
        if isinstance(node, ast.BoolOp):
            values = [self.eval(v, func, env) for v in node.values]
            if all(isinstance(v, bool) for v in values):
                return all(values) if isinstance(node.op, ast.And) else any(values)
            if isinstance(node.op, ast.And) and any(v is False for v in values):
                return False
            if isinstance(node.op, ast.Or) and any(v is True for v in values):
                return True
            return Opaque()
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)):
            left, right = self.eval(node.left, func, env), self.eval(node.comparators[0], func, env)
            if isinstance(left, str) and isinstance(right, (dict, list, tuple)):
                found = left in right
                return found if isinstance(node.ops[0], ast.In) else not found
            return Opaque()
        if isinstance(node, ast.Subscript):
            container = self.eval(node.value, func, env)
            key = self.eval(node.slice, func, env)
            if isinstance(container, dict) and isinstance(key, str):
                if key not in container:
                    if isinstance(container, Table):
                        raise ReadError(f"{func.module.name}:{node.lineno}: no field {key!r} in "
                                        f"{ast.unparse(node.value)}")
                    return Opaque(key)
                return container[key]
            if isinstance(container, (list, tuple)) and isinstance(key, int):
                return container[key]
            return Opaque(ast.unparse(node))
        if isinstance(node, ast.Attribute):
            base = self.eval(node.value, func, env)
            if isinstance(base, ModRef):
                target = self.module_of(base)
                ref = self.resolve(target, node.attr) if target is not None else None
                return ref if ref is not None else Sym(f"{base.name}.{node.attr}")
            if isinstance(base, Sym):
                return Sym(f"{base.name}.{node.attr}")
            if isinstance(base, ClassRef):
                for c in self.mro(base):
                    for stmt in c.node.body:
                        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == node.attr:
                            return FuncRef(c.module, stmt, owner=c, bound=base)
                        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                            if any(isinstance(t, ast.Name) and t.id == node.attr for t in targets) and stmt.value:
                                return self.constant(stmt.value, c.module)
                return Opaque(ast.unparse(node))
            if isinstance(base, SuperRef):
                found = self.method(base.bound, node.attr, start_after=base.owner)
                if found is None:
                    return Opaque(ast.unparse(node))
                return FuncRef(found.module, found.node, owner=found.owner, bound=base.bound)
            return ("attr", base, node.attr)
        if isinstance(node, ast.Call):
            return self.eval_call(node, func, env)
        if isinstance(node, ast.IfExp):
            cond = self.eval(node.test, func, env)
            if isinstance(cond, bool):
                return self.eval(node.body if cond else node.orelse, func, env)
            return Opaque(ast.unparse(node))
        return Opaque(ast.unparse(node))

    def eval_call(self, node: ast.Call, func: FuncRef, env: dict):
        callee = self.eval(node.func, func, env)
        args = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                inner = self.eval(a.value, func, env)
                if not isinstance(inner, (list, tuple)):
                    raise ReadError(f"{func.module.name}:{node.lineno}: cannot expand *{ast.unparse(a.value)}")
                args.extend(inner)
            else:
                args.append(self.eval(a, func, env))
        kwargs = {}
        for k in node.keywords:
            if k.arg is None:
                inner = self.eval(k.value, func, env)
                if not isinstance(inner, dict):
                    if isinstance(callee, tuple) and callee[0] == "attr" and callee[2] == "add_argument":
                        raise ReadError(f"{func.module.name}:{node.lineno}: cannot read **{ast.unparse(k.value)}")
                    continue
                kwargs.update(copy_value(inner))
            else:
                kwargs[k.arg] = self.eval(k.value, func, env)
        # Methods of values the reader models.
        if isinstance(callee, tuple) and callee[0] == "attr":
            obj, name = callee[1], callee[2]
            if isinstance(obj, Parser):
                if name == "add_argument":
                    self.add_argument(obj, args, kwargs, func, node)
                    return Opaque("action")
                if name in ("add_argument_group", "add_mutually_exclusive_group"):
                    return Parser(obj.record)
                return Opaque(name)
            if isinstance(obj, Subparsers) and name == "add_parser":
                parser = Parser(obj.record)
                if kwargs.get("add_help", True) is not False:
                    obj.record.append({"options": ["-h", "--help"], "action": "help", "deprecated": False,
                                       "help": "", "where": "argparse"})
                return parser
            if isinstance(obj, dict):
                if name == "items":
                    return list(obj.items())
                if name in ("keys", "values"):
                    return list(getattr(obj, name)())
                if name == "pop":
                    return obj.pop(args[0], args[1] if len(args) > 1 else None)
                if name == "get":
                    return obj.get(args[0], args[1] if len(args) > 1 else None)
                if name == "copy":
                    return copy_value(obj)
                if name == "update" and args and isinstance(args[0], dict):
                    obj.update(copy_value(args[0]))
                    return None
                return Opaque(name)
            if isinstance(obj, str) and name in ("replace", "lower", "upper", "strip", "removeprefix",
                                                 "removesuffix"):
                if all(isinstance(a, str) for a in args):
                    return getattr(obj, name)(*args)
                return Opaque()
            return Opaque(name)
        if isinstance(callee, Sym):
            if callee.name in ("copy.deepcopy", "copy.copy", "dict") and args and isinstance(args[0], dict):
                return copy_value(args[0])
            if callee.name == "super":
                return SuperRef(func.owner, env.get([a.arg for a in func.node.args.args][0]))
            return Opaque(callee.name)
        if isinstance(callee, FuncRef):
            if callee.node.name in ("get_kwargs", "_compute_kwargs") and args and isinstance(args[0], ClassRef):
                return self.get_kwargs(args[0])
            if callee.owner is not None or self.adds_arguments(callee.node) or \
                    any(isinstance(a, (Parser, Subparsers)) for a in args):
                if any(isinstance(a, (Parser, Subparsers)) for a in args) and not self.adds_arguments(callee.node) \
                        and callee.owner is None:
                    return Opaque(callee.node.name)
                return self.call_function(callee, args, kwargs)
            return Opaque(callee.node.name)
        if isinstance(callee, ClassRef):
            return Opaque(callee.node.name)
        if any(isinstance(a, Parser) for a in args):
            raise ReadError(f"{func.module.name}:{node.lineno}: cannot follow {ast.unparse(node.func)}(parser)")
        return Opaque(ast.unparse(node.func))

    def add_argument(self, parser: Parser, args, kwargs, func, node):
        options, positional = [], []
        for a in args:
            if not isinstance(a, str):
                raise ReadError(f"{func.module.name}:{node.lineno}: a flag name the reader cannot know: "
                                f"{ast.unparse(node)[:120]}")
            (options if a.startswith("-") else positional).append(a)
        if not options:
            return
        action = kwargs.get("action")
        if isinstance(action, Sym):
            kind = action.name.split(".")[-1]
        elif isinstance(action, ClassRef):
            kind = action.node.name
        elif isinstance(action, str):
            kind = action
        else:
            kind = "store"
        help_text = kwargs.get("help")
        help_text = help_text if isinstance(help_text, str) else ""
        deprecated = kwargs.get("deprecated") is True or "deprecat" in kind.lower() or \
            bool(DEPRECATED_HELP.search(help_text))
        parser.record.append({"options": options, "action": kind, "deprecated": deprecated, "help": help_text,
                              "where": f"{func.module.name}:{node.lineno}"})


# --------------------------------------------------------------------------
# What one release accepts.

def read_rules(reader: Reader) -> dict:
    """How this release registers booleans: read from its own sources."""
    rules = {"optional_valued": False, "inverse_prefixes": {}}
    arg_utils = reader.src.module("vllm.engine.arg_utils")
    if arg_utils is None:
        raise ReadError("no vllm/engine/arg_utils.py")
    compute = arg_utils.defs.get("_compute_kwargs") or arg_utils.defs.get("get_kwargs")
    if compute is None:
        raise ReadError("vllm/engine/arg_utils.py: no _compute_kwargs/get_kwargs")
    tests = []
    for n in ast.walk(compute[1]):
        if isinstance(n, ast.If):
            tests.append(ast.unparse(n.test))
    order = [t for t in tests if t in ("dataclass_cls is not None", "type_hints == {bool, str, type(None)}",
                                       "contains_type(type_hints, bool)")]
    if not order or order[0] != "dataclass_cls is not None" or order[-1] != "contains_type(type_hints, bool)":
        raise ReadError(f"vllm/engine/arg_utils.py: the type rules changed: {order}")
    rules["optional_valued"] = "type_hints == {bool, str, type(None)}" in order
    # FlexibleArgumentParser: does it swap BooleanOptionalAction for its own action?
    for modname in ("vllm.utils.argparse_utils", "vllm.utils"):
        module = reader.src.module(modname)
        if module is None or "FlexibleArgumentParser" not in module.defs:
            continue
        cls = module.defs["FlexibleArgumentParser"][1]
        for n in ast.walk(cls):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "register" \
                    and len(n.args) == 3 and isinstance(n.args[0], ast.Constant) and n.args[0].value == "action":
                if ast.unparse(n.args[1]).rsplit(".", maxsplit=1)[-1] != "BooleanOptionalAction":
                    raise ReadError(f"{modname}: registers an action the reader does not know: {ast.unparse(n)}")
                replacement = reader.eval_static(n.args[2], module)
                if not isinstance(replacement, ClassRef):
                    raise ReadError(f"{modname}: cannot find {ast.unparse(n.args[2])}")
                for stmt in replacement.node.body:
                    target = stmt.targets[0] if isinstance(stmt, ast.Assign) else getattr(stmt, "target", None)
                    if isinstance(target, ast.Name) and target.id == "_inverse_prefixes":
                        rules["inverse_prefixes"] = ast.literal_eval(stmt.value)
                        rules["inverse_action"] = replacement.node.name
                if not rules["inverse_prefixes"]:
                    raise ReadError(f"{modname}: {replacement.node.name} has no _inverse_prefixes")
        break
    else:
        raise ReadError("no FlexibleArgumentParser found")
    return rules


def accepted_strings(entry: dict, rules: dict) -> tuple[list[str], list[str]]:
    """(every option string argparse registers for the action, those a
    catalog derives: --no- forms)."""
    opts = list(entry["options"])
    derived = []
    if entry["action"] == "BooleanOptionalAction":
        derived = ["--no-" + o[2:] for o in opts if o.startswith("--")]
        for o in list(opts):
            for prefix, inverse in rules["inverse_prefixes"].items():
                if o.startswith(prefix):
                    opts.append(inverse + o[len(prefix):])
    return opts, derived


def extract(sources: Sources) -> dict:
    reader = Reader(sources)
    reader.rules = read_rules(reader)
    serve = sources.module("vllm.entrypoints.cli.serve")
    if serve is None:
        raise ReadError("no vllm/entrypoints/cli/serve.py")
    init = next((n for n in ast.walk(serve.tree) if isinstance(n, ast.FunctionDef) and n.name == "subparser_init"),
                None)
    if init is None:
        raise ReadError("vllm/entrypoints/cli/serve.py: no subparser_init")
    record: list[dict] = []
    reader.call_function(FuncRef(serve, init), [Opaque("self"), Subparsers(record)], {})
    flags, short, boolean, deprecated, seen = set(), set(), set(), set(), {}
    for entry in record:
        opts, derived = accepted_strings(entry, reader.rules)
        for o in opts + derived:
            if o in seen:
                raise ReadError(f"{o} added twice ({seen[o]} and {entry['where']}): argparse would refuse it")
            seen[o] = entry["where"]
        for o in opts:
            (flags if o.startswith("--") else short).add(o)
        if entry["action"] == "BooleanOptionalAction":
            boolean.update(o for o in entry["options"] if o.startswith("--"))
        if entry["deprecated"]:
            deprecated.update(opts + derived)
    if "--model" not in flags or "--port" not in flags:
        raise ReadError("the serve parser read lacks --model or --port: the reader went wrong")
    return {"flags": sorted(flags), "short_flags": sorted(short), "boolean": sorted(boolean),
            "deprecated": sorted(deprecated),
            "_rules": dict(reader.rules), "_count": len(seen)}


# --------------------------------------------------------------------------
# Which releases, and fetching them.

def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], check=True, capture_output=True, text=True)


def served_versions() -> list[str]:
    out = pip("index", "versions", "vllm").stdout
    m = re.search(r"Available versions:\s*(.+)", out)
    if not m:
        raise SystemExit(f"cannot read `pip index versions vllm`: {out!r}")
    latest: dict[tuple[int, int], str] = {}
    for v in (x.strip() for x in m.group(1).split(",")):
        if not re.fullmatch(r"\d+\.\d+\.\d+", v):
            continue  # pre-releases, .postN and four-part versions
        minor = vkey(v)[:2]
        if minor >= FIRST_MINOR and (minor not in latest or vkey(v) > vkey(latest[minor])):
            latest[minor] = v
    return sorted(set(latest.values()) | set(KEEP_VERSIONS), key=vkey)


def fetch(version: str, folder: str) -> str:
    pip("download", "--no-deps", "--only-binary=:all:", "--quiet", "--dest", folder, f"vllm=={version}")
    wheels = [f for f in os.listdir(folder) if f.startswith(f"vllm-{version}-") and f.endswith(".whl")]
    if len(wheels) != 1:
        raise SystemExit(f"vllm=={version}: expected one wheel in {folder}, found {wheels}")
    return os.path.join(folder, wheels[0])


# --------------------------------------------------------------------------
# The generated module.

HEADER = '''# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# GENERATED by hack/extract-vllm-flags.py (`make vllm-flags`) from the sources
# of the released vLLM wheels; do not edit by hand.
"""The option strings `vllm serve` accepts in each vLLM release.

flags_for(version) gives, for one release in VERSIONS:
  flags        long option strings (with the --disable-/--enable- inverse of
               a boolean where the release registers one, 0.33 on)
  short_flags  short ones (-tp, -pp, -q, -h...)
  boolean      flags that also take --no-<flag> (argparse's
               BooleanOptionalAction; hidden in --help from 0.33)
  deprecated   option strings vLLM marks deprecated (deprecated=True, a
               Deprecated... action, or "is deprecated" in the help)
Every option string the release accepts is
flags + short_flags + ["--no-" + f[2:] for f in boolean].

Stored once: BASE is the first release, and each entry of DELTAS says what
its release adds to ("+") and removes from ("-") the release before it.
VLLM_FLAGS is the same as a read-only mapping, version -> flags_for(version)."""

from __future__ import annotations

from collections.abc import Mapping
'''

ACCESSORS = '''

VERSIONS = [BASE_VERSION] + [version for version, _delta in DELTAS]
_KEYS = ("flags", "short_flags", "boolean", "deprecated")
_CACHE: dict = {}


def _build() -> None:
    current = {key: set(BASE[key]) for key in _KEYS}
    _CACHE[BASE_VERSION] = {key: tuple(sorted(current[key])) for key in _KEYS}
    for version, delta in DELTAS:
        for key, change in delta.items():
            current[key] = (current[key] - set(change.get("-", ()))) | set(change.get("+", ()))
        _CACHE[version] = {key: tuple(sorted(current[key])) for key in _KEYS}


def flags_for(version: str) -> dict:
    """The catalog of one release of VERSIONS (KeyError for others)."""
    if not _CACHE:
        _build()
    return {key: list(values) for key, values in _CACHE[version].items()}


def accepted_options(version: str) -> set:
    """Every option string the release's `vllm serve` parser accepts."""
    table = flags_for(version)
    return set(table["flags"]) | set(table["short_flags"]) | {"--no-" + f[2:] for f in table["boolean"]}


class _Catalog(Mapping):
    def __getitem__(self, version):
        if version not in VERSIONS:
            raise KeyError(version)
        return flags_for(version)

    def __iter__(self):
        return iter(VERSIONS)

    def __len__(self):
        return len(VERSIONS)


VLLM_FLAGS = _Catalog()
'''


def render_list(items, indent: int) -> str:
    if not items:
        return "[]"
    pad = " " * indent
    return "[\n" + "".join(f"{pad}    {json.dumps(i)},\n" for i in items) + f"{pad}]"


def render(catalog: dict[str, dict]) -> str:
    versions = sorted(catalog, key=vkey)
    keys = ("flags", "short_flags", "boolean", "deprecated")
    out = [HEADER]
    out.append(f"BASE_VERSION = {json.dumps(versions[0])}")
    out.append("BASE = {")
    for key in keys:
        out.append(f"    {json.dumps(key)}: {render_list(catalog[versions[0]][key], 4)},")
    out.append("}")
    out.append("")
    out.append("DELTAS = (")
    for prev, version in zip(versions, versions[1:]):
        out.append(f"    ({json.dumps(version)}, {{")
        for key in keys:
            old, new = set(catalog[prev][key]), set(catalog[version][key])
            added, removed = sorted(new - old), sorted(old - new)
            if not added and not removed:
                continue
            out.append(f"        {json.dumps(key)}: {{")
            if added:
                out.append(f'            "+": {render_list(added, 12)},')
            if removed:
                out.append(f'            "-": {render_list(removed, 12)},')
            out.append("        },")
        out.append("    }),")
    out.append(")")
    return "\n".join(out) + "\n" + ACCESSORS


# --------------------------------------------------------------------------
# The real parser, for the proof (run with a venv's Python where vLLM is installed).

def dump_parser(with_help: bool) -> dict:
    import importlib
    import importlib.metadata

    class Captured(Exception):
        pass

    def capture(self, *args, **kwargs):
        raise Captured(self)

    # Without a GPU, vLLM finds no platform and its DeviceConfig cannot be
    # built. Take CUDA's where its extension loads (it needs the driver's
    # libcuda), else the CPU platform, as `vllm bench` does on such hosts.
    # Neither adds flags (in-tree platforms' pre_register_and_update is a
    # no-op, ROCm's only sets an environment variable).
    platforms = importlib.import_module("vllm.platforms")
    if not getattr(platforms.current_platform, "device_type", ""):
        try:
            platforms._current_platform = importlib.import_module("vllm.platforms.cuda").CudaPlatform()
        except ImportError:
            platforms._current_platform = importlib.import_module("vllm.platforms.cpu").CpuPlatform()
    if with_help:
        arg_utils = importlib.import_module("vllm.engine.arg_utils")
        if hasattr(arg_utils, "NEEDS_HELP"):
            arg_utils.NEEDS_HELP = True  # field docstrings become the help texts
    sys.argv = ["vllm", "serve"]
    argparse.ArgumentParser.parse_args = capture
    main = importlib.import_module("vllm.entrypoints.cli.main")
    try:
        main.main()
    except Captured as exc:
        top = exc.args[0]
    else:
        raise SystemExit("vllm's main() did not parse arguments")
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.choices["serve"]
    deprecated_set = getattr(serve, "_deprecated", set())
    actions = {}
    for option, action in serve._option_string_actions.items():
        entry = actions.setdefault(id(action), {
            "accepts": [], "shown": sorted(action.option_strings), "action": type(action).__name__,
            "deprecated": bool(getattr(action, "deprecated", False) or action in deprecated_set),
            "help_deprecation": [s.strip() for s in re.split(r"(?<=[.!?])\s+", str(action.help or ""))
                                 if "deprecat" in s.lower()]})
        entry["accepts"].append(option)
    try:
        from vllm.platforms import current_platform
        platform = type(current_platform).__name__
    except Exception as exc:  # pylint: disable=broad-except
        platform = f"unknown ({exc})"
    torch_version = importlib.import_module("torch").__version__
    return {
        "vllm": importlib.metadata.version("vllm"),
        "python": ".".join(map(str, sys.version_info[:3])),
        "torch": torch_version,
        "platform": platform,
        "platform_note": "with no GPU driver on the host, CpuPlatform stands in for CUDA's (in-tree platforms "
                         "add no flags)" if platform == "CpuPlatform" else "",
        "how": "hack/extract-vllm-flags.py --dump-parser: vllm.entrypoints.cli.main.main() with argv "
               "['vllm', 'serve'], stopped at parse_args; every key of the serve subparser's "
               "_option_string_actions (hidden and suppressed options included)",
        "option_strings": sorted(serve._option_string_actions),
        "actions": sorted((dict(e, accepts=sorted(e["accepts"])) for e in actions.values()),
                          key=lambda e: e["accepts"]),
    }


def render_dump(dump: dict) -> str:
    """JSON with one option string, and one action, a line."""
    lines = ["{"]
    for key, value in dump.items():
        if isinstance(value, list):
            lines.append(f"  {json.dumps(key)}: [")
            lines.extend(f"    {json.dumps(item, sort_keys=True)}," for item in value)
            lines[-1] = lines[-1].rstrip(",")
            lines.append("  ],")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)},")
    lines[-1] = lines[-1].rstrip(",")
    return "\n".join(lines + ["}"])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="*", help="versions (X.Y.Z), wheels or unpacked wheels; "
                                               "default: every minor from 0.10 the index serves")
    ap.add_argument("--output", "-o", help=f"write the catalog here (e.g. {CATALOG}); default: stdout")
    ap.add_argument("--show", action="store_true", help="print each release's catalog as JSON instead")
    ap.add_argument("--dump-parser", action="store_true",
                    help="print the option strings of the installed vLLM's real `vllm serve` parser (JSON)")
    ap.add_argument("--with-help", action="store_true", help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if opts.dump_parser:
        # Some releases log to stdout: keep it for the JSON alone.
        out, sys.stdout = sys.stdout, sys.stderr
        if not opts.with_help:
            plain = dump_parser(False)
            # Again in a fresh process with the help texts on, for the deprecation notes.
            helped = json.loads(subprocess.run([sys.executable, __file__, "--dump-parser", "--with-help"],
                                               check=True, capture_output=True, text=True).stdout)
            if helped["option_strings"] != plain["option_strings"]:
                raise SystemExit("the parser differs when help texts are read")
            plain["actions"] = helped["actions"]
            out.write(render_dump(plain) + "\n")
        else:
            out.write(json.dumps(dump_parser(True)) + "\n")
        return 0
    started = time.time()
    catalog = {}
    with tempfile.TemporaryDirectory(prefix="vllm-wheels-") as tmp:
        for source in opts.sources or served_versions():
            path, fetched = source, False
            if re.fullmatch(r"\d+\.\d+\.\d+", source):
                path, fetched = fetch(source, tmp), True
            sources = Sources(path)
            try:
                table = extract(sources)
            except ReadError as exc:
                raise SystemExit(f"{path}: {exc}") from None
            finally:
                sources.close()
                if fetched:
                    os.remove(path)  # one wheel on disk at a time
            rules = table.pop("_rules")
            count = table.pop("_count")
            catalog[sources.version] = table
            print(f"vllm {sources.version}: {count} option strings, {len(table['flags'])} flags, "
                  f"{len(table['boolean'])} boolean, {len(table['deprecated'])} deprecated; "
                  f"inverse={bool(rules['inverse_prefixes'])} optional_valued={rules['optional_valued']} "
                  f"({os.path.basename(path)})", file=sys.stderr)
    if opts.show:
        print(json.dumps(catalog, indent=1, sort_keys=True))
        return 0
    text = render(catalog)
    if opts.output:
        with open(opts.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    print(f"{len(catalog)} releases in {time.time() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
