"""The Qfile: rules (target patterns, recipes, dependencies) and project config, and how it loads.

A Qfile is Python. It registers rules and sets config through ``rule`` and ``conf``, imported from
``qubits.qfile`` (or used without an import: the loader puts both in the Qfile's namespace)::

    from qubits.qfile import conf, rule

    conf.ignore = ["scratch/*"]
    conf.profile("dist", jobspace="s3://bucket/pipeline")

    @rule(r"part-(\\d+)", deps=lambda ctx, n: [f"raw-{n}"])
    def part(ctx, n):
        (ctx.output / "part.txt").write_text(ctx.input(f"raw-{n}", "raw.txt").read_text().upper())

    rule("default", deps=["part-1", "part-2"])
"""

from __future__ import annotations

import contextvars
import linecache
import re
import shlex
import sys
import traceback
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import QfileError, UsageError

QFILE_NAME = "Qfile"
DEFAULT_JOBSPACE = ".qubits/jobspace"
"""The embedded default: a local-directory jobspace inside the project (never bundled)."""

_KNOWN_KEYS = {
    "jobspace": "where jobs go: a path (relative to the project), file://, s3://…, gs://, az://",
    "nodes": "the machines that run agents: a list, or a function that returns one",
    "ignore": "globs left out of the code bundle (besides .gitignore and the defaults)",
    "retries": "default retries per target after a failed attempt",
    "timeout": "default seconds a target may run",
    "requires": "default capabilities every target needs",
    "agents": "agents `qubits make` starts here",
}


