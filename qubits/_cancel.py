"""Cancelling: a whole job, or some of its tasks.

A job is cancelled by creating ``jobs/{job}/cancel``; a task by creating ``jobs/{job}/cancelled/{task}``.
Either way every task not held by an agent is decided cancelled here (a create-only lease, then the
create-only done record: exactly once), and an agent holding one sees the mark within CANCEL_CHECK
seconds, stops the task and commits it cancelled itself. The other tasks of the job go on.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import jobspaces

from . import _layout as layout
from ._defaults import CANCEL_WAIT
from ._ids import submitter
from ._protocol import Claim, LeaseLost, Protocol
from ._records import Done, Lease, LeaseState, Outcome, TaskSpec

if TYPE_CHECKING:
    from ._client import Client

async def _cancel_claim(js: jobspaces.Jobspace, proto: Protocol, job: str, chunk: str, spec: TaskSpec, *, parked: bool) -> Claim | None:
    """A claim on task ``spec`` to commit it cancelled: a fresh lease when it has none, or its released
    (and, if ``parked``, its parked) one; None while an agent holds it or once it is decided."""
    key = layout.lease(job, spec.id)
    now = time.time()
    fresh = Lease(job, spec.id, proto.holder, "cancel", 1, 30.0, chunk=chunk, started=now, wall=now)
    try:
        return Claim(job, spec.id, chunk, spec, fresh, await js.put(key, fresh.to_json(), if_absent=True))
    except jobspaces.PreconditionFailed:
        try:
            data, etag = await js.get(key)
        except jobspaces.NotFound:
            return None
    lease = Lease.from_json(data, key)
    if lease.state is LeaseState.RELEASED or (parked and lease.state is LeaseState.PARKED):
        return Claim(job, spec.id, chunk, spec, lease, etag)
    return None  # running (its agent stops it), or decided already


async def cancel_job(client: Client, job: str) -> int:
    """Cancel every task of ``job``; return how many this call decided (running ones stop on their agents)."""
    js = client.aio
    await js.put(layout.cancel(job), json.dumps({"by": submitter(), "wall": time.time()}).encode())
    proto = Protocol(js, f"client:{submitter()}", ttl=30.0)
    decided = 0
    for tid, (chunk, spec) in (await client.specs.all_tasks(job)).items():
        if await js.exists(layout.done(job, tid)):
            continue
        claim = await _cancel_claim(js, proto, job, chunk, spec, parked=True)
        if claim is None:
            continue
        try:
            await proto.commit(claim, Outcome.CANCELLED, error="the job was cancelled")
            decided += 1
        except LeaseLost:
            continue
    return decided


async def cancel_task(client: Any, job: str, chunk: str, spec: TaskSpec) -> bool:
    """Decide one task cancelled unless an agent holds it; True if it ends cancelled."""
    js = client.aio
    try:
        data, _ = await js.get(layout.done(job, spec.id))
        return bool(json.loads(data).get("outcome") == Outcome.CANCELLED.value)
    except jobspaces.NotFound:
        pass
    proto = Protocol(js, f"client:{submitter()}", ttl=30.0)
    claim = await _cancel_claim(js, proto, job, chunk, spec, parked=False)
    if claim is None:
        return False  # running, parked, or decided: not ours to cancel
    try:
        # The committed lease stays as a tombstone: a stale ready entry cannot start the task.
        await proto.commit(claim, Outcome.CANCELLED, error="cancelled by its submitter", linger=True)
    except LeaseLost:
        return False
    with contextlib.suppress(jobspaces.JobspaceError):
        await js.delete(layout.ready(job, chunk, spec.id, spec.priority))
    return True


async def cancel_tasks(client: Client, job: str, tids: Iterable[str], *, wait: float = CANCEL_WAIT) -> dict[str, Done | None]:
    """Cancel the tasks ``tids`` of ``job`` (ids), leaving its other tasks alone. Returns each task's done
    record once decided (cancelled, or what it ended as if it finished first), None for one still held by
    an agent after ``wait`` seconds (its agent stops it within CANCEL_CHECK of seeing the mark)."""
    import asyncio

    js = client.aio
    tasks = await client.specs.all_tasks(job)
    mark = json.dumps({"by": submitter(), "wall": time.time()}).encode()
    for tid in tids:
        # The mark first: an agent that claims the task after this sees it while the task runs.
        await js.put(layout.task_cancel(job, tid), mark)
        chunk, spec = tasks[tid]
        await cancel_task(client, job, chunk, spec)
    out: dict[str, Done | None] = {}
    deadline = time.monotonic() + wait
    pending = list(tids)
    while True:
        for tid in list(pending):
            try:
                data, _ = await js.get(layout.done(job, tid))
            except jobspaces.NotFound:
                continue
            out[tid] = Done.from_json(data, layout.done(job, tid))
            pending.remove(tid)
        if not pending or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    for tid in pending:
        out[tid] = None
    return out
