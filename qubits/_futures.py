"""Futures of Python tasks: result, exception, done, cancel, await; as_completed, wait, reduce.

One watcher per job lists ``done/{job}/`` (one LIST a poll for the whole map, however many futures),
reads each new done record once, and its result object once. Polls back off while nothing finishes.

A remote exception is raised again here: as its own type when it unpickles (with the remote traceback
attached as ``__cause__``, like ``concurrent.futures`` does, and as ``.remote_traceback``), or else as
``TaskFailed`` carrying the type, message and ``remote_traceback``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import functools
import linecache
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jobspaces
from jobspaces import background_loop, run_sync

from . import _layout as layout
from ._cancel import cancel_task
from ._records import Done, Outcome, TaskSpec
from ._wire import loads
from .errors import Cancelled, CorruptObject, TaskFailed, WaitTimeout

POLL_MIN = 0.02
"""Seconds between listings of done/ while results keep arriving."""
POLL_MAX = 1.0
"""The longest pause between listings while nothing finishes."""
FETCH_CONCURRENCY = 16
"""Done records and results read at once."""
GIVE_UP_AFTER = 20
"""Failed listings in a row (each retried with backoff by the jobspace) before the futures fail."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised on a node (attached as ``__cause__``)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb.rstrip()}\n"""'


_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in ')


def with_source(tb: str) -> str:
    """A node's traceback with the source lines it could not show (the code was pickled here, by
    value, and the node has no copy of its file) filled in from the files on this machine."""
    lines, out = tb.splitlines(keepends=True), []
    for i, line in enumerate(lines):
        out.append(line)
        m = _FRAME.match(line)
        if m and not (i + 1 < len(lines) and lines[i + 1].startswith("    ")):
            src = linecache.getline(m["file"], int(m["line"])).strip()
            if src:
                out.append(f"    {src}\n")
    return "".join(out)


def remote_exception(done: Done, env: dict[str, Any] | None) -> BaseException:
    """The exception to raise for a failed task."""
    where = f"task {done.task} of job {done.job} on {done.holder or 'a node'}"
    if not env:
        return TaskFailed(f"{where} failed: {done.error or done.outcome}")
    tb = with_source(str(env.get("traceback") or ""))
    exc: BaseException | None = None
    if env.get("exception"):
        with contextlib.suppress(Exception):
            exc = loads(env["exception"])
    if not isinstance(exc, BaseException) or isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        exc = TaskFailed(f"{env.get('type')}: {env.get('message')} ({where})", remote_traceback=tb)
    with contextlib.suppress(AttributeError, TypeError):
        exc.remote_traceback = tb  # type: ignore[attr-defined]
    exc.__cause__ = RemoteTraceback(tb)
    return exc


@dataclass(eq=False)
class RemoteTask:
    """One task of a job, and the concurrent future its watcher settles."""

    job: str
    task: str
    chunk: str
    spec: TaskSpec
    cf: cf.Future[Any] = field(default_factory=cf.Future)
    cancelled: bool = False
    done: Done | None = None


