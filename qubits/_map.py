"""Map and submit Python functions over a jobspace; futures back.

    import qubits
    squares = qubits.map(square, range(100)).results()           # the local default: see _local.py
    m = qubits.map(step, qubits.Dataset(rows), params=p, jobspace="s3://bkt/q")
    total = qubits.reduce(operator.add, m, ordered=False)
    f = qubits.submit(pow, 2, 10); f.result()
    results = await qubits.map_async(square, range(100))

``map(fn, items)`` runs ``fn(item)`` — or ``fn(item, params)`` when ``params`` is given — one task per
``chunksize`` items, and returns a ``Map``: a sequence of futures, one per item, in order. A
``Dataset`` (or a numpy array, wrapped in one) gives one task per chunk; its chunks are uploaded once
and cached on the nodes, while ``params`` travel with every call. With ``batched=True`` the function
gets a whole chunk (a list, or an array of rows) and there is one future per chunk.

Failures: an exception in ``fn`` fails its task at once (not retried unless ``retry_exceptions``)
and is raised by ``result()`` with the remote traceback. A task whose agent died is taken over by
another, up to ``max_attempts`` times.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, overload

import jobspaces
from jobspaces import Jobspace, background_loop, run_sync

from . import _layout as layout
from . import _wire as wire
from ._client import Client, Job, connect
from ._compose import Ref, deps_of, swap_futures
from ._dataset import Dataset
from ._defaults import TASKS_PER_CHUNK
from ._futures import Future, RemoteTask, Watcher, as_completed, wait_async
from ._ids import new_job_id
from ._local import LocalCluster, default_cluster
from ._records import JobSpec, TaskSpec
from .errors import UsageError, WaitTimeout

MAP_MAX_ATTEMPTS = 3
"""Attempts of a map task: lost agents are retried; an exception in the function is final by default."""

_clients: dict[str, Client] = {}
_clients_lock = threading.Lock()


def _client_for(url: str) -> Client:
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = connect(url)
        return client


class Executor:
    """Where and how calls run: a jobspace (and its agents) plus task options for every call.

    ``jobspace``: a URL, a Client or Jobspace, a LocalCluster, or None — ``$QUBITS_JOBSPACE`` if set,
    else the local default (agents started on this machine). ``code``: a project folder synced to the
    nodes (functions in it then travel by reference). The rest are task options (``requires``:
    capabilities an agent must have).
    """

    def __init__(
        self,
        jobspace: str | Client | Jobspace | LocalCluster | None = None,
        *,
        requires: Iterable[str] = (),
        resources: dict[str, float] | None = None,
        priority: int = 0,
        timeout: float | None = None,
        max_attempts: int = MAP_MAX_ATTEMPTS,
        retry_exceptions: bool = False,
        isolate: bool = False,
        code: str | Path | None = None,
        progress: bool | None = None,
    ) -> None:
        self.cluster: LocalCluster | None = None
        if jobspace is None:
            url = os.environ.get("QUBITS_JOBSPACE")
            if url:
                self.client = _client_for(url)
            else:
                self.cluster = default_cluster()
                self.client = _client_for(self.cluster.url)
        elif isinstance(jobspace, LocalCluster):
            self.cluster = jobspace.start()
            self.client = _client_for(jobspace.url)
        elif isinstance(jobspace, Client):
            self.client = jobspace
        elif isinstance(jobspace, str):
            self.client = _client_for(jobspace)
        else:
            self.client = connect(jobspace)
        if max_attempts < 1:
            raise UsageError("max_attempts must be at least 1")
        self.requires = sorted(requires)
        self.resources = dict(resources or {})
        self.priority = priority
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.retry_exceptions = retry_exceptions
        self.isolate = isolate
        self.code_root = Path(code).resolve() if code is not None else None
        self.progress = progress
        self._code_digest: str | None = None

    # -- submitting ------------------------------------------------------------------------------------
    def map(self, fn: Callable[..., Any] | str, items: Iterable[Any], *, params: Any = None, chunksize: int | None = None, batched: bool = False, name: str = "") -> Map:
        """Run ``fn`` over ``items`` (see the module docstring); returns the Map of futures."""
        return run_sync(self._map(fn, items, params=params, chunksize=chunksize, batched=batched, name=name))

    async def map_async(self, fn: Callable[..., Any] | str, items: Iterable[Any], *, params: Any = None, chunksize: int | None = None, batched: bool = False, name: str = "") -> list[Any]:
        """``map`` for asyncio code: submits without blocking the loop and returns the results."""
        m: Map = await _on_io_loop(self._map(fn, items, params=params, chunksize=chunksize, batched=batched, name=name))
        return await m._results_async()

    def submit(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on a node; its future."""
        return run_sync(self._submit(fn, args, kwargs))

    async def submit_async(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """``submit`` for asyncio code: the call's result (awaited)."""
        future = await _on_io_loop(self._submit(fn, args, kwargs))
        return await future

    def shutdown(self) -> None:
        """Nothing to release per executor (the local default lives until ``qubits.shutdown()``)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- internals -------------------------------------------------------------------------------------
    def _spec(self, tid: str, kind: str, payload: dict[str, Any], name: str) -> TaskSpec:
        if self.isolate:
            payload = {**payload, "isolate": True}
        return TaskSpec(
            id=tid,
            kind=kind,
            payload=payload,
            requires=self.requires,
            resources=self.resources,
            priority=self.priority,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            name=name,
        )

    async def _code(self) -> str | None:
        if self.code_root is None:
            return None
        if self._code_digest is None:
            from ._bundle import pack

            data, digest = await asyncio.to_thread(pack, self.code_root, [])
            await _put_blobs(self.client.aio, {}, bundles={layout.code_bundle(digest): data})
            self._code_digest = digest
        return self._code_digest

    def _job(self, kind: str, name: str, conf: dict[str, Any], code: str | None) -> JobSpec:
        # inline: small results travel in the done records (agents of any version may run the job: an
        # older one ignores the flag and writes result objects, which the watcher reads as before).
        return JobSpec(id=new_job_id(), kind=kind, name=name, code=code, config={"map": {**conf, "inline": True}})

    async def _map(self, fn: Any, items: Iterable[Any] | Dataset, *, params: Any, chunksize: int | None, batched: bool, name: str) -> Map:
        if type(items).__module__ == "numpy" and type(items).__name__ == "ndarray":
            items = Dataset(items)
        blobs: wire.Blobs = {}
        with wire.by_value(self.code_root):
            conf: dict[str, Any] = {"fn": wire.encode_fn(fn, blobs, self.code_root), "batched": batched, "retry": self.retry_exceptions}
            if params is not None:
                conf["params"] = wire.encode_value(params, blobs)
            fname = wire.describe(fn)
            specs: list[TaskSpec] = []
            counts: list[int] = []
            if isinstance(items, Dataset):
                if chunksize is not None:
                    raise UsageError("chunksize is for plain iterables; cut a Dataset when you make it: Dataset(data, chunksize=...)")
                await items.upload(self.client.aio)
                for i, chunk in enumerate(items.chunks):
                    label = chunk.name or f"{chunk.start}:{chunk.start + chunk.count}"
                    specs.append(self._spec(f"i{i:07d}", "map", chunk.payload(), f"{fname}[{label}]"))
                    counts.append(chunk.count)
            else:
                if isinstance(items, (str, bytes)):
                    raise UsageError(f"map over a {type(items).__name__}: pass a list of items")
                size = chunksize or 1
                if size < 1:
                    raise UsageError("chunksize must be at least 1")
                values = list(items)
                for i, start in enumerate(range(0, len(values), size)):
                    group = values[start : start + size]
                    payload = {"items": wire.encode_value(group, blobs), "start": start, "count": len(group)}
                    label = f"{start}" if len(group) == 1 else f"{start}:{start + len(group)}"
                    specs.append(self._spec(f"i{i:07d}", "map", payload, f"{fname}[{label}]"))
                    counts.append(len(group))
        code = await self._code()
        await _put_blobs(self.client.aio, blobs)
        job = self._job("map", name or f"map {fname}", {**conf, "items": sum(counts)}, code)
        await self.client.specs.submit(job, specs)
        tasks = [RemoteTask(job.id, s.id, f"{i // TASKS_PER_CHUNK:06d}", s) for i, s in enumerate(specs)]
        watcher = Watcher(self.client, job.id, tasks).start()
        return Map(self, Job(self.client, job.id), watcher, tasks, counts, per_item=not batched)

    async def _submit(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future:
        blobs: wire.Blobs = {}
        refs: list[Ref] = []  # futures among the arguments: the call waits for them (see _compose)
        args, kwargs = swap_futures((args, kwargs), refs)
        with wire.by_value(self.code_root):
            conf = {"fn": wire.encode_fn(fn, blobs, self.code_root), "retry": self.retry_exceptions}
            payload: dict[str, Any] = {"call": wire.encode_value((args, kwargs), blobs)}
        if refs:
            payload["refs"] = True
        code = await self._code()
        await _put_blobs(self.client.aio, blobs)
        fname = wire.describe(fn)
        job = self._job("python", f"submit {fname}", conf, code)
        spec = replace(self._spec("call", "python", payload, fname), deps=deps_of(refs))
        # dag: when the call is decided, calls of other jobs that wait for it are released at once.
        await self.client.specs.submit(job, [spec], dag=True)
        task = RemoteTask(job.id, spec.id, "000000", spec)
        return Future(Watcher(self.client, job.id, [task]).start(), task)


async def _on_io_loop(coro: Any) -> Any:
    """Run a coroutine on the qubits I/O loop (where the jobspace lives) from another loop."""
    loop = background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


async def _put_blobs(js: Jobspace, blobs: wire.Blobs, *, bundles: dict[str, bytes] | None = None) -> None:
    """Content-addressed uploads: HEAD first, create-only, an existing object never re-sent."""
    todo = {layout.data_chunk(d): b for d, b in blobs.items()}
    todo.update(bundles or {})

    async def one(key: str, data: bytes) -> None:
        if await js.exists(key):
            return
        try:
            await js.put(key, data, if_absent=True)
        except jobspaces.PreconditionFailed:
            pass  # the same bytes, uploaded by someone else meanwhile

    await asyncio.gather(*(one(k, v) for k, v in todo.items()))


class Map(Sequence[Future]):
    """The futures of one ``map``, one per item (``batched``: per chunk), in order."""

    def __init__(self, executor: Executor, job: Job, watcher: Watcher, tasks: list[RemoteTask], counts: list[int], *, per_item: bool) -> None:
        self.executor = executor
        self.job = job
        self._watcher = watcher
        self._tasks = tasks
        self._per_item = per_item
        self._index: list[tuple[int, int | None]] = []
        for t, n in enumerate(counts):
            if per_item:
                self._index.extend((t, i) for i in range(n))
            else:
                self._index.append((t, None))

    def __repr__(self) -> str:
        return f"<qubits.Map {self.job.id}: {self._watcher.decided}/{len(self._tasks)} tasks done>"

    def __len__(self) -> int:
        return len(self._index)

    @overload
    def __getitem__(self, i: int) -> Future: ...

    @overload
    def __getitem__(self, i: slice) -> list[Future]: ...

    def __getitem__(self, i: int | slice) -> Future | list[Future]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        t, idx = self._index[i]
        return Future(self._watcher, self._tasks[t], idx)

    def __iter__(self) -> Iterator[Future]:
        for i in range(len(self)):
            yield self[i]

    @property
    def tasks(self) -> int:
        return len(self._tasks)

    def done(self) -> bool:
        """Whether every task is decided."""
        return not self._watcher.pending

    def counts(self) -> dict[str, int]:
        """Decided tasks by outcome."""
        return self._watcher.counts()

    def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> Map:
        """Block until every task is decided (a progress bar on a terminal); WaitTimeout after ``timeout``."""
        show = self.executor.progress if progress is None else progress
        if show is None:
            show = sys.stderr.isatty()
        deadline = None if timeout is None else time.monotonic() + timeout
        inner = [t.cf for t in self._tasks]
        bar = None
        if show:
            from ._mapbar import MapProgress  # rich is loaded only for a terminal

            bar = MapProgress(self.job.id, self.job.client.url, len(self._tasks))
        try:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                step = 0.25 if left is None else max(0.0, min(0.25, left))
                _done, pending = cf.wait(inner, timeout=step)
                if bar is not None:
                    bar.update(len(self._tasks) - len(pending), self._watcher.counts())
                if not pending:
                    return self
                if self.executor.cluster is not None:
                    self.executor.cluster.check()
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(f"map {self.job.id}: {len(pending)} of {len(inner)} tasks not done after {timeout:g}s")
                inner = list(pending)
        finally:
            if bar is not None:
                bar.close()

    def results(self, timeout: float | None = None, *, progress: bool | None = None) -> list[Any]:
        """Every result in order; raises the first failure (in item order)."""
        self.wait(timeout, progress=progress)
        out: list[Any] = []
        for t in self._tasks:
            value = t.cf.result(0)
            if self._per_item:
                out.extend(value)
            else:
                out.append(value)
        return out

    def as_completed(self, timeout: float | None = None) -> Iterator[Future]:
        """The futures as they finish."""
        return as_completed(self, timeout)

    def cancel(self) -> int:
        """Cancel the whole map: running tasks are stopped, the rest decided cancelled. Returns how
        many tasks this call decided."""
        n = self.job.cancel()
        self._watcher.poke()
        return n

    def close(self) -> None:
        """Stop watching for results."""
        self._watcher.close()

    def __await__(self) -> Any:
        return self._results_async().__await__()

    async def _results_async(self) -> list[Any]:
        for t in self._tasks:
            await wait_async(t.cf)
        return self.results(0, progress=False)


# -- the module-level API ----------------------------------------------------------------------------------
def map(fn: Callable[..., Any] | str, items: Iterable[Any], *, params: Any = None, jobspace: str | Client | Jobspace | LocalCluster | None = None, chunksize: int | None = None, batched: bool = False, requires: Iterable[str] = (), name: str = "", **options: Any) -> Map:  # noqa: A001 - the name users expect
    """Run ``fn`` over ``items`` on the agents of ``jobspace``; a Map of futures (see ``Executor`` for
    ``options``: resources, priority, timeout, max_attempts, retry_exceptions, isolate, code, progress)."""
    return Executor(jobspace, requires=requires, **options).map(fn, items, params=params, chunksize=chunksize, batched=batched, name=name)


async def map_async(fn: Callable[..., Any] | str, items: Iterable[Any], *, params: Any = None, jobspace: str | Client | Jobspace | LocalCluster | None = None, chunksize: int | None = None, batched: bool = False, requires: Iterable[str] = (), name: str = "", **options: Any) -> list[Any]:
    """``map`` inside asyncio code: the results, in order."""
    return await Executor(jobspace, requires=requires, **options).map_async(fn, items, params=params, chunksize=chunksize, batched=batched, name=name)


def submit(fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Future:
    """Run ``fn(*args, **kwargs)`` on the default jobspace (``$QUBITS_JOBSPACE`` or the local default);
    for another jobspace or options, use ``qubits.Executor(jobspace, ...).submit``."""
    return Executor().submit(fn, *args, **kwargs)


async def submit_async(fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
    """``submit`` inside asyncio code: the call's result."""
    return await Executor().submit_async(fn, *args, **kwargs)
