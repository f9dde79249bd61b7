"""Task kinds as plug-ins, found by name: the agent never imports the front end that owns a kind.

A kind says how a node runs a task of that kind in the task's own process (its *runner*), and what
follows the commit of a task of a job of that kind (its *after-commit* hook). The registry holds import
paths, not objects, and imports a kind's module only when a task of that kind comes, as fsspec's
``known_implementations`` does; a third party adds a kind with ``register`` or with an entry point in the
group ``qubits.kinds`` that names a ``Kind``.

    task kind   what the node runs                                   after commit (job kind)
    shell       /bin/sh -c COMMAND (the agent itself)                 batch: archive, notify
    argv        COMMAND (the agent itself)
    python      python -m nodeagent._pyexec -> qubits._pytask         (pooled workers too)
    map         python -m nodeagent._pyexec -> qubits._pytask         (pooled workers too)
    target      python -m nodeagent._pyexec -> qubits.qfile._runner
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import UsageError

if TYPE_CHECKING:
    from jobspaces import Jobspace

    from ._protocol import Claim
    from ._records import JobSpec, Outcome

ENTRY_POINTS = "qubits.kinds"
"""The entry-point group in which a distribution names its own kinds (each entry point loads a ``Kind``)."""


class Runner(Protocol):
    """Runs one task in its own process: reads what it needs from ``scratch``, returns the exit status."""

    def __call__(self, spec: dict[str, Any], scratch: Path, /) -> int: ...


class AfterCommit(Protocol):
    """What the committing node does once a task of the job is decided. Must not raise for the task's sake:
    the outcome stands whatever happens here (the caller logs what escapes)."""

    async def __call__(self, js: Jobspace, job: JobSpec, claim: Claim, outcome: Outcome, node: str, /) -> None: ...


@dataclass(frozen=True)
class Kind:
    """One kind, by the import paths (``module:name``) of its parts; an empty path: the kind has no such part."""

    runner: str = ""
    """A ``Runner``, called by ``python -m nodeagent._pyexec`` in the task's process."""
    pooled: bool = False
    """Whether a warm pooled worker may run the runner (it must leave no state behind in the interpreter)."""
    after_commit: str = ""
    """An ``AfterCommit`` hook, for tasks of jobs of this kind."""
    submit: str = ""
    """The front end's submitter, for ``Client`` methods that hand a kind's work to it (Qfile targets)."""
    pull: str = ""
    """The front end's download of a job's results (a batch's archive; it serves every job)."""


KINDS: dict[str, Kind] = {
    "python": Kind(runner="qubits._pytask:run_python", pooled=True),
    "map": Kind(runner="qubits._pytask:run_python", pooled=True),
    "target": Kind(runner="qubits.qfile._runner:run_target", submit="qubits.qfile:submit_targets"),
    "batch": Kind(after_commit="qubits.batch._commit:after_commit", pull="qubits.batch:pull"),
}
"""The kinds this release ships, by name (a task's ``kind``, or a job's for ``after_commit``)."""


def register(name: str, kind: Kind) -> None:
    """Add (or replace) the kind ``name``."""
    KINDS[name] = kind


def get(name: str) -> Kind | None:
    """The kind ``name``: registered, or named by an installed distribution's entry point; None if unknown."""
    found = KINDS.get(name)
    if found is None:
        for point in entry_points(group=ENTRY_POINTS, name=name):
            found = point.load()
            if isinstance(found, Kind):
                KINDS[name] = found
                return found
    return found


def load(path: str) -> Any:
    """The object at ``module:name``, importing the module."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def runner(name: str) -> Runner | None:
    """The runner of task kind ``name``; None when the kind has none (the agent runs its command)."""
    found = get(name)
    return load(found.runner) if found is not None and found.runner else None


def after_commit(job_kind: str) -> AfterCommit | None:
    """The after-commit hook for tasks of jobs of kind ``job_kind``; None when there is none."""
    found = get(job_kind)
    return load(found.after_commit) if found is not None and found.after_commit else None


def submitter(name: str) -> Any:
    """The submitter the front end of kind ``name`` offers (``Client.submit_targets`` hands targets to the
    Qfile's); UsageError if no installed front end offers one."""
    found = get(name)
    if found is None or not found.submit:
        raise UsageError(f"no installed front end submits tasks of kind {name!r}: install the package that provides it")
    return load(found.submit)


def puller() -> Any:
    """``Job.pull``'s implementation: the batch front end's, which knows archives and plain jobs alike."""
    found = get("batch")
    if found is None or not found.pull:
        raise UsageError("no installed front end pulls results: install qubits whole")
    return load(found.pull)


def pooled(name: str) -> bool:
    """Whether a warm pooled worker may run tasks of kind ``name``."""
    found = get(name)
    return found is not None and bool(found.runner) and found.pooled


def runs_in_python(name: str) -> bool:
    """Whether tasks of kind ``name`` run through ``python -m nodeagent._pyexec`` (the kind has a runner)."""
    found = get(name)
    return found is not None and bool(found.runner)