class Future:
    """The result of one call (``submit``) or one item of a ``map`` — awaitable too."""

    def __init__(self, watcher: Watcher, task: RemoteTask, index: int | None = None) -> None:
        self._watcher = watcher
        self._task = task
        self._index = index

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled() else "finished" if self.done() else "pending"
        return f"<qubits.Future {self.key} {state}>"

    @property
    def key(self) -> str:
        """job/task[index]: where this result lives."""
        return f"{self._task.job}/{self._task.task}" + ("" if self._index is None else f"[{self._index}]")

    @property
    def job(self) -> str:
        return self._task.job

    def done(self) -> bool:
        """Whether the task is decided (succeeded, failed or cancelled)."""
        return self._task.cf.done()

    def cancelled(self) -> bool:
        return self._task.cancelled

    def result(self, timeout: float | None = None) -> Any:
        """The return value; raises the remote exception, Cancelled, or WaitTimeout."""
        try:
            value = self._task.cf.result(timeout)
        except cf.TimeoutError:
            raise WaitTimeout(f"no result for {self.key} after {timeout:g}s") from None
        return value if self._index is None else value[self._index]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The remote exception (or Cancelled), or None if the call succeeded."""
        try:
            return self._task.cf.exception(timeout)
        except cf.TimeoutError:
            raise WaitTimeout(f"no result for {self.key} after {timeout:g}s") from None

    def cancel(self) -> bool:
        """Cancel the task if no agent runs it yet; False if it runs or is decided already.

        A map task with several items (``chunksize``) is cancelled as a whole: its items' futures too.
        """
        if self._task.cancelled:
            return True
        if self.done():
            return False
        return self._watcher.cancel(self._task)

    def then(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(result, *args, **kwargs)`` on a node once this succeeds (see ``qubits._compose``);
        its future. If this fails, that call is decided upstream-failed, with the cause."""
        from ._map import Executor

        return Executor(self._watcher.client).submit(fn, self, *args, **kwargs)

    def add_done_callback(self, fn: Callable[[Future], object]) -> None:
        """Call ``fn(self)`` once decided (in the qubits I/O thread)."""
        self._task.cf.add_done_callback(lambda _f: fn(self))

    def __await__(self) -> Generator[Any, None, Any]:
        return self._wait_async().__await__()

    async def _wait_async(self) -> Any:
        await wait_async(self._task.cf)
        return self.result(0)


async def wait_async(future: cf.Future[Any]) -> None:
    """Wait for a concurrent future inside asyncio without ever cancelling it."""
    if future.done():
        return
    loop = asyncio.get_running_loop()
    signal = loop.create_future()

    def wake(_f: cf.Future[Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop closed meanwhile
            loop.call_soon_threadsafe(_set_none, signal)

    future.add_done_callback(wake)
    await signal


def _set_none(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Watcher:
    """Settles the futures of one job from its done records."""

    def __init__(self, client: Any, job: str, tasks: Iterable[RemoteTask]) -> None:
        self.client = client
        self.job = job
        self.tasks = {t.task: t for t in tasks}
        self.pending = set(self.tasks)
        self.lists = 0
        self._lock = threading.Lock()
        self._closed = False
        self._kick: asyncio.Event | None = None
        self._runner: cf.Future[None] | None = None

    def start(self) -> Watcher:
        if self.pending:
            self._runner = asyncio.run_coroutine_threadsafe(self._watch(), background_loop())
        return self

    def close(self) -> None:
        """Stop watching (futures not decided stay pending)."""
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()

    @property
    def decided(self) -> int:
        return len(self.tasks) - len(self.pending)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tasks.values():
            if t.done is not None:
                out[t.done.outcome] = out.get(t.done.outcome, 0) + 1
        return out

    async def _watch(self) -> None:
        self._kick = asyncio.Event()
        js = self.client.aio
        interval = POLL_MIN
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)
        failures = 0
        while self.pending and not self._closed:
            started = time.monotonic()
            try:
                metas = await js.list_all(layout.done_prefix(self.job))
                failures = 0
            except jobspaces.JobspaceError as exc:
                failures += 1
                if failures >= GIVE_UP_AFTER:
                    self._fail_pending(exc)
                    return
                metas = []
            self.lists += 1
            new = []
            for meta in metas:
                tid = meta.key.rsplit("/", 1)[1].removesuffix(".json")
                if tid in self.pending:
                    new.append(tid)
            if new:
                await asyncio.gather(*(self._settle(tid, gate) for tid in new))
                # Listing costs grow with the job: never poll faster than a few listings take.
                interval = max(POLL_MIN, 2 * (time.monotonic() - started))
            else:
                interval = min(POLL_MAX, interval * 1.5)
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), interval)

    def poke(self) -> None:
        """Poll now (after a cancel, say)."""
        kick = self._kick
        if kick is not None:
            background_loop().call_soon_threadsafe(kick.set)

    def _fail_pending(self, exc: BaseException) -> None:
        """The jobspace keeps failing: every future still pending raises it."""
        with self._lock:
            pending, self.pending = set(self.pending), set()
        for tid in pending:
            task = self.tasks[tid]
            if not task.cf.done():
                task.cf.set_exception(exc)

    async def _settle(self, tid: str, gate: asyncio.Semaphore) -> None:
        task = self.tasks[tid]
        js = self.client.aio
        async with gate:
            try:
                data, _ = await js.get(layout.done(self.job, tid))
                try:
                    done = Done.from_json(data, layout.done(self.job, tid))
                    body = done.inline_result() if done.has_result else None
                except CorruptObject as exc:
                    done, body = Done(self.job, tid, Outcome.FAILED.value, 0, error=str(exc)), None
                if body is None and done.has_result and done.attempt:
                    try:
                        body, _ = await js.get(layout.result(self.job, tid, done.attempt))
                    except jobspaces.NotFound:
                        body = None
            except jobspaces.JobspaceError:
                return  # read again on the next poll
        self._decide(task, done, body)

    def _decide(self, task: RemoteTask, done: Done, body: bytes | None) -> None:
        with self._lock:
            if task.task not in self.pending:
                return
            self.pending.discard(task.task)
        task.done = done
        if task.cf.done():
            return
        if done.outcome == Outcome.SUCCEEDED.value:
            try:
                value = loads(body) if body is not None else None
            except Exception as exc:  # noqa: BLE001 - say why the value cannot be used here
                task.cf.set_exception(TaskFailed(f"the result of {self.job}/{task.task} does not unpickle here: {exc}"))
                return
            task.cf.set_result(value)
            return
        if done.outcome == Outcome.CANCELLED.value:
            task.cancelled = True
            task.cf.set_exception(Cancelled(f"{self.job}/{task.task} was cancelled: {done.error or ''}".rstrip(": ")))
            return
        env = None
        if body is not None:
            with contextlib.suppress(Exception):
                raw = loads(body)
                env = raw if isinstance(raw, dict) and raw.get("qubits_error") else None
        task.cf.set_exception(remote_exception(done, env))

    def cancel(self, task: RemoteTask) -> bool:
        ok = run_sync(cancel_task(self.client, task.job, task.chunk, task.spec))
        if ok:
            now = time.time()
            self._decide(task, Done(task.job, task.task, Outcome.CANCELLED.value, 0, error="cancelled by its submitter", finished=now), None)
        else:
            self.poke()
        return ok


