"""Submitting benchmark work through qubits' own Specs.submit (streamed, as a user's client would)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import jobspaces
from qubits.protocol import JobSpec, Specs, TaskSpec, new_job_id

from ._util import bash_marker_command


async def _tasks(n: int, command: Sequence[str] | str | None, kind: str, start: int = 0) -> AsyncIterator[TaskSpec]:
    for i in range(start, start + n):
        yield TaskSpec(id=f"t{i:06d}", kind=kind, command=list(command) if isinstance(command, (list, tuple)) else command)


async def submit(js: jobspaces.Jobspace, n: int, *, marker: Path | None = None, command: Sequence[str] | str | None = None,
                 job_id: str | None = None, specs: Specs | None = None) -> str:
    """Submit one job of ``n`` tasks; each appends ``task start-time`` to ``marker`` (or runs ``command``)."""
    if command is None:
        command = bash_marker_command(marker) if marker else ["true"]
    kind = "shell" if isinstance(command, str) else "argv"
    job = JobSpec(id=job_id or new_job_id(), kind="commands", name="bench")
    await (specs or Specs(js)).submit(job, _tasks(n, command, kind))
    return job.id


async def submit_many(js: jobspaces.Jobspace, n: int, *, parallel: int = 1, per_job: int = 10_000) -> list[str]:
    """Submit ``n`` no-op tasks as jobs of up to ``per_job`` tasks, ``parallel`` jobs at a time (fills queues)."""
    sizes = [min(per_job, n - i) for i in range(0, n, per_job)]
    sem = asyncio.Semaphore(parallel)
    ids: list[str] = []

    async def one(size: int) -> None:
        async with sem:
            ids.append(await submit(js, size, command=["true"], job_id=f"{new_job_id()}-{len(ids):03d}"))

    await asyncio.gather(*(one(s) for s in sizes))
    return ids
