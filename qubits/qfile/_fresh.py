"""A target's identity: a digest of everything that can change its output, and nothing else.

The identity of a target is the sha256 of (``components``):

- its rule's **code**: the recipe's code object (bytecode, constants, names; not its source text, so
  comments, blank lines and moved lines do not count), and, recursively, what it calls within the
  project: functions and classes of the Qfile or of a module under the project folder, and constants of
  the Qfile it names. A rule's ``deps`` function counts too. A shell recipe: its command string;
- its **pattern** and the target's **groups** and named groups;
- the **config it reads**: the resolved value of every config key the rule's code names (as a string or
  an attribute: ``ctx.config["n"]``, ``conf.n``);
- the **project files it reads**: files the rule declares with ``inputs=`` (globs), and every bundled
  project file the rule's code names in a string (``"data/raw.csv"``, ``"data/{0}.csv"`` filled from the
  groups) or its shell command names as a word; by the sha256 of their bytes;
- its **dependencies' outputs**: the output digest of each dependency (the sha256 of its output files'
  names and bytes). Timestamps play no part.

The interpreter's minor version is part of it (bytecode differs between versions).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shlex
import sys
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .._bundle import bundle_patterns, ignored
from ._model import Match, Rule

VERSION = 1
"""Bumped when the recipe for identities changes: old identities then match nothing."""

_PLAIN = (str, bytes, int, float, bool, type(None))
_NO_CONFIG = {"jobspace", "profile"}
"""Config keys that say where a job runs, not what it makes (their resolved value differs by machine)."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stable(value: Any) -> str:
    """A repr that does not depend on hash seeds (sets sorted)."""
    if isinstance(value, (set, frozenset)):
        return "{" + ",".join(sorted(_stable(v) for v in value)) + "}"
    if isinstance(value, (tuple, list)):
        return type(value).__name__ + "(" + ",".join(_stable(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_stable(k)}:{_stable(v)}" for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))) + "}"
    return repr(value)


def _plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (tuple, list, set, frozenset)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    return False


class CodeWalk:
    """The digest of a rule's code and what it names: strings (for files and config keys) and names."""

    def __init__(self, project: Path) -> None:
        self.project = project.resolve()
        self.strings: set[str] = set()
        self.names: set[str] = set()
        self._h = hashlib.sha256()
        self._seen: set[int] = set()

    def _mine(self, filename: str | None) -> bool:
        if not filename:
            return False
        try:
            path = Path(filename).resolve()
        except (OSError, ValueError):
            return False
        return path == self.project or self.project in path.parents

    def _feed(self, *parts: str | bytes) -> None:
        for p in parts:
            b = p.encode() if isinstance(p, str) else p
            self._h.update(len(b).to_bytes(8, "big") + b)

    def code(self, code: types.CodeType, globals_: dict[str, Any]) -> None:
        if id(code) in self._seen:
            return
        self._seen.add(id(code))
        self._feed("code", code.co_name, code.co_code, " ".join(code.co_names), " ".join(code.co_varnames))
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                self.code(const, globals_)
            else:
                if isinstance(const, str):
                    self.strings.add(const)
                self._feed(_stable(const))
        for name in code.co_names:
            self.names.add(name)
            if name in globals_:
                self.value(name, globals_[name])

    def function(self, fn: Callable[..., Any]) -> None:
        fn = inspect.unwrap(fn)
        if isinstance(fn, types.MethodType):
            fn = fn.__func__
        if not isinstance(fn, types.FunctionType):
            self._feed("callable", getattr(fn, "__qualname__", type(fn).__name__))
            return
        self.code(fn.__code__, fn.__globals__)
        self._feed(_stable(fn.__defaults__) if _plain(fn.__defaults__) else "defaults")
        for cell in fn.__closure__ or ():
            try:
                content = cell.cell_contents
            except ValueError:
                continue
            self.value("<closure>", content)

    def value(self, name: str, value: Any) -> None:
        """A global or closure value the code names: followed if it is the project's, else left out."""
        if id(value) in self._seen:
            return
        if isinstance(value, types.FunctionType):
            if self._mine(value.__code__.co_filename):
                self._seen.add(id(value))
                self._feed("fn", name)
                self.function(value)
        elif isinstance(value, type):
            module = sys.modules.get(value.__module__)
            if value.__module__ == "Qfile" or (module is not None and self._mine(getattr(module, "__file__", None))):
                self._seen.add(id(value))
                self._feed("class", name)
                for attr, member in sorted(vars(value).items()):
                    if isinstance(member, (types.FunctionType, staticmethod, classmethod)):
                        self.function(member.__func__ if isinstance(member, (staticmethod, classmethod)) else member)
                    elif _plain(member) and not attr.startswith("__"):
                        self._feed(attr, _stable(member))
        elif isinstance(value, types.ModuleType):
            file = getattr(value, "__file__", None)
            if self._mine(file) and file:
                self._seen.add(id(value))
                import ast

                source = Path(file).read_text(encoding="utf-8", errors="replace")
                self._feed("module", name, ast.dump(ast.parse(source)))
        elif _plain(value):
            self._feed("const", name, _stable(value))

    def digest(self) -> str:
        return self._h.hexdigest()


