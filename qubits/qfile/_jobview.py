"""What a running target sees of its job: which dependencies are made (here or in a reused job), their
outputs, targets made again after their output went missing, and the wait edges (for cycles)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jobspaces
from jobspaces import SyncJobspace

from .. import _layout as layout
from .._records import Done, JobSpec, Outcome
from ..errors import CycleError
from ._tasks import display_name, target_task_id


@dataclass(frozen=True)
class DepState:
    """Where a dependency stands for this job."""

    target: str
    tid: str
    round: int
    outcome: str | None
    """None while it is not decided."""
    job: str
    """The job whose run made it: this one, or a reused job with the same code."""
    attempt: int = 0
    src: tuple[str, str, int] | None = None
    """The run (job, task, attempt) whose outputs these are, when it is not this one: the target was
    reused by its identity (``_fresh``)."""

    @property
    def succeeded(self) -> bool:
        return self.outcome == Outcome.SUCCEEDED.value

    @property
    def run(self) -> tuple[str, str, int]:
        """The run that holds its outputs and its result."""
        return self.src or (self.job, self.tid, self.attempt)

    @property
    def prefix(self) -> str:
        """The key prefix of its output files."""
        return f"{layout.run_prefix(*self.run)}out/"


class JobView:
    """One job as seen from a task's process (blocking calls)."""

    def __init__(self, js: SyncJobspace, job: JobSpec) -> None:
        self.js = js
        self.job = job
        self.reuse = [str(j) for j in job.config.get("reuse") or []]
        self.fresh: dict[str, list[Any]] = dict(job.config.get("fresh") or {})
        """Targets the client found made already (by identity): target -> [job, task, attempt]."""
        self._invalid: set[str] | None = None
        self._made: dict[tuple[str, str, int], dict[str, Any]] = {}

    def made(self, state: DepState) -> dict[str, Any]:
        """What a succeeded target's runner recorded (its ``result``: identity, output digest, deps…);
        {} if nothing was."""
        run = state.run
        if run not in self._made:
            try:
                raw = json.loads(self.js.get(layout.result(*run))[0])
            except (jobspaces.NotFound, ValueError):
                raw = {}
            self._made[run] = raw if isinstance(raw, dict) else {}
        return self._made[run]

    def _follow(self, state: DepState) -> DepState:
        """A target reused by identity points at the run that made its outputs."""
        if not state.succeeded:
            return state
        reused = self.made(state).get("reused")
        if isinstance(reused, list) and len(reused) == 3:
            return replace(state, src=(str(reused[0]), str(reused[1]), int(reused[2])))
        return state

    def invalid(self) -> set[str]:
        """Task ids whose output was found missing (listed once per process)."""
        if self._invalid is None:
            prefix = layout.invalid_prefix(self.job.id)
            self._invalid = {m.key[len(prefix) :] for m in self.js.list(prefix)}
        return self._invalid

    def _done(self, job: str, tid: str) -> Done | None:
        key = layout.done(job, tid)
        try:
            data, _ = self.js.get(key)
        except jobspaces.NotFound:
            return None
        return Done.from_json(data, key)

    def resolve(self, target: str) -> DepState:
        """The current round of ``target`` and its outcome: done in this job, or (round 0 only)
        succeeded in a reused job."""
        invalid = self.invalid()
        round_ = 0
        tid = target_task_id(target)
        while tid in invalid:
            round_ += 1
            tid = target_task_id(target, round_)
        done = self._done(self.job.id, tid)
        if done is not None:
            return self._follow(DepState(target, tid, round_, done.outcome, self.job.id, done.attempt))
        if round_ == 0:
            hint = self.fresh.get(target)
            if hint:
                src = (str(hint[0]), str(hint[1]), int(hint[2]))
                return DepState(target, tid, 0, Outcome.SUCCEEDED.value, src[0], src[2], src)
            for other in self.reuse:
                prior = self._done(other, tid)
                if prior is not None and prior.outcome == Outcome.SUCCEEDED.value:
                    return self._follow(DepState(target, tid, 0, prior.outcome, other, prior.attempt))
        return DepState(target, tid, round_, None, self.job.id)

    def invalidate(self, state: DepState, reason: str) -> DepState:
        """Mark ``state``'s round as missing its output (create-only: racing finders agree) and return
        the next round, not made yet."""
        try:
            self.js.put(layout.invalid(self.job.id, state.tid), reason.encode()[:2000], if_absent=True)
        except jobspaces.PreconditionFailed:
            pass  # someone found it first: same outcome
        self.invalid().add(state.tid)
        nxt = state.round + 1
        return DepState(state.target, target_task_id(state.target, nxt), nxt, None, self.job.id)

    def output_keys(self, state: DepState) -> list[str]:
        """Object keys of the files the dependency's committed attempt produced."""
        return [m.key for m in self.js.list(state.prefix)]

    def fetch(self, state: DepState, dest: Path) -> list[Path]:
        """Download the dependency's outputs into ``dest`` (relative paths kept)."""
        prefix = state.prefix
        out = []
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        for key in self.output_keys(state):
            rel = key[len(prefix) :]
            path = (dest / rel).resolve()
            if root not in path.parents:
                continue  # keys are checked on write; never write outside dest anyway
            try:
                data, _ = self.js.get(key)
            except jobspaces.NotFound:
                continue  # deleted while we looked: reported as missing by the caller
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            out.append(path)
        return out

    def fetch_one(self, state: DepState, name: str, path: Path) -> bool:
        """Download one output file of the dependency to ``path``; False if it has no such file."""
        key = f"{state.prefix}{name}"
        try:
            data, _ = self.js.get(jobspaces.check_key(key))
        except (jobspaces.NotFound, jobspaces.InvalidKey):
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return True

    def check_cycle(self, task: str, deps: list[str]) -> None:
        """Write the edges "``task`` waits for each of ``deps``", then read every edge of the job and
        raise CycleError if one leads back to ``task``.

        Edges are written before they are read, so of two tasks that close a cycle at the same moment
        the later reader sees both edges: a cycle cannot park its tasks forever unnoticed.
        """
        for dep in deps:
            self.js.put(layout.wait_edge(self.job.id, dep, task), b"")
        prefix = layout.all_waits_prefix(self.job.id)
        waits: dict[str, set[str]] = defaultdict(set)
        for meta in self.js.list(prefix):
            dep, _, waiter = meta.key[len(prefix) :].partition("/")
            waits[waiter].add(dep)
        path = _path_to(waits, deps, task)
        if path is not None:
            names = " -> ".join(display_name(t) for t in [task, *path])
            raise CycleError(f"dependency cycle: {names}")


def _path_to(waits: dict[str, set[str]], starts: list[str], goal: str) -> list[str] | None:
    """A path (list of ids ending in ``goal``) from one of ``starts`` along ``waits``, or None."""
    seen: set[str] = set()
    stack: list[tuple[str, list[str]]] = [(s, [s]) for s in starts]
    while stack:
        node, path = stack.pop()
        if node == goal:
            return path
        if node in seen:
            continue
        seen.add(node)
        for nxt in sorted(waits.get(node, ())):
            stack.append((nxt, [*path, nxt]))
    return None
