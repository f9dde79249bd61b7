"""Dependencies over the protocol, with no coordinator.

Every edge "task waits for dep" is an object ``jobs/{job}/waits/{dep}/{task}``: written at submit for
static dependencies (before any task is ready), and by a running task that finds dependencies at run
time (before it parks). Whoever decides a task — the committer, or anyone who finishes a committed
lease — looks at the edges into it and releases each waiter whose dependencies have all succeeded,
or marks it upstream-failed. Releasing is idempotent (a create-only ready entry, or a swap of a parked
lease), and the committed lease stays until this is done, so a crash in between is finished by the
next agent that sees the lease.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

import jobspaces

from . import _layout as layout
from ._after import After, job_dep
from ._ids import parse_xref, xref
from ._protocol import Claim, LeaseLost, Protocol
from ._records import AttemptEnd, Done, Lease, LeaseState, Outcome, TaskSpec
from ._specs import Specs
from .errors import CorruptObject, NotFoundError

log = logging.getLogger("qubits.dag")


class Dag:
    """Releases dependents for one participant."""

    def __init__(self, proto: Protocol, specs: Specs) -> None:
        self.proto = proto
        self.specs = specs
        self.js = proto.js
        self._outcomes: dict[tuple[str, str], str] = {}
        self._parked_checked: dict[str, float] = {}
        proto.on_decided = self.on_decided

    async def outcome(self, job: str, task: str) -> str | None:
        """The outcome of a decided task (cached: done records never change), or None."""
        cached = self._outcomes.get((job, task))
        if cached is not None:
            return cached
        try:
            data, _ = await self.js.get(layout.done(job, task))
        except jobspaces.NotFound:
            return None
        done = Done.from_json(data, layout.done(job, task))
        self._outcomes[(job, task)] = done.outcome
        return done.outcome

    async def job_outcome(self, after: After) -> str | None:
        """How a job another waits for stands: 'succeeded' when it finished as ``after.mode`` asks,
        'failed' when it cannot (under ``ok``, a task that did not succeed; or the job is gone), None
        while it runs. Done records never change, so each is read once."""
        try:
            spec = await self.specs.job(after.job)
        except NotFoundError:
            return Outcome.FAILED.value
        sealed = await self.specs.seal(after.job) is not None
        decided = 0
        async for meta in self.js.list(layout.done_prefix(after.job)):
            decided += 1
            if after.mode == "ok":
                tid = meta.key.rsplit("/", 1)[1].removesuffix(".json")
                if await self.outcome(after.job, tid) not in (None, Outcome.SUCCEEDED.value):
                    return Outcome.FAILED.value
        if not sealed:
            return None
        dynamic = len([m async for m in self.js.list(layout.dynamic_tasks_prefix(after.job))])
        return Outcome.SUCCEEDED.value if decided >= spec.task_count + dynamic else None

    async def gate(self, claim: Claim) -> AttemptEnd:
        """Run the gate of a job submitted ``--after`` another (see ``qubits._after``)."""
        after = After(str(claim.spec.payload["job"]), str(claim.spec.payload.get("mode", "ok")))
        state = await self.job_outcome(after)
        if state == Outcome.SUCCEEDED.value:
            return AttemptEnd(Outcome.SUCCEEDED, None, 0)
        if state is not None:
            return AttemptEnd(Outcome.UPSTREAM_FAILED, f"dependency failed: job {after.job}", final=True)
        await self.park(claim, [after.dep])
        return AttemptEnd(None)

    async def deps_state(self, job: str, deps: list[str]) -> tuple[str, list[str]]:
        """('succeeded' | 'failed' | 'waiting', the deps not yet succeeded)."""
        pending, failed = [], []
        for dep in deps:
            other_job, other_task = job_dep(dep), parse_xref(dep)
            if other_job is not None:
                outcome = await self.job_outcome(other_job)
            elif other_task is not None:
                outcome = await self.outcome(*other_task)
            else:
                outcome = await self.outcome(job, dep)
            if outcome is None:
                pending.append(dep)
            elif outcome != Outcome.SUCCEEDED.value:
                failed.append(dep if other_job is None else f"job {other_job.job}")
        if failed:
            return "failed", failed
        return ("waiting", pending) if pending else ("succeeded", [])

    async def add_edges(self, job: str, task: str, deps: list[str]) -> None:
        for dep in deps:
            other = parse_xref(dep)
            if other is None:
                await self.js.put(layout.wait_edge(job, dep, task), b"")
            else:  # under the other job, where its decider looks (if that job has edges at all)
                await self.js.put(layout.wait_edge(other[0], other[1], xref(job, task)), b"")

    async def causes(self, job: str, failed: list[str]) -> str:
        """``dependency failed: …`` with each failed dependency's own error (the cause, passed on)."""
        parts = []
        for dep in failed:
            other = parse_xref(dep) or (job, dep)
            try:
                done = Done.from_json((await self.js.get(layout.done(*other)))[0], layout.done(*other))
                why = f"{done.outcome}: {done.error}" if done.error else done.outcome
            except (jobspaces.NotFound, CorruptObject):
                why = "failed"
            name = f"{other[0]}/{other[1]}" if other[0] != job else other[1]
            parts.append(f"{name} ({why})")
        return f"dependency failed: {'; '.join(parts)}"[:2000]

    async def await_others(self, claim: Claim, deps: list[str]) -> AttemptEnd | None:
        """Before running a task that depends on tasks of other jobs: None when they all succeeded;
        else park it until they are decided, or decide it upstream-failed (with their errors)."""
        state, bad = await self.deps_state(claim.job, deps)
        if state == "succeeded":
            return None
        if state == "failed":
            return AttemptEnd(Outcome.UPSTREAM_FAILED, await self.causes(claim.job, bad), final=True)
        await self.park(claim, deps)
        return AttemptEnd(None)

    async def on_decided(self, job: str, task: str, outcome: str) -> None:
        """Release or fail every task waiting for ``task``."""
        self._outcomes[(job, task)] = outcome
        try:
            if not (await self.specs.job(job)).config.get("dag"):
                return  # no task of this job waits for another: no edges to look at
        except NotFoundError:
            return
        async for meta in self.js.list(layout.waits_prefix(job, task)):
            waiter = meta.key.rsplit("/", 1)[1]
            wjob, waiter = parse_xref(waiter) or (job, waiter)
            try:
                await self._check_waiter(wjob, waiter)
            except (CorruptObject, NotFoundError) as exc:
                log.error("cannot release %s: %s", waiter, exc, extra={"action": "release", "job": job, "task": waiter})

    async def _check_waiter(self, job: str, task: str) -> None:
        if await self.outcome(job, task) is not None:
            return
        key = layout.lease(job, task)
        try:
            data, etag = await self.js.get(key)
            lease: Lease | None = Lease.from_json(data, key)
        except jobspaces.NotFound:
            lease, etag = None, ""
        if lease is not None and lease.state is LeaseState.PARKED:
            await self._wake_parked(key, lease, etag)
            return
        if lease is not None:
            return  # running, released or committed: not ours to release
        chunk, spec = await self._find(job, task)
        state, bad = await self.deps_state(job, spec.deps)
        if state == "failed":
            await self.fail_upstream(job, task, bad)
        elif state == "succeeded":
            await self._make_ready(job, chunk, spec)

    async def _find(self, job: str, task: str) -> tuple[str, TaskSpec]:
        try:
            return "x", await self.specs.task(job, "x", task)
        except NotFoundError:
            pass
        for chunk, spec in (await self.specs.all_tasks(job)).values():
            if spec.id == task:
                return chunk, spec
        raise NotFoundError(f"no task {task!r} in job {job!r}")

    async def _make_ready(self, job: str, chunk: str, spec: TaskSpec) -> None:
        try:
            await self.js.put(layout.ready(job, chunk, spec.id, spec.priority), b"", if_absent=True)
        except jobspaces.PreconditionFailed:
            return
        await self.specs.wake()

    async def fail_upstream(self, job: str, task: str, failed: list[str]) -> None:
        """Decide ``task`` as upstream-failed and pass it on to its own waiters."""
        if await self.proto.decide_without_lease(job, task, Outcome.UPSTREAM_FAILED, await self._failure(job, failed)):
            log.info("upstream failed", extra={"action": "upstream_failed", "job": job, "task": task})
        await self.on_decided(job, task, Outcome.UPSTREAM_FAILED.value)

    async def _wake_parked(self, key: str, lease: Lease, etag: str) -> None:
        state, bad = await self.deps_state(lease.job, lease.waiting)
        if state == "waiting":
            return
        spec = (await self._find(lease.job, lease.task))[1]
        claim = Claim(lease.job, lease.task, lease.chunk, spec, lease, etag)
        try:
            if state == "failed":
                await self.proto.commit(claim, Outcome.UPSTREAM_FAILED, error=await self._failure(lease.job, bad))
                return
            nxt = replace(lease, state=LeaseState.RELEASED, seq=lease.seq + 1, delay=0.0, waiting=[], wall=time.time())
            await self.js.put(key, nxt.to_json(), if_match=etag)
        except (jobspaces.PreconditionFailed, LeaseLost):
            return  # someone else woke it
        await self.js.put(layout.ready(lease.job, lease.chunk, lease.task, spec.priority), b"")
        await self.specs.wake()
        log.info("wake", extra={"action": "wake", "job": lease.job, "task": lease.task})

    async def _failure(self, job: str, failed: list[str]) -> str:
        """The error of an upstream-failed task: the failed dependencies, and for those of other jobs
        their own errors (a Qfile's targets keep the short form their users know)."""
        if any(parse_xref(d) for d in failed):
            return await self.causes(job, failed)
        return f"dependency failed: {', '.join(failed)}"

    async def check_parked(self, key: str, lease: Lease, etag: str, silent: float) -> None:
        """The safety net: a parked lease silent for long is checked by whoever sees it."""
        last = self._parked_checked.get(key, 0.0)
        if silent < 2 * self.proto.ttl or time.monotonic() - last < 2 * self.proto.ttl:
            return
        self._parked_checked[key] = time.monotonic()
        await self._wake_parked(key, lease, etag)

    async def park(self, claim: Claim, deps: list[str]) -> bool:
        """Make ``claim``'s task wait for ``deps``: edges first, then the parked lease, then a re-check
        (so a dependency that finished in between cannot be missed). False if the lease was lost."""
        await self.add_edges(claim.job, claim.task, [d for d in deps if job_dep(d) is None])
        parked = {
            "attempt": claim.lease.attempt,
            "holder": claim.lease.holder,
            "outcome": "parked",
            "error": f"waits for {len(set(deps))} task(s)",
            "started": claim.lease.started,
            "finished": time.time(),
        }
        nxt = replace(
            claim.lease,
            state=LeaseState.PARKED,
            seq=claim.lease.seq + 1,
            waiting=sorted(set(deps)),
            history=[*claim.lease.history, parked],
            wall=time.time(),
        )
        try:
            claim.etag = await self.js.put(claim.key, nxt.to_json(), if_match=claim.etag)
        except jobspaces.PreconditionFailed:
            return False
        claim.lease = nxt
        await self._wake_parked(claim.key, nxt, claim.etag)
        return True

    async def on_control(self, claim: Claim, control: dict[str, Any], agent: Any) -> AttemptEnd:
        """Act on what a task's runner asked for: needs (dependencies), missing (recompute), decline."""
        kind = control.get("kind")
        if kind == "needs":
            needs: list[dict[str, Any]] = list(control.get("tasks", []))
            for raw in needs:
                spec = TaskSpec.from_dict(raw, "control")
                await self.specs.add_task(claim.job, spec)
                if await self.outcome(claim.job, spec.id) is None:
                    try:
                        await self.js.put(layout.ready(claim.job, "x", spec.id, spec.priority), b"", if_absent=True)
                    except jobspaces.PreconditionFailed:
                        pass
            await self.specs.wake()
            deps = [str(raw["id"]) for raw in needs]
            state, bad = await self.deps_state(claim.job, deps)
            if state == "failed":
                return AttemptEnd(Outcome.UPSTREAM_FAILED, f"dependency failed: {', '.join(bad)}", final=True)
            if state == "succeeded":
                # Finished while we looked: give the task straight back to run again.
                await self.proto.release(claim, failed=False, error=None)
                return AttemptEnd(None)
            await self.park(claim, deps)
            return AttemptEnd(None)
        if kind == "decline":
            await self.proto.release(claim, failed=False, error=str(control.get("reason") or "declined"))
            agent.skip.add((claim.job, claim.task))
            return AttemptEnd(None)
        if kind == "fail":
            # The runner knows no retry can mend it (a dependency cycle, a Qfile that does not load).
            return AttemptEnd(Outcome.FAILED, str(control.get("reason") or "failed"), final=True)
        if kind == "missing":
            return AttemptEnd(Outcome.FAILED, str(control.get("reason") or "a dependency's output is missing"))
        return AttemptEnd(Outcome.FAILED, f"runner asked for something unknown: {json.dumps(control)[:200]}")
