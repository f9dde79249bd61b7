"""The lease protocol: claim, renew, release, commit, takeover — with no master and no clock sync.

Invariants (DESIGN.md §4), and where each is kept:

1. Exactly-once claim: a claim is a create-only write of ``leases/{job}/{task}``; a renewal, release,
   takeover or commit is a compare-and-swap on the ETag the writer last saw. Every body carries the
   holder's token and a new ``seq``, so no two writes are byte-equal (S3 ETags are content hashes).
2. Exactly-once commit: the holder first swaps its lease to ``committed`` (fenced: a successor's
   takeover changed the ETag, so a zombie's swap fails), then writes ``done/{job}/{task}.json``
   create-only. Anyone who finds a committed lease may finish the job of writing the done record.
3. No clock sync: observers time a lease's silence on their own monotonic clock (``Observer``);
   holders fence themselves when they cannot renew within their ttl measured from when the last
   successful renewal was *sent*.
4. Nothing lost: a lease is deleted only after its done record exists; a dead holder's lease stays
   until someone takes it over.
5. No singleton: every agent observes and takes over; nothing else is needed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import jobspaces
from jobspaces import Jobspace

from . import _layout as layout
from ._defaults import TAKEOVER_MARGIN, TOMBSTONE_LINGER
from ._ids import new_token
from ._records import Done, Lease, LeaseState, Outcome, TaskSpec
from ._retry import DEFAULT as DEFAULT_RETRY
from ._retry import RetryPolicy

log = logging.getLogger("qubits.protocol")


class LeaseLost(Exception):
    """Our lease was taken over or could not be renewed in time: stop the task, do not commit."""


@dataclass
class Claim:
    """A lease we hold."""

    job: str
    task: str
    chunk: str
    spec: TaskSpec
    lease: Lease
    etag: str
    renew_sent: float = field(default_factory=time.monotonic)
    """Monotonic time the last successful write of our lease was sent: the lease is ours until
    renew_sent + ttl, at the latest."""
    written: float = 0.0
    """Monotonic time our last write of the lease returned: stores that limit writes per object
    (``Jobspace.min_write_interval``, GCS) get the next one no sooner than that interval later."""

    @property
    def key(self) -> str:
        return layout.lease(self.job, self.task)

    @property
    def attempt(self) -> int:
        return self.lease.attempt

    def expires_in(self) -> float:
        """Seconds left before we must consider the lease lost (self-fencing)."""
        return self.renew_sent + self.lease.ttl - time.monotonic()


@dataclass
class _Sighting:
    etag: str
    first_seen: float
    lease: Lease | None = None


class Observer:
    """Times each lease's silence on this process's monotonic clock (invariant 3).

    A lease is dead when the same ETag has been seen for longer than its ttl plus a margin. A released
    lease's retry delay is timed the same way.
    """

    def __init__(self) -> None:
        self._seen: dict[str, _Sighting] = {}

    def see(self, key: str, etag: str, lease: Lease | None = None) -> float:
        """Record that ``key`` has ``etag`` now; return for how long this ETag has been seen."""
        now = time.monotonic()
        s = self._seen.get(key)
        if s is None or s.etag != etag:
            self._seen[key] = _Sighting(etag, now, lease)
            return 0.0
        if lease is not None:
            s.lease = lease
        return now - s.first_seen

    def known(self, key: str, etag: str) -> Lease | None:
        """The body already read for this version of the lease, if any."""
        s = self._seen.get(key)
        return s.lease if s is not None and s.etag == etag else None

    def silent_for(self, key: str) -> float:
        s = self._seen.get(key)
        return 0.0 if s is None else time.monotonic() - s.first_seen

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    def prune(self, keep: set[str]) -> None:
        for key in list(self._seen):
            if key not in keep:
                del self._seen[key]


def is_dead(lease: Lease, silent_for: float) -> bool:
    """Whether a held lease silent this long (observer's clock) may be taken over."""
    return lease.state is LeaseState.HELD and silent_for >= lease.ttl + TAKEOVER_MARGIN


def due_in(lease: Lease | None, silent_for: float, default_ttl: float) -> float | None:
    """Seconds until an observer may act on this version of a lease: take it over (held), claim it
    (released, its retry delay passed); None for one it only watches. An unread lease counts as held
    with ``default_ttl``. Scanning at that moment, rather than at the next regular scan, brings a
    takeover within ttl + margin + one scan interval of a holder's last renewal."""
    if lease is None:
        return default_ttl + TAKEOVER_MARGIN - silent_for
    if lease.state is LeaseState.HELD:
        return lease.ttl + TAKEOVER_MARGIN - silent_for
    if lease.state is LeaseState.RELEASED:
        return lease.delay - silent_for
    return None


class Protocol:
    """The lease operations of one participant (an agent, or a client acting on a job)."""

    def __init__(self, js: Jobspace, holder: str, ttl: float, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        if not js.conditional_writes:
            from .errors import UnsafeJobspace

            raise UnsafeJobspace(f"{js.url} cannot do conditional writes; leases on it would be unsafe")
        self.js = js
        self.holder = holder
        self.ttl = ttl
        self.retry = retry
        """When a task is out of attempts, and how long a retry waits (``qubits._retry``)."""
        self.observer = Observer()
        self.on_decided: Callable[[str, str, str], Awaitable[None]] | None = None
        """Called once a task's done record exists, before its lease is deleted (dependents)."""
        self.last_miss = ""
        """Why the last claim came back empty: lost-race, held, released, committed, parked, gone."""

    def _extra(self, job: str, task: str, attempt: int, action: str) -> dict[str, Any]:
        return {"action": action, "job": job, "task": task, "attempt": attempt, "node": self.holder}

    # -- claim -------------------------------------------------------------------------------------
    async def claim(self, job: str, chunk: str, spec: TaskSpec, listed_at: float | None = None) -> Claim | None:
        """Try to take a task: create its lease, or swap a released or dead one. None if we lost.

        ``listed_at`` is when (monotonic) the ready entry that led here was listed: a finished task's
        lease lingers TOMBSTONE_LINGER seconds, so a create that succeeds within half of that after
        the listing proves the task was not finished; an older listing is checked against done/.

        That check is sent with the create, not after it: a lease deleted before our create landed was
        committed, its done record written, TOMBSTONE_LINGER before the deletion; so when the create
        returns within half of that after the check was sent, the check was sent after the done record
        existed and sees it (the same rule as for a fresh listing). A slower create is checked again.
        """
        key = layout.lease(job, spec.id)
        now = time.time()
        fresh = Lease(job, spec.id, self.holder, new_token(), 1, self.ttl, chunk=chunk, started=now, wall=now)
        sent = time.monotonic()
        stale = listed_at is None or sent - listed_at > TOMBSTONE_LINGER / 2
        probe = asyncio.ensure_future(self.js.exists(layout.done(job, spec.id))) if stale or spec.deps or chunk == "x" else None
        try:
            etag = await self.js.put(key, fresh.to_json(), if_absent=True)
        except jobspaces.PreconditionFailed:
            if probe is not None:
                probe.cancel()
                await asyncio.gather(probe, return_exceptions=True)
            return await self._claim_existing(job, chunk, spec)
        except BaseException:
            if probe is not None:
                probe.cancel()
                await asyncio.gather(probe, return_exceptions=True)
            raise
        written = time.monotonic()
        self.last_miss = ""
        if probe is not None and written - sent > TOMBSTONE_LINGER / 2:
            await asyncio.gather(probe, return_exceptions=True)
            probe = None
        if probe is None and (written - sent > TOMBSTONE_LINGER / 2 or (listed_at is not None and written - listed_at > TOMBSTONE_LINGER / 2)):
            # A slow create, or a listing that went stale while it was sent: check after it, as before.
            probe = asyncio.ensure_future(self.js.exists(layout.done(job, spec.id)))
        if probe is not None and await probe:
            # A dependent's ready entry can be written twice (releasers race) and the second may come
            # after the task finished; an old listing may name a finished task. The fresh lease is
            # ours alone: drop it.
            await self.js.delete(key)
            self.last_miss = "gone"
            return None
        log.info("claim", extra=self._extra(job, spec.id, 1, "claim"))
        return Claim(job, spec.id, chunk, spec, fresh, etag, sent, written)

    async def _claim_existing(self, job: str, chunk: str, spec: TaskSpec) -> Claim | None:
        key = layout.lease(job, spec.id)
        try:
            data, etag = await self.js.get(key)
        except jobspaces.NotFound:
            self.last_miss = "gone"
            return None  # finished and cleaned up just now; the ready hint was stale
        current = Lease.from_json(data, key)
        silent = self.observer.see(key, etag, current)
        return await self.take(key, current, etag, silent, spec)

    async def take(self, key: str, current: Lease, etag: str, silent: float, spec: TaskSpec) -> Claim | None:
        """Act on an existing lease: finish a committed one, claim a released one whose delay has
        passed, take over a dead one. None when there is nothing for us to run."""
        self.last_miss = current.state.value
        if current.state is LeaseState.COMMITTED:
            if silent >= TOMBSTONE_LINGER:  # left by someone who died before cleaning up
                await self.finalize(current, spec=spec)
            return None
        if current.state is LeaseState.RELEASED:
            if silent < current.delay:
                return None
        elif not is_dead(current, silent):
            return None
        # A lease cannot be held or released once its task is decided; if one is, a write that should
        # have been refused landed (seen on moto, whose conditional writes are not atomic: a zombie's
        # late renewal and its own commit both passed the ETag check). Never run a decided task again.
        if await self.js.exists(layout.done(current.job, current.task)):
            self.last_miss = "decided"
            log.warning("a decided task had a live lease; buried it", extra=self._extra(current.job, current.task, current.attempt, "bury"))
            await self.bury(current.job, current.task, current.chunk, spec)
            return None
        return await self._swap(key, current, etag, spec, takeover=current.state is not LeaseState.RELEASED)

    async def _swap(self, key: str, current: Lease, etag: str, spec: TaskSpec, *, takeover: bool) -> Claim | None:
        now = time.time()
        history = list(current.history)
        failures = current.failures
        if takeover:
            failures += 1
            history.append(_attempt_summary(current, "lost", "the agent stopped renewing its lease"))
        nxt = replace(
            current,
            holder=self.holder,
            token=new_token(),
            attempt=current.attempt + 1,
            ttl=self.ttl,
            state=LeaseState.HELD,
            seq=current.seq + 1,
            failures=failures,
            delay=0.0,
            history=history,
            started=now,
            finished=0.0,
            outcome=None,
            error=None,
            exit_code=None,
            has_result=False,
            value=None,
            wall=now,
        )
        if self.retry.exhausted(spec, failures):
            # Lost too often: the dead letter, decided through the same fenced path as any commit.
            dead = Claim(current.job, current.task, current.chunk, spec, replace(current, history=history), etag)
            try:
                await self.commit(
                    dead,
                    Outcome.FAILED,
                    error=f"lost {failures} times: agents stopped renewing its lease (last holder {current.holder})",
                    failures=failures,
                )
            except LeaseLost:
                pass
            return None
        sent = time.monotonic()
        try:
            new_etag = await self.js.put(key, nxt.to_json(), if_match=etag)
        except jobspaces.PreconditionFailed:
            self.observer.forget(key)
            self.last_miss = "lost-race"
            return None
        self.observer.forget(key)
        self.last_miss = ""
        action = "takeover" if takeover else "claim"
        log.info(action, extra=self._extra(current.job, current.task, nxt.attempt, action))
        return Claim(current.job, current.task, current.chunk, spec, nxt, new_etag, sent, time.monotonic())

    async def _space(self, claim: Claim) -> None:
        """Wait until the store takes another write of this lease: GCS allows about one write per
        second per object, and a no-op task's commit would otherwise follow its claim within that
        second and be refused (429) and retried several times."""
        wait = claim.written + self.js.min_write_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    # -- while running -----------------------------------------------------------------------------
    async def renew(self, claim: Claim) -> None:
        """Swap our lease for a new version (same holder, seq+1); LeaseLost if it is no longer ours."""
        if claim.expires_in() <= 0:
            raise LeaseLost(f"lease of {claim.job}/{claim.task} expired before it could be renewed")
        nxt = replace(claim.lease, seq=claim.lease.seq + 1, wall=time.time())
        sent = time.monotonic()
        try:
            etag = await self.js.put(claim.key, nxt.to_json(), if_match=claim.etag)
        except jobspaces.PreconditionFailed:
            raise LeaseLost(f"lease of {claim.job}/{claim.task} was taken over") from None
        claim.lease, claim.etag, claim.renew_sent, claim.written = nxt, etag, sent, time.monotonic()

    async def release(self, claim: Claim, *, failed: bool, error: str | None = None, exit_code: int | None = None) -> None:
        """Give the task back: after a failed attempt (retried after a backoff) or when draining."""
        failures = claim.lease.failures + (1 if failed else 0)
        history = [*claim.lease.history, _attempt_summary(claim.lease, "failed" if failed else "released", error, exit_code)]
        nxt = replace(
            claim.lease,
            state=LeaseState.RELEASED,
            seq=claim.lease.seq + 1,
            failures=failures,
            delay=self.retry.backoff(claim.spec, failures) if failed else 0.0,
            history=history,
            error=error,
            exit_code=exit_code,
            wall=time.time(),
        )
        await self._space(claim)
        try:
            claim.etag = await self.js.put(claim.key, nxt.to_json(), if_match=claim.etag)
        except jobspaces.PreconditionFailed:
            raise LeaseLost(f"lease of {claim.job}/{claim.task} was taken over") from None
        claim.lease, claim.written = nxt, time.monotonic()
        # The hint that brings it back; a lease scan finds it even if this write is lost.
        await self.js.put(layout.ready(claim.job, claim.chunk, claim.task, claim.spec.priority), b"")
        log.info("release", extra={**self._extra(claim.job, claim.task, claim.attempt, "release"), "reason": error})

    async def commit(
        self,
        claim: Claim,
        outcome: Outcome,
        *,
        error: str | None = None,
        exit_code: int | None = None,
        has_result: bool = False,
        value: bytes | None = None,
        failures: int | None = None,
        linger: bool = False,
    ) -> Done:
        """Decide the task's outcome (fenced by our ETag), then write its one done record. ``value``: a
        small result carried in the lease and the done record themselves (no result object)."""
        now = time.time()
        nxt = replace(
            claim.lease,
            state=LeaseState.COMMITTED,
            seq=claim.lease.seq + 1,
            outcome=outcome.value,
            error=error,
            exit_code=exit_code,
            finished=now,
            failures=claim.lease.failures if failures is None else failures,
            has_result=has_result,
            value=None if value is None else base64.b64encode(value).decode(),
            wall=now,
        )
        await self._space(claim)
        try:
            claim.etag = await self.js.put(claim.key, nxt.to_json(), if_match=claim.etag)
        except jobspaces.PreconditionFailed:
            raise LeaseLost(f"lease of {claim.job}/{claim.task} was taken over; not committing") from None
        claim.lease, claim.written = nxt, time.monotonic()
        log.info("commit", extra={**self._extra(claim.job, claim.task, claim.attempt, "commit"), "reason": outcome.value})
        return await self.finalize(nxt, linger=linger, spec=claim.spec)

    async def finalize(self, lease: Lease, *, linger: bool = False, spec: TaskSpec | None = None) -> Done:
        """Write the done record of a committed lease (idempotent), release its dependents, then
        delete the lease — or, with ``linger``, leave that to the caller after TOMBSTONE_LINGER."""
        done = Done(
            lease.job,
            lease.task,
            lease.outcome or Outcome.FAILED.value,
            lease.attempt,
            holder=lease.holder,
            error=lease.error,
            exit_code=lease.exit_code,
            started=lease.started,
            finished=lease.finished,
            has_result=lease.has_result,
            value=lease.value,
            attempts=lease.history,
        )
        key = layout.done(lease.job, lease.task)
        try:
            await self.js.put(key, done.to_json(), if_absent=True)
        except jobspaces.PreconditionFailed:
            data, _ = await self.js.get(key)
            done = Done.from_json(data, key)
        if self.on_decided is not None:
            await self.on_decided(lease.job, lease.task, done.outcome)
        if not linger:
            await self.bury(lease.job, lease.task, lease.chunk, spec)
        self.observer.forget(layout.lease(lease.job, lease.task))
        return done

    async def bury(self, job: str, task: str, chunk: str, spec: TaskSpec | None) -> None:
        """Delete a decided task's lease, and first its ready entry should one be left: by a claimer
        that died before deleting it, or by a release whose lease was then claimed from the lease scan.
        Once the lease is gone a create succeeds again, and a claim from a fresh listing skips the
        done/ check, so a leftover entry would run the finished task again (tests/chaos/test_leftovers.py).
        On S3 a DELETE costs nothing, and this one is off the task's path."""
        if spec is not None:
            await self.js.delete(layout.ready(job, chunk, task, spec.priority))
        await self.js.delete(layout.lease(job, task))

    async def decide_without_lease(self, job: str, task: str, outcome: Outcome, error: str) -> bool:
        """Write the done record of a task that never ran (upstream failed, or cancelled before any
        claim). Safe because such a task is never released; False if a record exists already."""
        done = Done(job, task, outcome.value, 0, error=error, finished=time.time())
        try:
            await self.js.put(layout.done(job, task), done.to_json(), if_absent=True)
        except jobspaces.PreconditionFailed:
            return False
        return True


def _attempt_summary(lease: Lease, outcome: str, error: str | None, exit_code: int | None = None) -> dict[str, Any]:
    return {
        "attempt": lease.attempt,
        "holder": lease.holder,
        "outcome": outcome,
        "error": error,
        "exit_code": exit_code,
        "started": lease.started,
        "finished": time.time(),
    }
