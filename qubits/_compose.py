"""Composing Python calls from futures: a future among ``submit``'s arguments, ``.then()``, ``gather``.

    a = ex.submit(load, "x")
    b = ex.submit(clean, a)                 # waits for a; gets a's result, on the node
    c = b.then(summarize, top=3)            # the same as ex.submit(summarize, b, top=3)
    qubits.gather([a, b, c])                # their results, in order

On the client a future in the arguments (at the top, or inside lists, tuples, sets and dicts) is sent as
a ``Ref`` (its job, task and item), and the call's task depends on that task of the other job
(``_ids.xref``). The agent that claims the task parks it until those tasks are decided
(``Dag.await_others``): when they all succeeded it runs, and the runner on the node reads their results
from the jobspace (inline in their done records, or their result objects) and passes them in place of
the futures; when one failed, the task is decided ``upstream_failed`` with the failed task's error,
and so are the tasks that wait for it in turn. A call's task is claimed, run and committed like any
other: exactly once.

Jobs of ``submit`` list their dependents' edges when their task is decided, so a dependent is released
at once; a dependent of a ``map`` item is woken by the parked-lease check (within two lease ttls).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jobspaces

from . import _layout as layout
from ._futures import Future
from ._ids import xref
from ._records import Done, Outcome
from ._wire import loads
from .errors import TaskFailed


@dataclass(frozen=True)
class Ref:
    """A future's place in the jobspace, sent to the node in its stead."""

    job: str
    task: str
    index: int | None = None
    """The item of a map task that holds several (``chunksize``)."""


def _rebuild(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """``value`` with ``leaf(v)`` in place of each v inside lists, tuples, sets and dicts (a leaf
    returns v itself to keep it)."""
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_rebuild(v, leaf) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return {k: _rebuild(v, leaf) for k, v in value.items()}
    return leaf(value)


def swap_futures(value: Any, refs: list[Ref]) -> Any:
    """``value`` with every future in it replaced by its Ref (collected in ``refs``)."""

    def leaf(v: Any) -> Any:
        if not isinstance(v, Future):
            return v
        refs.append(Ref(v._task.job, v._task.task, v._index))
        return refs[-1]

    return _rebuild(value, leaf)


def deps_of(refs: Iterable[Ref]) -> list[str]:
    """The task dependencies (on other jobs' tasks) of a call with these Refs."""
    return sorted({xref(r.job, r.task) for r in refs})


def fill(value: Any, read: Callable[[Ref], Any]) -> Any:
    """``value`` with every Ref replaced by its result (``read`` it, on the node)."""
    return _rebuild(value, lambda v: read(v) if isinstance(v, Ref) else v)


class Results:
    """Reads the results of other jobs' tasks on a node (each once)."""

    def __init__(self, js: jobspaces.SyncJobspace) -> None:
        self.js = js
        self._values: dict[tuple[str, str], Any] = {}

    def read(self, ref: Ref) -> Any:
        key = (ref.job, ref.task)
        if key not in self._values:
            done = Done.from_json(self.js.get(layout.done(ref.job, ref.task))[0], layout.done(ref.job, ref.task))
            if done.outcome != Outcome.SUCCEEDED.value:  # the agent checked; a changed record is corrupt
                raise TaskFailed(f"input {ref.job}/{ref.task} did not succeed ({done.outcome}): {done.error or ''}")
            body = done.inline_result()
            if body is None and done.has_result:
                body = self.js.get(layout.result(ref.job, ref.task, done.attempt))[0]
            self._values[key] = loads(body) if body is not None else None
        value = self._values[key]
        return value if ref.index is None else value[ref.index]


def gather(futures: Iterable[Future], timeout: float | None = None) -> list[Any]:
    """The results of ``futures``, in order (raising the first remote exception, as ``result`` does)."""
    return [f.result(timeout) for f in futures]