class Identities:
    """Identities of one Qfile's targets (rule code digests and file digests cached)."""

    def __init__(self, project: Path, config: dict[str, Any]) -> None:
        self.project = project.resolve()
        self.config = config
        self._patterns = bundle_patterns(self.project, [str(g) for g in config.get("ignore") or ()])
        self._rules: dict[int, CodeWalk] = {}
        self._files: dict[str, str | None] = {}
        self._cache: dict[tuple[str, int], Any] = {}

    def walk(self, rule: Rule) -> CodeWalk:
        cached = self._rules.get(id(rule))
        if cached is not None:
            return cached
        w = CodeWalk(self.project)
        for part in (rule.recipe, rule.deps):
            if callable(part):
                w.function(part)
            elif isinstance(part, str):
                w._feed("sh", part)
                w.strings.update(_words(part))
            elif part is not None:
                w._feed("deps", _stable(list(part)))
        self._rules[id(rule)] = w
        return w

    def file_digest(self, rel: str) -> str | None:
        """The sha256 of bundled project file ``rel``, or None if it is not one."""
        if rel in self._files:
            return self._files[rel]
        digest = None
        if rel and not rel.startswith("/") and ".." not in Path(rel).parts and "\0" not in rel and len(rel) < 512:
            path = self.project / rel
            try:
                if path.is_file() and not ignored(Path(rel).as_posix(), self._patterns):
                    digest = _sha(path.read_bytes())
            except OSError:
                digest = None
        self._files[rel] = digest
        return digest

    def files(self, match: Match) -> dict[str, str]:
        """The project files ``match``'s rule reads, by path: declared ``inputs`` and named ones."""
        rule = match.rule
        out: dict[str, str] = {}
        for pattern in rule.inputs:
            filled = rule.format(pattern, match.target, match.groups, match.named)
            for path in sorted(self.project.glob(filled)):
                rel = path.relative_to(self.project).as_posix()
                digest = self.file_digest(rel)
                if digest is not None:
                    out[rel] = digest
        for text in self._named(rule):
            if "{" in text:
                text = rule.format(text, match.target, match.groups, match.named)
            digest = self.file_digest(text)
            if digest is not None:
                out[text] = digest
        return out

    def _named(self, rule: Rule) -> list[str]:
        """The strings of ``rule``'s code that may name a file (a dot or a folder in them)."""
        key = ("named", id(rule))
        if key not in self._cache:
            self._cache[key] = sorted(t for t in self.walk(rule).strings if "/" in t or "." in t)
        return list(self._cache[key])

    def _config(self, rule: Rule) -> dict[str, str]:
        """The digest of the value of each config key ``rule``'s code names."""
        key = ("config", id(rule))
        if key not in self._cache:
            walk = self.walk(rule)
            mentioned = walk.strings | walk.names
            self._cache[key] = {
                k: _sha(json.dumps(v, sort_keys=True, default=_stable).encode())
                for k, v in sorted(self.config.items())
                if k in mentioned and k not in _NO_CONFIG
            }
        return dict(self._cache[key])

    def components(self, match: Match, deps: dict[str, str]) -> dict[str, Any]:
        """What the identity of ``match`` is made of; ``deps``: output digest of each dependency."""
        walk = self.walk(match.rule)
        config = self._config(match.rule)
        return {
            "v": VERSION,
            "py": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "target": match.target,
            "pattern": match.rule.pattern,
            "groups": list(match.groups),
            "named": dict(sorted(match.named.items())),
            "code": walk.digest(),
            "config": config,
            "files": self.files(match),
            "deps": dict(sorted(deps.items())),
        }


def identity_of(components: dict[str, Any]) -> str:
    return _sha(json.dumps(components, sort_keys=True).encode())


def output_digest(files: Iterable[tuple[str, bytes]], deps: dict[str, str]) -> str:
    """The digest of a target's outputs: its files' names and bytes; with no files of its own (a target
    that only groups others), its dependencies' output digests."""
    h = hashlib.sha256()
    n = 0
    for name, data in sorted(files):
        h.update(f"{name}\0{len(data)}\0".encode() + data)
        n += 1
    if n == 0:
        h.update(b"deps\0" + json.dumps(dict(sorted(deps.items()))).encode())
    return h.hexdigest()


def folder_files(folder: Path) -> list[tuple[str, bytes]]:
    if not folder.is_dir():
        return []
    return [(p.relative_to(folder).as_posix(), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]


def explain(now: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    """What differs between two identities' components, in words."""
    if before is None:
        return ["it was never made"]
    out: list[str] = []
    if now.get("v") != before.get("v") or now.get("py") != before.get("py"):
        out.append(f"made with another qubits or Python ({before.get('py')})")
    if now.get("code") != before.get("code"):
        out.append("its rule's code changed (the recipe or what it calls)")
    if (now.get("pattern"), now.get("groups"), now.get("named")) != (before.get("pattern"), before.get("groups"), before.get("named")):
        out.append("its rule's pattern or groups changed")
    for kind, what in (("config", "config key"), ("files", "input file"), ("deps", "the output of dependency")):
        a, b = now.get(kind) or {}, before.get(kind) or {}
        for key in sorted(set(a) | set(b)):
            if key not in b:
                out.append(f"{what} {key} is new to it")
            elif key not in a:
                out.append(f"{what} {key} is no longer read")
            elif a[key] != b[key]:
                out.append(f"{what} {key} changed")
    return out or ["nothing differs from its last make (its output was not recorded)"]


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()
