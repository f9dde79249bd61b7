"""Watching leases: keeping our own alive while its task runs, and taking over those of the dead.

``supervise`` renews a running task's lease every ``ttl * RENEW_FRACTION``, enforces its timeout, checks
for cancellation, and fences the task (reports it lost, so the executor kills it) before anyone else may
take the lease over: no store call here can outlast the lease. ``scan_leases`` is the other side of the
same rule: it watches other agents' leases on this agent's monotonic clock (no clock sync) and takes
over one that has been silent for a whole ttl, claims one that was released, and finishes one that was
committed but whose owner died before the last step.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import TYPE_CHECKING, NamedTuple

import jobspaces
from qubits.errors import CorruptObject, NotFoundError, TamperedJob
from qubits.protocol import (
    CANCEL_CHECK,
    RENEW_FRACTION,
    Claim,
    Lease,
    LeaseLost,
    LeaseState,
    due_in,
    layout,
    live_leases,
)

if TYPE_CHECKING:
    from ._agent import Agent


async def supervise(agent: Agent, claim: Claim, waiter: asyncio.Future[int]) -> str:
    """Keep ``claim`` alive until ``waiter`` finishes; return why supervision ended:
    'exited', 'timeout', 'cancelled' (the job), 'task-cancelled' (this task alone), 'lost', or 'drained'."""
    ttl = claim.lease.ttl
    renew_every = max(0.25, ttl * RENEW_FRACTION)
    next_renew = time.monotonic() + renew_every
    next_cancel = time.monotonic() + CANCEL_CHECK
    timeout = claim.spec.timeout
    ran = 0.0
    last = time.monotonic()
    while True:
        now = time.monotonic()
        if not agent.control.paused:
            ran += now - last
        last = now
        wait_for = min(next_renew, next_cancel) - now
        if timeout:
            wait_for = min(wait_for, timeout - ran)
        if agent.draining:
            wait_for = min(wait_for, 0.2)
        finished, _ = await asyncio.wait({waiter}, timeout=max(0.0, wait_for))
        if finished:
            return "exited"
        now = time.monotonic()
        if timeout and not agent.control.paused and ran + (now - last) >= timeout:
            return "timeout"
        # Every store call here ends before the lease could expire: one call may spend its whole
        # retry budget, and an ambiguous write as long again settling, which must never keep a task
        # running past its ttl (the partition test caught a fenced task running 1.3 s too long).
        fence = min(1.0, ttl * 0.2)
        if now >= next_renew:
            try:
                await asyncio.wait_for(
                    agent.renew_seconds.time(agent.proto.renew(claim)), max(0.01, claim.expires_in() - fence)
                )
                agent.count("renewals")
                next_renew = time.monotonic() + renew_every
            except LeaseLost:
                return "lost"
            except (jobspaces.JobspaceError, TimeoutError):
                agent.count("renew_errors")
                # Could not renew: retry soon, and fence ourselves before anyone may take over.
                if claim.expires_in() <= fence:
                    return "lost"
                next_renew = time.monotonic() + min(1.0, ttl * 0.1)
        if now >= next_cancel:
            next_cancel = now + CANCEL_CHECK
            with contextlib.suppress(jobspaces.JobspaceError, TimeoutError):
                job_cancelled, task_cancelled = await asyncio.wait_for(
                    asyncio.gather(agent.is_cancelled(claim.job, max_age=0), agent.js.exists(layout.task_cancel(claim.job, claim.task))),
                    max(0.01, claim.expires_in() - fence),
                )
                if job_cancelled:
                    return "cancelled"
                if task_cancelled:
                    return "task-cancelled"


class LeaseScan(NamedTuple):
    others: bool
    """Whether leases other than ours exist (the agent scans often while they do)."""
    due: float | None
    """The monotonic time at which the first lease watched may be acted on: the next scan's, if sooner."""


async def scan_leases(agent: Agent) -> LeaseScan:
    """Observe every lease; take over the dead, claim the released, finish the committed."""
    seen: set[str] = set()
    agent.count("list")
    others = 0
    soonest = math.inf
    async for meta in live_leases(agent.js):
        seen.add(meta.key)
        others += 1
        if agent.free_slots() <= 0:
            continue
        job, task = layout.parse_lease(meta.key)
        if (
            f"{job}/{task}" in agent.running
            or (job, task) in agent.skip
            or (agent.config.jobs and job not in agent.config.jobs)
        ):
            continue
        silent = agent.proto.observer.see(meta.key, meta.etag)
        known = agent.proto.observer.known(meta.key, meta.etag)
        # Read a lease only when it has been silent for a whole ttl of ours: live leases renew
        # sooner, so a healthy fleet costs no reads here.
        if known is None and silent < agent.config.ttl:
            soonest = _sooner(soonest, due_in(None, silent, agent.config.ttl))
            continue
        if known is None:
            try:
                data, etag = await agent.js.get(meta.key)
            except jobspaces.NotFound:
                continue
            try:
                known = Lease.from_json(data, meta.key)
            except CorruptObject as exc:
                await agent.quarantine(job, task, "?", exc)
                continue
            silent = agent.proto.observer.see(meta.key, etag, known)
            meta = jobspaces.ObjectMeta(meta.key, etag, meta.size, meta.mtime)
        await _act_on_lease(agent, meta.key, known, meta.etag, silent)
        soonest = _sooner(soonest, due_in(known, agent.proto.observer.silent_for(meta.key), agent.config.ttl))
    agent.proto.observer.prune(seen)
    return LeaseScan(others > len(agent.running), time.monotonic() + soonest if soonest < math.inf else None)


def _sooner(soonest: float, wait: float | None) -> float:
    """The sooner of two waits; a lease already due that was not acted on (its task does not fit
    here, say) sets no wait, or the agent would scan without pause."""
    return soonest if wait is None or wait <= 0 else min(soonest, wait)


async def _act_on_lease(agent: Agent, key: str, lease: Lease, etag: str, silent: float) -> None:
    if lease.state is LeaseState.PARKED:
        await agent.executor.check_parked(key, lease, etag, silent)
        return
    if lease.state is LeaseState.HELD and silent < lease.ttl:
        return
    try:
        spec = await agent.specs.task(lease.job, lease.chunk, lease.task)
    except NotFoundError:
        return
    except (CorruptObject, TamperedJob) as exc:
        await agent.quarantine(lease.job, lease.task, lease.chunk, exc)
        return
    if lease.state is not LeaseState.COMMITTED and (not agent.fits(spec) or not agent.fits_now(spec)):
        return
    claim = await agent.proto.take(key, lease, etag, silent, spec)
    if claim is None and agent.proto.last_miss == "lost-race":
        agent.count("conflicts")
    if claim is not None:
        agent.count("takeovers" if lease.state is LeaseState.HELD else "claims")
        agent.start_claim(claim)
