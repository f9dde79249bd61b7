"""Data on this node: fetching a Python task's blobs into the data cache, and preferring local tasks.

Before a "python" or "map" task starts, the agent fetches the blobs it names (its dataset chunk, a
function or params too big to travel inline) into the node's data cache, once: a blob already there
is not fetched again, across tasks and jobs, and two slots wanting one blob share one download.
Counters (in the agent's ``counters``, written with ``QUBITS_COUNT_REQUESTS``): ``data_hits``,
``data_downloads``, ``data_bytes``, and per map task with a dataset chunk ``map_local`` (its chunk was
here) or ``map_remote``.

Locality: the ready index does not name a task's chunk, but task specs are cached by the agent (one
GET per thousand tasks), so the chunk is read from the cached spec — a spec not cached yet is loaded
in the background and the task counts as neutral meanwhile. Ranks, lower first (ties in random order):

    0  the task's chunks are all here — or it has waited PATIENCE seconds since this agent first saw it;
       or a plain task (no chunk) whose spec is cached here (claiming it reads nothing)
    1  a plain task whose spec is not cached here, or not known yet
    2  its chunk is elsewhere (another agent probably holds it and will take it soon)

The agent orders each page by rank, and the rest of a page it reuses again when ranks may have
changed: a chunk of specs loaded or a blob arrived, or RERANK_EVERY passed (for PATIENCE).
Ranking only orders: a free slot never waits while any task is ready, and a task whose chunk nobody
here holds competes with local work after PATIENCE, so none starves behind a stream of local tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

import jobspaces
from qubits.protocol import DataCache, JobSpec, ReadyEntry, TaskSpec, blob_digests, layout

if TYPE_CHECKING:
    from ._agent import Agent

PATIENCE = 10.0
"""Seconds a ready task whose chunk is elsewhere waits behind local work on this agent."""
RERANK_EVERY = 1.0
"""Seconds after which the rest of a reused page is ranked again though nothing else changed: a task
waiting for PATIENCE is noticed within this."""
_SEEN_MAX = 100_000


def task_chunks(spec: TaskSpec) -> list[str]:
    """The dataset chunks a task reads."""
    digest = (spec.payload or {}).get("chunk")
    return [str(digest)] if digest else []


def task_blobs(spec: TaskSpec, job: JobSpec) -> list[str]:
    """Every blob a Python task needs: its chunk, its items, its function and params if stored apart."""
    payload = spec.payload or {}
    conf = job.config.get("map") or {}
    out = task_chunks(spec)
    for desc in (payload.get("items"), payload.get("call"), payload.get("fn"), conf.get("fn"), conf.get("params")):
        if isinstance(desc, dict):
            out += blob_digests(desc)
    return list(dict.fromkeys(out))


class DataLocality:
    """The agent's side of the data cache."""

    def __init__(self, agent: Agent, cache_dir: Path) -> None:
        self.agent = agent
        self.cache = DataCache(cache_dir / "data")
        self._seen: dict[tuple[str, str], float] = {}
        self._plain: set[tuple[str, str]] = set()
        """Spec chunks without dataset tasks (their tasks rank without a look)."""
        self._plain_jobs: set[str] = set()
        """Jobs with such a chunk: their other chunks are not prefetched for ranking."""
        self._known_jobs: set[str] = set()
        """Jobs with a chunk of specs here (their chunks are prefetched in parallel)."""
        self._loading: set[tuple[str, str]] = set()
        self._fetching: dict[str, asyncio.Future[None]] = {}
        self._background: set[asyncio.Task[object]] = set()
        self._ranked: tuple[int, int, float] = (-1, -1, 0.0)
        """Spec chunks read, cache version and when, at the last ordering."""

    # -- ranking ---------------------------------------------------------------------------------------
    def order(self, entries: list[ReadyEntry], start: int = 0, *, fresh: bool = True) -> None:
        """Order ``entries[start:]`` by priority, then rank (ties keep their order: a page is shuffled).
        The rest of a reused page (not ``fresh``) only when ranks may have changed: ranking a whole page
        before every claim was a quarter of an agent's CPU."""
        loads, version, at = self._ranked
        now = time.monotonic()
        if not fresh and (loads, version) == (self.agent.specs.loads, self.cache.version) and now - at < RERANK_EVERY:
            return
        self._ranked = (self.agent.specs.loads, self.cache.version, now)
        entries[start:] = sorted(entries[start:], key=lambda e: (-e.priority, self.rank(e)))

    def rank(self, entry: ReadyEntry) -> int:
        where = (entry.job, entry.chunk)
        if entry.chunk == "x":
            return 1
        if where in self._plain:
            # Plain tasks (no data): those whose specs are here first, so an agent claims from the chunks
            # it holds rather than reading a new 1,000-task chunk for nearly every claim (at 1,000 agents
            # that read was one per task, on one job's prefix: bench/SIMULATED.md).
            return 0 if self.agent.specs.cached_chunk(entry.job, entry.chunk) is not None else 1
        tasks = self.agent.specs.cached_chunk(entry.job, entry.chunk)
        if tasks is None:
            # A plain job's other chunks are read when claimed, not prefetched; and until one chunk of a
            # job is here, one prefetch at a time (a first page spans ~16 chunks: 1,000 agents starting
            # together would read 16,000 chunks of 200 kB before knowing they need none).
            if entry.job not in self._plain_jobs and not (
                entry.job not in self._known_jobs and any(job == entry.job for job, _ in self._loading)
            ):
                self._load_specs(entry.job, entry.chunk)
            return 1
        self._known_jobs.add(entry.job)
        spec = tasks.get(entry.task)
        chunks = task_chunks(spec) if spec is not None else []
        if not chunks:
            if not any(task_chunks(t) for t in tasks.values()):
                if len(self._plain) > _SEEN_MAX:
                    self._plain.clear()
                    self._plain_jobs.clear()
                    self._known_jobs.clear()
                self._plain.add(where)
                self._plain_jobs.add(entry.job)
                return 0
            return 1
        now = time.monotonic()
        seen = self._seen.setdefault((entry.job, entry.task), now)
        if len(self._seen) > _SEEN_MAX:
            self._seen = {k: v for k, v in self._seen.items() if now - v < 4 * PATIENCE}
        if all(self.cache.has(d) for d in chunks) or now - seen >= PATIENCE:
            return 0
        return 2

    def _load_specs(self, job: str, chunk: str) -> None:
        if (job, chunk) in self._loading:
            return
        self._loading.add((job, chunk))

        async def load() -> None:
            with contextlib.suppress(Exception):  # a hint only: the claim reads the spec for real
                await self.agent.specs.chunk(job, chunk)
            self._loading.discard((job, chunk))

        with contextlib.suppress(RuntimeError):  # no running loop: no hint
            task: asyncio.Task[object] = asyncio.get_running_loop().create_task(load())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # -- fetching ------------------------------------------------------------------------------------
    async def prefetch(self, spec: TaskSpec, job: JobSpec) -> None:
        """Bring the task's blobs into the data cache (each fetched once per node)."""
        if spec.kind not in ("python", "map"):
            return
        chunks = task_chunks(spec)
        if chunks:
            local = all(self.cache.has(d) for d in chunks)
            self.agent.count("map_local" if local else "map_remote")
        for digest in task_blobs(spec, job):
            # Best effort: what cannot be fetched here, the task fetches (or fails on) itself.
            with contextlib.suppress(jobspaces.JobspaceError, ValueError):
                await self._ensure(digest)

    async def _ensure(self, digest: str) -> None:
        if self.cache.touch(digest):
            self.agent.count("data_hits")
            return
        pending = self._fetching.get(digest)
        if pending is not None:
            await asyncio.shield(pending)
            self.agent.count("data_hits")
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fetching[digest] = future
        try:
            data, _ = await self.agent.js.get(layout.data_chunk(digest))
            await asyncio.to_thread(self.cache.put, digest, data)
            self.agent.count("data_downloads")
            self.agent.count("data_bytes", len(data))
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters see it, nobody else needs to
            raise
        finally:
            self._fetching.pop(digest, None)