class Config(dict[str, Any]):
    """The Qfile's ``conf``: a dict that also reads and writes keys as attributes.

    ``conf.jobspace = …``, ``conf["nodes"] = …``; ``@conf("nodes")`` stores a function (called when the
    config is resolved); ``conf.profile("dist", jobspace=…, nodes=…)`` defines a profile that ``-p dist``
    selects. ``conf.active_profile`` is the profile being loaded (None by default), for Qfiles that branch.
    """

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "profiles", {})
        object.__setattr__(self, "active_profile", None)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"conf has no {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("profiles", "active_profile"):
            raise AttributeError(f"conf.{name} is read-only; use conf.profile(NAME, ...) to define profiles")
        self[name] = value

    def __call__(self, key: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """``@conf("nodes")``: store the decorated function under ``key``."""

        def store(fn: Callable[..., Any]) -> Callable[..., Any]:
            self[key] = fn
            return fn

        return store

    def profile(self, name: str, **overrides: Any) -> None:
        """Define profile ``name``: the keys it sets when selected with ``-p name``."""
        if not name or not isinstance(name, str):
            raise UsageError("a profile needs a name")
        self.profiles[name] = dict(overrides)

    def resolve(self, profile: str | None, project: Path) -> dict[str, Any]:
        """The config in force for ``profile``: its overrides applied, functions called, paths resolved."""
        out = dict(self)
        if profile is not None:
            if profile not in self.profiles:
                known = ", ".join(sorted(self.profiles)) or "none"
                raise UsageError(f"no profile {profile!r} in the Qfile (profiles: {known})")
            out.update(self.profiles[profile])
        for key, value in list(out.items()):
            if callable(value):
                out[key] = value()
        js = str(out.get("jobspace") or DEFAULT_JOBSPACE)
        if "://" not in js and not Path(js).expanduser().is_absolute():
            js = str((project / js).resolve())
        out["jobspace"] = js
        out["profile"] = profile
        out.setdefault("nodes", [])
        out["ignore"] = [str(g) for g in out.get("ignore") or []]
        return out


@dataclass
class Rule:
    """One rule: a target name or pattern, its recipe, its dependencies and how its tasks run."""

    pattern: str
    recipe: Callable[..., Any] | str | None = None
    deps: Callable[..., Any] | str | Iterable[str] | None = None
    requires: list[str] | None = None
    retries: int | None = None
    timeout: float | None = None
    resources: dict[str, float] = field(default_factory=dict)
    priority: int = 0
    inputs: list[str] = field(default_factory=list)
    """Globs of project files the recipe reads (relative to the project; ``{0}``/``{name}`` filled): their
    bytes are part of its targets' identities (``_fresh``)."""
    where: str = ""
    """file:line of the rule in the Qfile, for error messages."""

    def __post_init__(self) -> None:
        try:
            self.regex = re.compile(self.pattern)
        except re.error as exc:
            raise UsageError(f"{self.where}: rule pattern {self.pattern!r} is not a valid regex: {exc}") from None

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Used as a decorator: the decorated function is the recipe."""
        if not callable(fn):
            raise UsageError(f"{self.where}: @rule decorates a function")
        self.recipe = fn
        return fn

    @property
    def name(self) -> str:
        if callable(self.recipe):
            return getattr(self.recipe, "__name__", "recipe")
        return "sh" if isinstance(self.recipe, str) else "-"

    def format(
        self,
        text: str,
        target: str,
        groups: tuple[str, ...],
        named: dict[str, str],
        quote: bool = False,
        extra: dict[str, str] | None = None,
    ) -> str:
        """Fill ``{0}``, ``{name}`` (the pattern's groups) and ``{target}`` in ``text`` (shell-quoted for
        commands); ``extra`` values are put in as they are. Other braces are left alone (``${HOME}``,
        ``awk '{print $1}'``)."""
        q: Callable[[str], str] = shlex.quote if quote else str
        values = {str(i): q(g or "") for i, g in enumerate(groups)}
        values.update({k: q(v or "") for k, v in named.items()})
        values["target"] = q(target)
        values.update(extra or {})
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass
class Match:
    """A target matched to its rule, with the pattern's groups."""

    target: str
    rule: Rule
    groups: tuple[str, ...]
    named: dict[str, str]

    def deps(self, ctx: Any) -> list[str]:
        """The dependencies of this target, evaluated now (a function gets the context and the groups)."""
        spec = self.rule.deps
        if spec is None:
            return []
        if callable(spec):
            value = spec(ctx, *self.groups, **self.named)
        else:
            value = spec
        if value is None:
            return []
        items = [value] if isinstance(value, str) else list(value)
        out: dict[str, None] = {}  # ordered, and a set: a target may have thousands of dependencies
        for item in items:
            if not isinstance(item, str) or not item:
                raise UsageError(f"{self.rule.where}: dependencies of {self.target!r} must be names, got {item!r}")
            if not callable(spec) and "{" in item:
                item = self.rule.format(item, self.target, self.groups, self.named)
            out[item] = None
        return list(out)


class Qfile:
    """A loaded Qfile: its rules in order, and its config."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.project = path.parent
        self.rules: list[Rule] = []
        self.conf = Config()

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def match(self, target: str) -> Match:
        """The rule that makes ``target``: an exact name first, then the first pattern that matches it
        whole. UsageError if none does."""
        for r in self.rules:
            if r.pattern == target:
                return Match(target, r, (), {})
        for r in self.rules:
            m = r.regex.fullmatch(target)
            if m is not None:
                named = {k: v for k, v in m.groupdict().items()}
                named_idx = set(r.regex.groupindex.values())
                groups = tuple(g for i, g in enumerate(m.groups(), start=1) if i not in named_idx)
                return Match(target, r, groups, named)
        raise UsageError(f"no rule in {self.path} makes target {target!r}")

    def targets_default(self, targets: Iterable[str]) -> list[str]:
        out = [t for t in targets if t]
        return out or ["default"]

    def resolve(self, profile: str | None = None) -> dict[str, Any]:
        """The config in force under ``profile`` (see ``Config.resolve``)."""
        return self.conf.resolve(profile, self.project)


_loading: contextvars.ContextVar[Qfile | None] = contextvars.ContextVar("qubits_qfile_loading", default=None)


def _current(what: str) -> Qfile:
    qf = _loading.get()
    if qf is None:
        raise UsageError(f"{what} is for Qfiles: it registers into the Qfile being loaded")
    return qf


def _caller_where(depth: int = 2) -> str:
    frame = sys._getframe(depth)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def rule(
    pattern: str,
    recipe: Callable[..., Any] | str | None = None,
    *,
    deps: Callable[..., Any] | str | Iterable[str] | None = None,
    requires: Iterable[str] | None = None,
    retries: int | None = None,
    timeout: float | None = None,
    resources: dict[str, float] | None = None,
    priority: int = 0,
    inputs: Iterable[str] | str | None = None,
) -> Rule:
    """Register a rule in the Qfile being loaded; use it as a decorator or give ``recipe``.

    ``pattern``: an exact target name, or a regex matched against the whole name; its groups (positional
    and named) are passed to the recipe and to a ``deps`` function after the context.
    ``recipe``: a function ``fn(ctx, *groups, **named)``, or a shell command string whose ``{0}``,
    ``{name}``, ``{target}``, ``{output}``, ``{inputs}`` and ``{deps}`` are filled (shell-quoted) and
    which runs in the project folder. None: nothing to do once the dependencies are made.
    ``deps``: a list of names (``{0}``/``{name}`` filled from the groups), or a function
    ``fn(ctx, *groups, **named)`` returning names, evaluated on the node when the target runs.
    ``requires``: capabilities an agent must have; ``retries``: extra attempts after a failure;
    ``timeout``: seconds; ``resources``: e.g. ``{"cpus": 2}``; ``priority``: higher runs first.
    ``inputs``: globs of project files the recipe reads (files it names in a string count without it):
    a change to one remakes the rule's targets.
    """
    qf = _current("rule()")
    if isinstance(deps, str):
        deps = [deps]
    elif deps is not None and not callable(deps):
        deps = list(deps)
    r = Rule(
        pattern,
        recipe,
        deps,
        requires=list(requires) if requires is not None else None,
        retries=retries,
        timeout=timeout,
        resources=dict(resources or {}),
        priority=priority,
        inputs=[inputs] if isinstance(inputs, str) else [str(i) for i in inputs or []],
        where=_caller_where(),
    )
    if recipe is not None and not (callable(recipe) or isinstance(recipe, str)):
        raise UsageError(f"{r.where}: a recipe is a function or a shell command string, got {type(recipe).__name__}")
    return qf.add(r)


class _ConfProxy:
    """``conf`` of the Qfile being loaded."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_current("conf").conf, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(_current("conf").conf, name, value)

    def __getitem__(self, key: str) -> Any:
        return _current("conf").conf[key]

    def __setitem__(self, key: str, value: Any) -> None:
        _current("conf").conf[key] = value

    def __contains__(self, key: object) -> bool:
        return key in _current("conf").conf

    def __call__(self, key: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return _current("conf").conf(key)

    def get(self, key: str, default: Any = None) -> Any:
        return _current("conf").conf.get(key, default)


conf: Any = _ConfProxy()
"""The config of the Qfile being loaded (see ``Config``)."""


def find_qfile(start: Path | str = ".", name: str | None = None) -> Path:
    """The Qfile of the project at ``start`` (a directory, or the Qfile itself): looked for in
    ``start`` and its parents. UsageError if there is none."""
    p = Path(start).expanduser().resolve()
    if p.is_file():
        return p
    if name:
        candidate = (p / name).resolve()
        if candidate.is_file():
            return candidate
        raise UsageError(f"no Qfile {candidate}")
    for d in (p, *p.parents):
        if (d / QFILE_NAME).is_file():
            return d / QFILE_NAME
    raise UsageError(f"no {QFILE_NAME} in {p} or its parents: write one, or pass -C DIR / -f FILE")


def where_in(exc: BaseException, path: Path) -> str:
    """file:line of the innermost frame of ``exc`` that is in the Qfile (else the innermost frame)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    for fr in reversed(frames):
        if Path(fr.filename) == path:
            return f"{fr.filename}:{fr.lineno}"
    if frames:
        return f"{frames[-1].filename}:{frames[-1].lineno}"
    return str(path)


def load_qfile(path: Path | str, profile: str | None = None) -> Qfile:
    """Load the Qfile at ``path``; QfileError (with file and line) if it does not load."""
    path = Path(path).resolve()
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise QfileError(f"cannot read {path}: {exc.strerror}") from None
    qf = Qfile(path)
    object.__setattr__(qf.conf, "active_profile", profile)
    module = types.ModuleType("Qfile")
    module.__file__ = str(path)
    from . import _signals

    module.__dict__.update(rule=rule, conf=conf, Decline=_signals.Decline, MissingOutput=_signals.MissingOutput)
    token = _loading.set(qf)
    project = str(qf.project)
    added = project not in sys.path
    if added:
        sys.path.insert(0, project)
    try:
        code = compile(source, str(path), "exec")
        linecache.cache[str(path)] = (len(source), None, source.splitlines(True), str(path))
        exec(code, module.__dict__)
    except SyntaxError as exc:
        raise QfileError(f"{path}:{exc.lineno}: {exc.msg}") from None
    except QfileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported with its line
        if isinstance(exc, UsageError) and str(exc).startswith(str(path)):
            raise QfileError(str(exc)) from exc
        msg = str(exc) if isinstance(exc, UsageError) else f"{type(exc).__name__}: {exc}"
        raise QfileError(f"{where_in(exc, path)}: {msg}") from exc
    finally:
        _loading.reset(token)
        if added:
            try:
                sys.path.remove(project)
            except ValueError:
                pass
    return qf
