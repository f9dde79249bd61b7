"""The agent: poll, claim, run, heartbeat, commit — and take over what the dead left behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import jobspaces
from jobspaces import Jobspace
from qubits.errors import CorruptObject, NewerFormat, NotFoundError, TamperedJob
from qubits.protocol import (
    CANCEL_CHECK,
    HINT_LISTEN,
    HINT_PEER_GAP,
    IDLE_LIST_POLLS,
    IDLE_PRESENCE_POLLS,
    IDLE_SCAN_POLLS,
    LEASE_TTL,
    MIN_TTL,
    PRESENCE_INTERVAL,
    READY_PAGE_REUSE,
    SCHEDULE_REFRESH,
    STOP_TIMEOUT,
    Claim,
    LeaseLost,
    NodeInfo,
    Outcome,
    Protocol,
    ReadyEntry,
    ReadyIndex,
    Specs,
    TaskSpec,
    __version__,
    default_node_name,
    layout,
)

from ._cancels import CancelCache
from ._control import Control
from ._execute import Executor
from ._leases import scan_leases
from ._metrics import Histogram
from ._running import ClaimRunner
from ._schedule import Scheduler
from ._slots import Resources
from ._wake import WakeSources

log = logging.getLogger("qubits.agent")
T = TypeVar("T")


@dataclass
class AgentConfig:
    """How one agent runs; every field has a CLI option."""

    jobspace: str
    name: str = field(default_factory=default_node_name)
    slots: int = 1
    capabilities: list[str] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=dict)
    ttl: float = LEASE_TTL
    exit_when_idle: float | None = None
    stop_timeout: float = STOP_TIMEOUT
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("QUBITS_CACHE", "~/.cache/qubits")).expanduser())
    max_idle_poll: float | None = None
    jobs: list[str] = field(default_factory=list)
    """Only claim tasks of these jobs (empty: any job)."""
    share_weights: dict[str, float] = field(default_factory=dict)
    """Fair-share weight per submitting user (default 1 each)."""
    notify: bool = True
    """Wait on kernel file notifications on a local directory (False: poll)."""
    hint_listen: str | None = HINT_LISTEN
    """Where to listen for wake hints (``HOST[:PORT]``); None: take none."""


class Agent(ClaimRunner):
    """One node agent. ``await Agent(config, js).run()`` returns the process exit code."""

    def __init__(self, config: AgentConfig, js: Jobspace) -> None:
        if config.ttl < MIN_TTL:
            raise ValueError(f"--ttl must be at least {MIN_TTL}s")
        self.config = config
        self.js = js
        self.specs = Specs(js)
        self.proto = Protocol(js, config.name, config.ttl)
        self.ready = ReadyIndex(js)
        self.control = Control(config.cache_dir / "agents", config.name)
        self.executor = Executor(self, config.cache_dir)
        self.scheduler = Scheduler(js, config.name)
        self.running: dict[str, tuple[Claim, asyncio.Task[None]]] = {}
        self.resources = Resources(config.capabilities, config.resources)
        self.draining = False
        self.stop_now = False
        self._wake_etag: str | None = None
        self._kick = asyncio.Event()
        self.skip: set[tuple[str, str]] = set()
        self.cancels = CancelCache(js)
        self._last_work = time.monotonic()
        self._presence_seq = 0
        self._leases_seen = True
        self._backlog = True
        self._spare: list[ReadyEntry] = []
        self._spare_pos = 0
        self._spare_at = 0.0
        self._burials: set[asyncio.Task[None]] = set()
        self._next_presence_now = False
        self._started = time.time()
        self.counters: dict[str, int] = {}
        self.renew_seconds = Histogram()
        self.wakes = WakeSources(self._woken, local_dir=js.local_dir, notify=config.notify,
                                 hint_listen=config.hint_listen, count=self.count)
        self.specs.hinter.exclude = config.name
        self._hinted = False
        self._last_peer_hint = float("-inf")
        self._report_every = PRESENCE_INTERVAL
        self._background: set[asyncio.Task[Any]] = set()

    # -- bookkeeping --------------------------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def free_slots(self) -> int:
        return 0 if self.draining or self.control.paused else self.config.slots - len(self.running)

    def fits(self, spec: TaskSpec) -> bool:
        """Whether this agent could ever run ``spec`` (capabilities and resources)."""
        return self.resources.fits(spec)

    def fits_now(self, spec: TaskSpec) -> bool:
        return self.resources.free_for(spec) and self.executor.confinement.can_take(spec)

    async def is_cancelled(self, job: str, max_age: float = CANCEL_CHECK) -> bool:
        """Whether ``job`` is cancelled (see ``CancelCache``)."""
        return await self.cancels.check(job, max_age)

    # -- the main loop ------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.drain)
        loop.add_signal_handler(signal.SIGUSR1, self._reload_control)
        self.control.register(os.getpid())
        self._reload_control()
        log.info("start", extra={"action": "start", "node": self.config.name})
        await self.wakes.start()
        await self._presence()
        low, high = self.js.idle_poll
        if self.config.max_idle_poll:
            high = self.config.max_idle_poll
        self.scheduler.quiet_refresh = max(SCHEDULE_REFRESH, high * IDLE_LIST_POLLS)  # as the ready index's net
        # Idle, an agent on an object store makes about one HEAD a minute and a few PUTs and LISTs an
        # hour (issue 18: <= 100 requests an hour); submits reach it through hints or notifications.
        quiet = max(30.0, 4 * self.config.ttl, high * IDLE_SCAN_POLLS)
        idle_report = max(PRESENCE_INTERVAL * 8, high * IDLE_PRESENCE_POLLS)
        interval = low
        next_presence, next_tick = time.monotonic() + PRESENCE_INTERVAL, 0.0
        next_scan = time.monotonic() + random.uniform(0, self.config.ttl)
        next_forced_poll = 0.0
        drain_deadline: float | None = None
        outage = 0
        try:
            while True:
                now = time.monotonic()
                if self.draining:
                    if drain_deadline is None:
                        drain_deadline = now + self.config.stop_timeout
                        await self._presence()
                    if not self.running:
                        break
                    if now >= drain_deadline or self.stop_now:
                        await self._release_all()
                        break
                if self.control.tick():
                    self._apply_pause()
                if self._next_presence_now:
                    self._next_presence_now = False
                    await self._presence()
                found = 0
                try:
                    if self.free_slots() > 0:
                        # Poll while the index had work; when it looked empty, only on a wake signal
                        # (one cheap HEAD) or now and then as a safety net.
                        hinted, self._hinted = self._hinted, False
                        woke = False if self._backlog else hinted or await self._wake_changed()
                        if self._backlog or woke or now >= next_forced_poll:
                            found = await self._fill_slots()
                            next_forced_poll = now + max(high * IDLE_LIST_POLLS, 60.0)
                            if hinted:  # note the wake object's version too, once the claims are made
                                await self._wake_changed()
                            if found and self.free_slots() <= 0 and len(self._spare) > self._spare_pos:
                                self._hint_peers(now)
                        if woke:  # a submit or a new schedule: read the schedules again soon
                            self.scheduler.poke()
                            next_tick = now  # run() itself reads no sooner than SCHEDULE_REFRESH after its last reading
                        if (woke or self._backlog) and not self._leases_seen:
                            # Work arrived, so leases will exist: watch them as often as while they do,
                            # or a holder's death would wait for the quiet scan (30 s or more).
                            self._leases_seen = True
                            next_scan = min(next_scan, now + max(0.25, self.config.ttl / 4))
                    if found:
                        interval = low
                        self._last_work = now
                        next_presence = min(next_presence, now + PRESENCE_INTERVAL)
                    else:
                        if self.running:
                            self._last_work = now
                        interval = min(high, max(low, interval * 2))
                    if now >= next_scan and (self.free_slots() > 0 or not self.running):
                        scan = await scan_leases(self)
                        self._leases_seen = scan.others
                        # Often while leases exist, rarely when there are none to watch; and again the
                        # moment a silent lease may be taken over (a takeover comes within ttl + margin +
                        # one scan interval of the holder's last renewal, not one more interval later).
                        next_scan = now + (max(0.25, self.config.ttl / 4) if scan.others else quiet)
                        if scan.due is not None:
                            next_scan = min(next_scan, scan.due + 0.01)
                    if now >= next_presence:
                        self._report_every = PRESENCE_INTERVAL if self.running else idle_report
                        await self._presence()
                        next_presence = now + self._report_every
                    if now >= next_tick and not self.draining:
                        next_tick = now + await self.scheduler.run()  # periodic submissions (qubits schedule)
                except jobspaces.TransientError as exc:
                    # The store is out of reach for now (network, 5xx, throttling). Running tasks fence
                    # themselves if it lasts; the agent backs off and tries again rather than exiting.
                    outage += 1
                    found, interval = 0, min(high, low * 2**outage)
                    log.warning(
                        "store unavailable, retrying in %.1fs: %s", interval, exc,
                        extra={"action": "outage", "node": self.config.name, "count": outage},
                    )
                else:
                    outage = 0
                idle_for = now - self._last_work
                if self.config.exit_when_idle is not None and not self.running and idle_for >= self.config.exit_when_idle:
                    log.info("idle exit", extra={"action": "exit", "node": self.config.name})
                    break
                if found and self.free_slots() > 0:
                    continue
                self._kick.clear()
                wait = min(interval, max(0.05, next_tick - now)) if not self.draining else 0.2
                if self._leases_seen:
                    # Wake for the lease scan: an idle backoff (5 s on object stores) must not delay a
                    # takeover past ttl + one scan interval (bench: 8 s after kill -9 at ttl 2 on moto).
                    wait = min(wait, max(0.05, next_scan - time.monotonic()))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), wait)
        except jobspaces.JobspaceError as exc:
            log.error("jobspace failed: %s", exc, extra={"action": "fatal", "node": self.config.name})
            await self._stop_all()
            return 3
        finally:
            self.wakes.close()
            self.control.unregister()
            with contextlib.suppress(jobspaces.JobspaceError):
                await self._presence(stopped=True)
        return 0

    def drain(self) -> None:
        """Stop claiming; running tasks finish within stop_timeout or are released (at once on a second signal)."""
        if not self.draining:
            log.info("drain", extra={"action": "drain", "node": self.config.name})
        self.stop_now = self.draining
        self.draining = True
        self._kick.set()

    def _woken(self) -> None:
        """A notification or a hint: work may be waiting; list the ready index now."""
        self._hinted = True
        self._kick.set()

    def _hint_peers(self, now: float) -> None:
        """The queue holds more than this agent can take: wake its idle peers (in the background)."""
        if now - self._last_peer_hint < HINT_PEER_GAP:
            return
        self._last_peer_hint = now

        async def hint() -> None:
            self.count("peer_hints", await self.specs.hinter.hint_idle())

        self._in_background(hint())

    def _reload_control(self) -> None:
        before = self.control.paused
        self.control.load()
        if self.control.paused != before:
            self._apply_pause()
        self._kick.set()

    def _apply_pause(self) -> None:
        for claim, _task in self.running.values():
            self.executor.set_paused(claim, self.control.paused)
        action = "pause" if self.control.paused else "resume"
        log.info(action, extra={"action": action, "node": self.config.name})
        self._next_presence_now = True

    async def _wake_changed(self) -> bool:
        try:
            meta = await self.js.head(layout.WAKE)
        except jobspaces.NotFound:
            return False
        changed = meta.etag != self._wake_etag
        self._wake_etag = meta.etag
        return changed

    # -- claiming -----------------------------------------------------------------------------------
    async def _fill_slots(self) -> int:
        # The untried rest of the last page serves the next asks without a LIST (a LIST costs more than
        # the claim itself); the first miss on it means others took those tasks, so list afresh. So does
        # a miss on a fresh page after a claim from it: slots that free up while we go through a page
        # (short tasks) would otherwise walk on through entries others have claimed since the LIST,
        # each miss costing a refused create, a read and a delete (bench/SIMULATED.md: 1,000 agents).
        entries, pos, listed_at = self._spare, self._spare_pos, self._spare_at
        self._spare = []
        fresh = pos >= len(entries) or time.monotonic() - listed_at >= READY_PAGE_REUSE
        if fresh:
            pos = 0
            entries = await self.ready.page()
            listed_at = time.monotonic()
            self.count("list")
            now = time.time()
            entries = [
                e
                for e in entries
                if e.not_before <= now
                and (e.job, e.task) not in self.skip
                and (not self.config.jobs or e.job in self.config.jobs)
            ]
            self._backlog = bool(entries)
            random.shuffle(entries)
        self.executor.order_ready(entries, pos, fresh=fresh)  # the rest of a reused page: if ranks changed
        claimed = 0
        for i in range(pos, len(entries)):
            if self.free_slots() <= 0:
                self._spare, self._spare_pos, self._spare_at = entries, i, listed_at
                break
            entry = entries[i]
            if not fresh and (entry.job, entry.task) in self.skip:
                continue
            if await self._try(entry, listed_at):
                claimed += 1
            elif not fresh or claimed:
                break
        if not claimed and not fresh:
            return await self._fill_slots()
        return claimed

    async def _try(self, entry: ReadyEntry, listed_at: float) -> bool:
        # Reads that do not decide the claim go out beside it: the cancel flag (when not known, checked
        # again before the task starts), and the job spec and seal the task starts with (immutable).
        known = self.cancels.known(entry.job)
        cancelled = None if known is not None else self._in_background(self.is_cancelled(entry.job))
        self._in_background(self.specs.job(entry.job))
        try:
            spec = await self.specs.task(entry.job, entry.chunk, entry.task)
        except NotFoundError:
            self.skip.add((entry.job, entry.task))
            return False
        except (CorruptObject, TamperedJob) as exc:
            await self.quarantine(entry.job, entry.task, entry.chunk, exc, entry.key)
            return False
        if not self.fits(spec):
            self.skip.add((entry.job, entry.task))
            return False
        if not self.fits_now(spec):
            return False
        if spec.not_before and spec.not_before > time.time():
            return False
        if known and await self.js.exists(layout.done(entry.job, entry.task)):
            await self.js.delete(entry.key)  # decided by the cancel already
            return False
        try:
            claim = await self.proto.claim(entry.job, entry.chunk, spec, listed_at)
        except CorruptObject as exc:  # its lease cannot be read
            await self.quarantine(entry.job, entry.task, entry.chunk, exc, entry.key)
            return False
        if claim is None:
            if self.proto.last_miss in ("held", "lost-race"):
                self.count("conflicts")
            if self.proto.last_miss in ("gone", "committed"):
                await self.js.delete(entry.key)
            return False
        self.count("claims")
        self.start_claim(claim, ready_key=entry.key, cancelled=cancelled)
        return True

    # -- reporting ----------------------------------------------------------------------------------
    async def _presence(self, stopped: bool = False) -> None:
        self._presence_seq += 1
        info = NodeInfo(
            name=self.config.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            capabilities=sorted(self.config.capabilities),
            slots=self.config.slots,
            resources=self.config.resources,
            running=sorted(self.running),
            paused=self.control.paused,
            paused_until=self.control.until,
            paused_reason=self.control.reason,
            draining=self.draining,
            started=self._started,
            wall=time.time(),
            seq=self._presence_seq,
            stopped=stopped,
            **self.executor.confinement.presence(),
            wake=self.wakes.mode,
            hint=self.wakes.hint_address,
            report_every=self._report_every,
        )
        with contextlib.suppress(jobspaces.TransientError):
            await self.js.put(layout.node(self.config.name), info.to_json())

    async def quarantine(
        self, job: str, task: str, chunk: str, exc: Exception, ready_key: str | None = None, claim: Claim | None = None
    ) -> None:
        """Set a task that cannot be read aside, say so (log and ``quarantine/{job}/{task}.json``), and
        keep serving others. Corrupt bytes are corrupt for every agent, so the task is decided failed
        with the reason (the job ends, dependents learn it); an object from a newer qubits or a bad
        signature is this agent's problem, not the task's: an upgraded agent, or one with the right
        secret, may still run it."""
        reason = str(exc)
        self.skip.add((job, task))
        self.count("quarantined")
        log.error("quarantine: %s", reason, extra={"action": "quarantine", "job": job, "task": task, "node": self.config.name})
        body = {"job": job, "task": task, "chunk": chunk, "node": self.config.name, "reason": reason, "wall": time.time()}
        with contextlib.suppress(jobspaces.JobspaceError):
            await self.js.put(layout.quarantine(job, task), json.dumps(body).encode())
        if claim is not None:
            with contextlib.suppress(LeaseLost, jobspaces.JobspaceError):
                await self.proto.commit(claim, Outcome.FAILED, error=f"quarantined: {reason}", failures=claim.spec.max_attempts)
            return
        if not isinstance(exc, CorruptObject) or isinstance(exc, NewerFormat):
            return
        with contextlib.suppress(jobspaces.JobspaceError):
            await self.proto.decide_without_lease(job, task, Outcome.FAILED, f"quarantined: {reason}")
            if self.proto.on_decided is not None:
                await self.proto.on_decided(job, task, Outcome.FAILED.value)
            if ready_key:
                await self.js.delete(ready_key)
