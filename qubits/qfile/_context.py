"""The context a recipe and a dependency function get: the target, its groups, where outputs go, and
its dependencies' outputs by name."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ._signals import Decline, MissingOutput, NeedTargets, Unknown

if TYPE_CHECKING:
    from ._jobview import DepState, JobView
    from ._model import Match


class Context:
    """What a recipe (``fn(ctx, *groups)``) and a dependency function see.

    On a node: ``ctx.output`` is the folder whose files become the target's outputs, ``ctx.input(dep)``
    fetches a dependency's outputs, ``ctx.node``/``ctx.job``/``ctx.attempt`` say where and what runs.
    When the client plans a graph (``qubits qubits``) there is no node: ``on_node`` is False and
    reading an input marks the dependencies as known only at run time.
    """

    def __init__(
        self,
        match: Match,
        *,
        config: dict[str, Any] | None = None,
        profile: str | None = None,
        code: Path | None = None,
        output: Path | None = None,
        scratch: Path | None = None,
        job: str | None = None,
        task: str | None = None,
        attempt: int = 0,
        node: str | None = None,
        round_: int = 0,
        view: JobView | None = None,
    ) -> None:
        self.target = match.target
        """The target being made."""
        self.groups = match.groups
        """The pattern's positional groups."""
        self.named = match.named
        """The pattern's named groups."""
        self.config = dict(config or {})
        self.profile = profile
        self.code = code
        """The project folder (the code bundle, shared by the tasks of a node: treat it as read-only)."""
        self._output = output
        self.scratch = scratch
        self.job = job
        self.task = task
        self.attempt = attempt
        self.node = node
        self.round = round_
        """0, or how often this target was made again in this job after its output went missing."""
        self.deps: list[str] = []
        """The dependencies, once they are all made (set before the recipe runs)."""
        self._view = view
        self._states: dict[str, DepState] = {}
        self._fetched: dict[str, Path] = {}

    @property
    def on_node(self) -> bool:
        """True when running on a node; False while the client plans."""
        return self._view is not None

    @property
    def output(self) -> Path:
        """The folder whose files become this target's outputs (uploaded when the recipe succeeds)."""
        if self._output is None:
            raise Unknown("output")
        return self._output

    def out(self, name: str) -> Path:
        """The path of output file ``name`` (its folders made)."""
        path = self.output / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def input(self, dep: str, name: str | None = None) -> Path:
        """The outputs of dependency ``dep``: its folder, or the file ``name`` in it.

        ``dep`` need not be declared: if it is not made yet, this target waits for it and runs again.
        MissingOutput if ``name`` is not among its outputs (the dependency is then made again).
        """
        if self._view is None:
            raise Unknown(dep)
        state = self._states.get(dep) or self._view.resolve(dep)
        if not state.succeeded:
            raise NeedTargets([dep])
        self._states[dep] = state
        assert self.scratch is not None
        folder = self.scratch / "in" / _safe(dep)
        if name is None:
            if dep not in self._fetched:
                self._view.fetch(state, folder)
                self._fetched[dep] = folder
            return folder
        path = folder / name
        if not path.is_file() and not self._view.fetch_one(state, name, path):
            raise MissingOutput(dep, f"no file {name!r} among its outputs")
        return path

    def files(self, dep: str) -> list[str]:
        """The names of dependency ``dep``'s output files (one listing; nothing is downloaded).

        Like ``input``, it waits for ``dep`` if it is not made yet.
        """
        if self._view is None:
            raise Unknown(dep)
        state = self._states.get(dep) or self._view.resolve(dep)
        if not state.succeeded:
            raise NeedTargets([dep])
        self._states[dep] = state
        prefix = state.prefix
        return sorted(key[len(prefix) :] for key in self._view.output_keys(state))

    def sh(self, command: str, *, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        """Run a shell command in the project folder (CalledProcessError if it fails and ``check``)."""
        return subprocess.run(["/bin/sh", "-c", command], cwd=self.code, check=check, **kwargs)

    def decline(self, reason: str = "") -> NoReturn:
        """Give this target up on this node; another node may make it."""
        raise Decline(reason)

    def missing(self, dep: str, reason: str = "") -> NoReturn:
        """Report that ``dep``'s output is missing or bad: it is made again, then this target runs again."""
        raise MissingOutput(dep, reason)

    def __repr__(self) -> str:
        where = f" on {self.node}" if self.node else ""
        return f"<Context {self.target}{where}>"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def run_shell(ctx: Context, command: str, match: Match) -> int:
    """Run a shell recipe: placeholders filled (shell-quoted), in the project folder; its exit status."""
    rule = match.rule
    inputs = ""
    if "{inputs" in command:
        inputs = " ".join(shlex.quote(str(ctx.input(d))) for d in ctx.deps)
    extra = {
        "output": shlex.quote(str(ctx.output)),
        "inputs": inputs,
        "deps": " ".join(shlex.quote(d) for d in ctx.deps),
    }
    filled = rule.format(command, ctx.target, match.groups, match.named, quote=True, extra=extra)
    print(f"$ {filled}", flush=True)
    return subprocess.run(["/bin/sh", "-c", filled], cwd=ctx.code, env=dict(os.environ)).returncode
