"""Reading and writing job and task specs: streamed on submit, cached forever on read (they are immutable)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, Iterable
from dataclasses import replace
from typing import Any

import jobspaces
from jobspaces import Jobspace

from . import _layout as layout
from ._defaults import MAX_SPEC_BYTES, TASKS_PER_CHUNK, WAKE_MIN_INTERVAL
from ._hints import Hinter
from ._hints import secret as _secret
from ._ids import XREF, submitter
from ._records import JobSpec, TaskSpec
from .errors import CorruptObject, NotFoundError, TamperedJob, UsageError


def sign(job_bytes: bytes, digests: list[str]) -> str | None:
    """HMAC-SHA256 over the job spec's bytes and its chunks' digests, if QUBITS_SECRET is set."""
    secret = _secret()
    if secret is None:
        return None
    msg = job_bytes + b"\n" + "\n".join(digests).encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def sign_task(job: str, task_bytes: bytes) -> str | None:
    """HMAC-SHA256 of a task added to a running job (a dynamic dependency), if QUBITS_SECRET is set."""
    secret = _secret()
    if secret is None:
        return None
    return hmac.new(secret, job.encode() + b"\n" + task_bytes, hashlib.sha256).hexdigest()


def _check_task(job: str, t: TaskSpec, seen: set[str], dag: bool) -> None:
    """Refuse a task that cannot be stored or run: a duplicate or unsafe id, undeclared dependencies,
    a spec too large. ``seen`` collects the ids so far."""
    if t.id in seen:
        raise UsageError(f"task id {t.id!r} appears twice in job {job}")
    bad = not t.id or t.id in (".", "..") or "/" in t.id or "\\" in t.id or any(c < " " or c == "\x7f" for c in t.id)
    if bad:
        raise UsageError(
            f"task id {t.id!r} cannot be part of an object key (no '/', '\\', control characters, '.' or '..'): "
            "qubits.task_id(name) makes a safe id from any name"
        )
    if _local_deps(t) and not dag:
        raise UsageError(f"task {t.id!r} has dependencies: submit the job with dag=True")
    seen.add(t.id)
    if len(t.to_json()) > MAX_SPEC_BYTES:
        raise UsageError(f"task {t.id!r} has a spec over {MAX_SPEC_BYTES} bytes: put bulk data in a Dataset or files")


def _local_deps(t: TaskSpec) -> list[str]:
    """The dependencies of ``t`` within its own job. Those on tasks of other jobs (``_dag.xref``) are
    not edges of this job: the task is ready, and the agent that claims it parks it until they are
    decided (``Dag.await_others``)."""
    return [d for d in t.deps if not d.startswith(XREF)]


def _chunk_name(index: int) -> str:
    return f"{index:06d}"


class Specs:
    """Job and task specs of one jobspace, with an LRU cache of immutable objects."""

    def __init__(self, js: Jobspace, cache_size: int = 256) -> None:
        self.js = js
        self._chunks: OrderedDict[tuple[str, str], dict[str, TaskSpec]] = OrderedDict()
        self.loads = 0
        """Chunks read so far: what ``cached_chunk`` answers changes only when this does."""
        self._jobs: OrderedDict[str, JobSpec] = OrderedDict()
        self._cache_size = cache_size
        self._last_wake = 0.0
        self._pending_wake: asyncio.Task[None] | None = None
        self._job_reads: dict[str, asyncio.Future[JobSpec]] = {}
        self.hinter = Hinter(js)
        """Wakes idle agents after a wake (UDP hints to those that publish an address)."""
        self._peer_read: asyncio.Task[None] | None = None
        self._job_bytes: dict[str, bytes] = {}
        self._digests: dict[str, list[str]] = {}

    # -- submit ------------------------------------------------------------------------------------
    async def submit(
        self,
        job: JobSpec,
        tasks: Iterable[TaskSpec] | AsyncIterable[TaskSpec],
        *,
        dag: bool = False,
    ) -> JobSpec:
        """Write a job: its spec, then task chunks (streamed, TASKS_PER_CHUNK at a time) with ready
        entries, then the seal (counts, digests, signature), then the wake signal.

        With ``dag``, the dependency edges of every task are written before any task is ready, and
        only tasks without dependencies become ready (the rest are released as dependencies finish).
        """
        # Read who to hint while the job is written, so the hints leave the moment it is.
        self._peer_read = asyncio.get_running_loop().create_task(self._read_peers())
        job = replace(
            job,
            created=job.created or time.time(),
            submitter=job.submitter or submitter(),
            config={**job.config, "dag": True} if dag else job.config,
        )
        if isinstance(tasks, (list, tuple)):
            # A whole list is checked before anything is written: a refused job leaves nothing to run.
            checked: set[str] = set()
            for t in tasks:
                _check_task(job.id, t, checked, dag)
        job_bytes = job.to_json()
        await self.js.put(layout.job_spec(job.id), job_bytes, if_absent=True)
        try:
            return await self._stream(job, job_bytes, tasks, dag)
        except Exception as exc:
            # A stream that fails part way has chunks out already (and runnable tasks, without a DAG):
            # cancel the job so that none of it runs, and say so.
            try:
                await self.js.put(layout.cancel(job.id), json.dumps({"by": job.submitter, "reason": str(exc)}).encode())
            except jobspaces.JobspaceError:
                pass
            if isinstance(exc, UsageError):
                raise UsageError(f"{exc}; job {job.id} was cancelled, so none of its tasks run") from None
            raise

    async def _stream(
        self, job: JobSpec, job_bytes: bytes, tasks: Iterable[TaskSpec] | AsyncIterable[TaskSpec], dag: bool
    ) -> JobSpec:
        count = 0
        chunk: list[TaskSpec] = []
        digests: list[str] = []
        seen: set[str] = set()
        roots: list[tuple[str, str, int]] = []
        index = 0

        async def flush() -> None:
            nonlocal index
            if not chunk:
                return
            name = _chunk_name(index)
            data = json.dumps([t.to_dict() for t in chunk], separators=(",", ":")).encode()
            digests.append(hashlib.sha256(data).hexdigest())
            await self.js.put(layout.task_chunk(job.id, name), data, if_absent=True)
            for t in chunk:
                local = _local_deps(t)
                for dep in local:
                    await self.js.put(layout.wait_edge(job.id, dep, t.id), b"")
                if not local:
                    if dag:
                        roots.append((name, t.id, t.priority))
                    else:
                        await self.js.put(layout.ready(job.id, name, t.id, t.priority), b"", if_absent=True)
            chunk.clear()
            index += 1

        async def take(t: TaskSpec) -> None:
            nonlocal count
            _check_task(job.id, t, seen, dag)
            chunk.append(t)
            count += 1
            if len(chunk) >= TASKS_PER_CHUNK:
                await flush()

        if hasattr(tasks, "__aiter__"):
            async for t in tasks:
                await take(t)
        else:
            for t in tasks:
                await take(t)
        await flush()
        for name, tid, prio in roots:
            await self.js.put(layout.ready(job.id, name, tid, prio), b"", if_absent=True)
        seal = {"chunks": index, "task_count": count, "digests": digests, "signature": sign(job_bytes, digests)}
        await self.js.put(layout.seal(job.id), json.dumps(seal).encode(), if_absent=True)
        await self.wake(force=True)
        return replace(job, chunks=index, task_count=count)

    async def add_task(self, job: str, task: TaskSpec) -> bool:
        """Add a task to a running job (a dynamic dependency); False if it exists already."""
        data = task.to_json()
        if len(data) > MAX_SPEC_BYTES:
            raise UsageError(f"task {task.id!r} has a spec over {MAX_SPEC_BYTES} bytes")
        sig = sign_task(job, data)
        if sig is not None:  # the job's signature cannot cover tasks added later: each carries its own
            data = json.dumps({**json.loads(data), "sig": sig}, separators=(",", ":"), sort_keys=True).encode()
        try:
            await self.js.put(layout.dynamic_task(job, task.id), data, if_absent=True)
        except jobspaces.PreconditionFailed:
            return False
        return True

    async def wake(self, force: bool = False) -> None:
        """Rewrite the wake object so idle agents poll now; at most once a second per writer. A wake
        asked for within that second is written when it ends, not dropped (idle agents poll only on a
        wake, so a dropped one would leave newly ready work unseen for long)."""
        now = time.monotonic()
        if not force and now - self._last_wake < WAKE_MIN_INTERVAL:
            if self._pending_wake is None or self._pending_wake.done():
                delay = WAKE_MIN_INTERVAL - (now - self._last_wake)
                self._pending_wake = asyncio.get_running_loop().create_task(self._wake_later(delay))
            return
        await self._write_wake()

    async def _wake_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._write_wake()

    async def _write_wake(self) -> None:
        self._last_wake = time.monotonic()
        # Hints first: a datagram leaves at once, while the wake object's PUT takes a round trip.
        if self._peer_read is not None:
            await self._peer_read
            self._peer_read = None
        await self.hinter.hint_idle()
        try:
            await self.js.put(layout.WAKE, os.urandom(8).hex().encode())
        except jobspaces.JobspaceError:
            pass  # a hint: agents poll anyway, only later

    async def _read_peers(self) -> None:
        with contextlib.suppress(jobspaces.JobspaceError):
            await self.hinter.refresh()

    # -- read --------------------------------------------------------------------------------------
    def cached_job(self, job: str) -> JobSpec | None:
        """The job spec if it was read already (None: not yet)."""
        return self._jobs.get(job)

    async def job(self, job: str) -> JobSpec:
        """The job spec; NotFoundError if there is none. Concurrent asks for one job share one read."""
        cached = self._jobs.get(job)
        if cached is not None:
            return cached
        pending = self._job_reads.get(job)
        if pending is None:
            pending = self._job_reads[job] = asyncio.ensure_future(self._read_job(job))
            pending.add_done_callback(lambda _done: self._job_reads.pop(job, None))
        return await asyncio.shield(pending)

    async def _read_job(self, job: str) -> JobSpec:
        try:
            data, _ = await self.js.get(layout.job_spec(job))
        except jobspaces.NotFound:
            raise NotFoundError(f"no job {job!r} in {self.js.url}") from None
        spec = JobSpec.from_json(data, layout.job_spec(job))
        seal = await self.seal(job)
        if seal is None:
            return spec  # still being submitted: not cached, counts unknown
        spec = replace(spec, chunks=int(seal["chunks"]), task_count=int(seal["task_count"]), signature=seal.get("signature"))
        self._job_bytes[job] = data
        self._remember(self._jobs, job, spec)
        return spec

    async def seal(self, job: str) -> dict[str, Any] | None:
        """The job's seal (chunk count, task count, digests, signature), or None while submitting."""
        try:
            data, _ = await self.js.get(layout.seal(job))
        except jobspaces.NotFound:
            return None
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise CorruptObject(f"{layout.seal(job)}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict) or "chunks" not in raw:
            raise CorruptObject(f"{layout.seal(job)}: not a seal")
        self._digests[job] = list(raw.get("digests") or [])
        return raw

    async def verify(self, spec: JobSpec) -> None:
        """Refuse a job whose signature is missing or wrong when QUBITS_SECRET is set."""
        if _secret() is None:
            return
        spec = await self.job(spec.id)
        job_bytes = self._job_bytes.get(spec.id)
        if job_bytes is None:
            raise TamperedJob(f"job {spec.id}: not sealed yet, so its signature cannot be checked")
        expected = sign(job_bytes, self._digests.get(spec.id, []))
        if not spec.signature or not expected or not hmac.compare_digest(spec.signature, expected):
            raise TamperedJob(f"job {spec.id}: signature missing or wrong (QUBITS_SECRET is set); refusing to run it")

    async def chunk(self, job: str, chunk: str) -> dict[str, TaskSpec]:
        """The tasks of one chunk by id (verified against the job's digest when signing is on)."""
        cached = self._chunks.get((job, chunk))
        if cached is not None:
            self._chunks.move_to_end((job, chunk))
            return cached
        key = layout.task_chunk(job, chunk)
        data, _ = await self.js.get(key)
        if _secret() is not None:
            spec = await self.job(job)
            await self.verify(spec)
            digests = self._digests.get(job, [])
            if int(chunk) >= len(digests) or hashlib.sha256(data).hexdigest() != digests[int(chunk)]:
                raise TamperedJob(f"job {job}: task chunk {chunk} does not match its signed digest; refusing to run it")
        tasks = self._parse_chunk(key, data)
        self._remember(self._chunks, (job, chunk), tasks)
        self.loads += 1
        return tasks

    def _parse_chunk(self, key: str, data: bytes) -> dict[str, TaskSpec]:
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptObject(f"{key}: not valid JSON ({exc}); it may be truncated") from None
        if not isinstance(raw, list):
            raise CorruptObject(f"{key}: expected a JSON list of tasks")
        tasks = {}
        for item in raw:
            t = TaskSpec.from_dict(item, key)
            tasks[t.id] = t
        return tasks

    async def task(self, job: str, chunk: str, task: str) -> TaskSpec:
        """One task's spec; NotFoundError if the chunk does not hold it."""
        if chunk == "x":
            key = layout.dynamic_task(job, task)
            try:
                data, _ = await self.js.get(key)
            except jobspaces.NotFound:
                raise NotFoundError(f"no task {task!r} in job {job!r}") from None
            spec = TaskSpec.from_json(data, key)
            if _secret() is not None:
                await self.verify(await self.job(job))
                sig = json.loads(data).get("sig")
                expected = sign_task(job, spec.to_json())
                if not isinstance(sig, str) or not expected or not hmac.compare_digest(sig, expected):
                    raise TamperedJob(
                        f"job {job}: added task {task!r} is unsigned or its signature is wrong (QUBITS_SECRET is set); "
                        "refusing to run it"
                    )
            return spec
        try:
            tasks = await self.chunk(job, chunk)
        except jobspaces.NotFound:
            raise NotFoundError(f"no task chunk {chunk} in job {job!r}") from None
        try:
            return tasks[task]
        except KeyError:
            raise NotFoundError(f"no task {task!r} in job {job!r}") from None

    async def all_tasks(self, job: str) -> dict[str, tuple[str, TaskSpec]]:
        """Every task of a job, by id, with the chunk it lives in (dynamic tasks included)."""
        spec = await self.job(job)
        out: dict[str, tuple[str, TaskSpec]] = {}
        chunks = spec.chunks
        if not chunks:  # unsealed: read what exists so far
            chunks = len([m async for m in self.js.list(layout.chunks_prefix(job))])
        for i in range(chunks):
            name = _chunk_name(i)
            for tid, t in (await self.chunk(job, name)).items():
                out[tid] = (name, t)
        async for meta in self.js.list(layout.dynamic_prefix(job)):
            tid = meta.key.rsplit("/", 1)[1].removesuffix(".json")
            try:
                out[tid] = ("x", await self.task(job, "x", tid))
            except (CorruptObject, NotFoundError, TamperedJob):
                continue
        return out

    def cached_chunk(self, job: str, chunk: str) -> dict[str, TaskSpec] | None:
        """The tasks of a chunk if they are in the cache already (no request): for cheap hints."""
        return self._chunks.get((job, chunk))

    def _remember(self, cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self._cache_size:
            cache.popitem(last=False)
