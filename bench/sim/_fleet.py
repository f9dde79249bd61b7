"""Simulated fleets: real agents (``nodeagent.Agent``) on a SimJobspace, measured in one cell.

Every agent is the real agent: its main loop (``Agent.run``: ready-index pages, ``_fill_slots``,
``_try``, lease scans, presence, wake polls, backoff on outages), its ``Protocol`` (claim, commit,
finalize), ``ReadyIndex`` and ``Specs``. What the simulation leaves out or shares, and why:

- the executor runs nothing: a claimed task succeeds at once (or after ``task_seconds``) and is
  committed through the real ``_settle`` (lease CAS to committed, done record, lingering tombstone);
- parsed task chunks are shared by all agents of the process (``SharedSpecs``): each agent still makes
  its own GET of every chunk it needs, but 10,000 agents parsing the same immutable bytes into their
  own objects would only cost the simulator memory.

Submission is not simulated: the queue's objects (job spec, task chunks, ready entries, seal, wake)
are loaded into the store as ``Specs.submit`` writes them, before the clock starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import random
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jobspaces
from nodeagent._agent import Agent, AgentConfig
from nodeagent._execute import Executor
from qubits.protocol import TASKS_PER_CHUNK, AttemptEnd, Claim, JobSpec, Outcome, Specs, TaskSpec, layout

from ._clock import WALL_START
from ._store import Profile, SimJobspace, SimStore


@dataclass
class CellConfig:
    """One simulated run: a store profile, a fleet, a queue, and how long to measure."""

    profile: Profile
    agents: int
    tasks: int
    slots: int = 4
    ttl: float = 30.0
    jobs: int = 1
    ramp: float = 1.0
    """Agents start at uniformly random times within this many seconds."""
    warmup: float = 3.0
    """Seconds after the ramp before measuring (when the queue lasts that long)."""
    window: float = 10.0
    """Seconds measured at most; the window also ends when the queue is drained."""
    task_seconds: float = 0.0
    seed: int = 1


@dataclass
class Fleet:
    """What every simulated agent of a cell reports."""

    parsed: dict[str, dict[str, TaskSpec]] = field(default_factory=dict)
    claim_wait: list[tuple[float, float]] = field(default_factory=list)
    """(when held, seconds from asking for work to holding the lease), per claim from the ready index."""
    claim_call: list[tuple[float, float]] = field(default_factory=list)
    """(when, seconds) of each successful Protocol.claim call."""
    counters: Counter[str] = field(default_factory=Counter)
    commits: Counter[tuple[str, str]] = field(default_factory=Counter)
    executions: Counter[tuple[str, str]] = field(default_factory=Counter)
    task_seconds: float = 0.0


class SharedSpecs(Specs):
    """Specs whose requests and per-agent cache are real, with parsed chunks shared across agents."""

    def __init__(self, js: jobspaces.Jobspace, parsed: dict[str, dict[str, TaskSpec]]) -> None:
        super().__init__(js)
        self._parsed = parsed

    def _parse_chunk(self, key: str, data: bytes) -> dict[str, TaskSpec]:
        # Each agent still GETs the chunk (the request is what is simulated); parsing it once is enough.
        tasks = self._parsed.get(key)
        if tasks is None:
            tasks = self._parsed[key] = super()._parse_chunk(key, data)
        return tasks


class SimExecutor(Executor):
    """Runs nothing: every task succeeds (after ``task_seconds``)."""

    fleet: Fleet

    async def run(self, claim: Claim) -> AttemptEnd:
        self.fleet.executions[(claim.job, claim.task)] += 1
        if self.fleet.task_seconds:
            await asyncio.sleep(self.fleet.task_seconds)
        return AttemptEnd(Outcome.SUCCEEDED, None, 0)


class SimAgent(Agent):
    """A real agent with a SimExecutor, timing how long each claim takes."""

    def __init__(self, config: AgentConfig, js: jobspaces.Jobspace, fleet: Fleet) -> None:
        super().__init__(config, js)
        self.fleet = fleet
        self.specs = SharedSpecs(js, fleet.parsed)
        executor = SimExecutor(self, config.cache_dir)
        executor.fleet = fleet
        self.executor = executor
        self._asking_since: float | None = None
        """Since when this agent has had a free slot without claiming (None: no free slot)."""
        claim, commit = self.proto.claim, self.proto.commit

        async def timed_claim(*args: Any, **kwargs: Any) -> Claim | None:
            t = _now()
            got = await claim(*args, **kwargs)
            if got is not None:
                fleet.claim_call.append((_now(), _now() - t))
            return got

        async def counted_commit(c: Claim, *args: Any, **kwargs: Any) -> Any:
            done = await commit(c, *args, **kwargs)
            fleet.commits[(c.job, c.task)] += 1
            return done

        self.proto.claim = timed_claim  # type: ignore[method-assign]
        self.proto.commit = counted_commit  # type: ignore[method-assign,assignment]

    def count(self, name: str, n: int = 1) -> None:
        super().count(name, n)
        self.fleet.counters[name] += n

    async def _fill_slots(self) -> int:
        if self._asking_since is None:
            self._asking_since = _now()
        return await super()._fill_slots()

    def start_claim(self, claim: Claim, ready_key: str | None = None, cancelled: asyncio.Task[bool] | None = None) -> None:
        now = _now()
        if ready_key is not None and self._asking_since is not None:
            self.fleet.claim_wait.append((now, now - self._asking_since))
        super().start_claim(claim, ready_key, cancelled)
        self._asking_since = now if self.free_slots() > 0 else None

    async def _run_claim(self, claim: Claim, ready_key: str | None, cancelled_check: asyncio.Task[bool] | None = None) -> None:
        try:
            await super()._run_claim(claim, ready_key, cancelled_check)
        finally:
            if self._asking_since is None:
                self._asking_since = _now()  # a slot is free again: the next claim's wait starts now


def _now() -> float:
    return asyncio.get_running_loop().time()


def populate(store: SimStore, tasks: int, jobs: int = 1) -> list[str]:
    """Load a queue of ``tasks`` no-op tasks in ``jobs`` jobs, object for object as Specs.submit writes it."""
    ids = []
    per = -(-tasks // jobs)
    ready: list[str] = []
    n = 0
    for j in range(jobs):
        job_id = f"20260101-000000-{j:06x}"
        ids.append(job_id)
        count = min(per, tasks - n)
        spec = JobSpec(id=job_id, kind="commands", name="bench-sim", created=WALL_START, submitter="bench")
        store.load(layout.job_spec(job_id), spec.to_json())
        digests = []
        chunks = 0
        for start in range(0, count, TASKS_PER_CHUNK):
            name = f"{chunks:06d}"
            items = [TaskSpec(id=f"t{i:07d}", kind="argv", command=["true"]).to_dict()
                     for i in range(start, min(count, start + TASKS_PER_CHUNK))]
            data = json.dumps(items, separators=(",", ":")).encode()
            store.load(layout.task_chunk(job_id, name), data)
            ready += [layout.ready(job_id, name, item["id"]) for item in items]
            digests.append("-")
            chunks += 1
        seal = {"chunks": chunks, "task_count": count, "digests": digests, "signature": None}
        store.load(layout.seal(job_id), json.dumps(seal).encode())
        n += count
    ready.sort()  # appends at the end of the sorted keys: fast
    for key in ready:
        store.load(key, b"")
    store.load(layout.WAKE, b"0")
    return ids


@contextlib.contextmanager
def _quiet_logs() -> Any:
    """Agents warn on every throttled outage; a run of 10,000 would flood the terminal."""
    names = ("qubits", "nodeagent")
    before = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for n, level in before.items():
            logging.getLogger(n).setLevel(level)


def _window(values: list[tuple[float, float]], t0: float, t1: float) -> list[float]:
    return [v for t, v in values if t0 <= t <= t1]


async def run_cell(cfg: CellConfig) -> dict[str, Any]:
    """Run one cell on the current loop (virtual or real) and return its measurements."""
    loop = asyncio.get_running_loop()
    store = SimStore(cfg.profile, seed=cfg.seed)
    populate(store, cfg.tasks, cfg.jobs)
    js = SimJobspace(store)
    fleet = Fleet(task_seconds=cfg.task_seconds)
    rng = random.Random(cfg.seed)
    random.seed(cfg.seed)  # the agents' own choices (shuffles, shard starts, jitter)
    cache = Path(tempfile.mkdtemp(prefix="qubits-sim-"))
    agents = [
        SimAgent(AgentConfig(jobspace=js.url, name=f"sim-{i:05d}", slots=cfg.slots, ttl=cfg.ttl, cache_dir=cache, hint_listen=None), js, fleet)
        for i in range(cfg.agents)
    ]
    # The queue and the agents live for the whole cell: keep the cyclic collector from rescanning them.
    gc.collect()
    gc.freeze()
    start = loop.time()

    async def launch(agent: SimAgent, delay: float) -> int:
        await asyncio.sleep(delay)
        return await agent.run()

    def drained() -> bool:
        return len(store.stats.done_creates) >= cfg.tasks

    async def until(t: float) -> None:
        while loop.time() < t and not drained():
            await asyncio.sleep(min(0.05, t - loop.time()))

    with _quiet_logs():
        runs = [asyncio.ensure_future(launch(a, rng.uniform(0, cfg.ramp))) for a in agents]
        t0 = start + cfg.ramp + cfg.warmup
        await until(t0)
        whole = drained()
        if whole:
            t0 = start  # the queue did not last the warm-up: measure all of it
            before_counters: Counter[str] = Counter()
            snap0: dict[str, Counter[str]] = {"requests": Counter(), "throttled": Counter(), "lost_conditions": Counter()}
        else:
            snap0 = store.stats.snapshot()
            before_counters = Counter(fleet.counters)
            await until(t0 + cfg.window)
        t1 = loop.time()
        if drained():
            t1 = max(store.stats.done_times)
        snap1 = store.stats.snapshot()
        counters = Counter(fleet.counters)
        counters.subtract(before_counters)
        # Stop: agents drain (finish what they hold), then anything left (lingering tombstones) is cancelled.
        for a in agents:
            a.drain()
        await asyncio.wait(runs, timeout=120.0)
        for t in asyncio.all_tasks():
            if t is not asyncio.current_task():
                t.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
    gc.unfreeze()
    span = max(t1 - t0, 1e-9)
    requests = snap1["requests"]
    requests.subtract(snap0["requests"])
    throttled = snap1["throttled"]
    throttled.subtract(snap0["throttled"])
    lost = snap1["lost_conditions"]
    lost.subtract(snap0["lost_conditions"])
    commits_in_window = sum(1 for t in store.stats.done_times if t0 <= t <= t1)
    duplicate_commits = sum(1 for v in fleet.commits.values() if v > 1)
    duplicate_done = sum(1 for v in store.stats.done_creates.values() if v > 1)
    waits = _window(fleet.claim_wait, t0, t1)
    calls = _window(fleet.claim_call, t0, t1)
    total_requests = sum(v for v in requests.values() if v > 0)
    by_partition: Counter[str] = Counter()
    for k, v in throttled.items():
        if v > 0:
            by_partition[k.split(" ", 1)[1]] += v
    return {
        "profile": cfg.profile.name,
        "agents": cfg.agents,
        "slots": cfg.slots,
        "tasks": cfg.tasks,
        "window_s": round(span, 3),
        "sampled": not whole,
        "drained": len(store.stats.done_creates) >= cfg.tasks,
        "claims": len(waits),
        "claim_wait_s": waits,
        "claim_call_s": calls,
        "commits": commits_in_window,
        "tasks_per_s": commits_in_window / span,
        "conflicts": counters["conflicts"],
        "claims_counted": counters["claims"],
        "lost": counters["lost"],
        "lease_create_412": lost["PUT_CREATE leases"],
        "requests": {k: v for k, v in sorted(requests.items()) if v > 0},
        "requests_total": total_requests,
        "throttled": {k: v for k, v in sorted(throttled.items()) if v > 0},
        "throttled_total": sum(v for v in throttled.values() if v > 0),
        "throttled_by_partition": dict(by_partition.most_common(5)),
        "duplicate_commits": duplicate_commits + duplicate_done,
        "re_executions": sum(1 for v in fleet.executions.values() if v > 1),
        "done_records": len(store.stats.done_creates),
    }