# -- helpers over many futures ------------------------------------------------------------------------
def _groups(futures: Iterable[Future]) -> dict[cf.Future[Any], list[Future]]:
    out: dict[cf.Future[Any], list[Future]] = {}
    for f in futures:
        out.setdefault(f._task.cf, []).append(f)
    return out


def as_completed(futures: Iterable[Future], timeout: float | None = None) -> Iterator[Future]:
    """Yield futures as they finish (succeeded, failed or cancelled); WaitTimeout after ``timeout``."""
    groups = _groups(futures)
    try:
        for inner in cf.as_completed(list(groups), timeout=timeout):
            yield from groups[inner]
    except cf.TimeoutError:
        left = sum(len(v) for k, v in groups.items() if not k.done())
        raise WaitTimeout(f"{left} futures not finished after {timeout:g}s") from None


def wait(futures: Iterable[Future], timeout: float | None = None, return_when: str = cf.ALL_COMPLETED) -> tuple[list[Future], list[Future]]:
    """(done, not_done) like ``concurrent.futures.wait``: ALL_COMPLETED, FIRST_COMPLETED or FIRST_EXCEPTION."""
    items = list(futures)
    groups = _groups(items)
    cf.wait(list(groups), timeout=timeout, return_when=return_when)
    return [f for f in items if f.done()], [f for f in items if not f.done()]


_MISSING = object()


def reduce(fn: Callable[[Any, Any], Any], futures: Iterable[Future], initial: Any = _MISSING, *, ordered: bool = True, timeout: float | None = None) -> Any:
    """Fold the results with ``fn`` (like ``functools.reduce``), raising the first remote exception.

    ``ordered=False`` folds results as they arrive (``fn`` must then be associative and commutative,
    like ``operator.add``), so the reduction overlaps the map.
    """
    items = list(futures)
    source: Iterable[Future] = items if ordered else as_completed(items, timeout)
    deadline = None if timeout is None else time.monotonic() + timeout

    def values() -> Iterator[Any]:
        for f in source:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            yield f.result(left)

    if initial is _MISSING:
        return functools.reduce(fn, values())
    return functools.reduce(fn, values(), initial)
