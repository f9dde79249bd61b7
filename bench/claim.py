"""Claim latency against the number of agents and the queue size, on qubits' real claim path.

Each simulated agent is a real ``nodeagent.Agent`` (its ReadyIndex, Specs cache, Protocol, cancel checks,
commit and DAG hook) whose executor runs nothing: only the process spawn is left out. Agents live as
asyncio tasks in a few processes and all share one jobspace.

The clock starts when an agent asks for work (its ``_fill_slots``: a ready-index page, then claims) and
stops when it holds a lease. A lost race or an empty page makes it wait and ask again exactly as the
agent's main loop does (the interval doubles from the store's shortest idle poll), and that wait counts.
After a claim the task is committed at once (lease CAS, done record, DAG hook, lease delete), then the
agent asks again. Claims are measured once every agent has claimed once: an agent's first claim (its
first listing, its cold spec cache) is a start-up cost, reported in the requests per claim but not in
the latency.

Offered load is held constant across agent counts: each agent asks on average once every
``agents / rate`` seconds (jittered), so 1,000 agents model a fleet running tasks of ``1000 / rate``
seconds, and 10 agents a fleet running tasks of ``10 / rate`` seconds, at the same claims per second.
Two cores cannot run a thousand agents flat out, and what scales with the agent count is contention,
not the simulator's CPU.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jobspaces
from nodeagent._agent import Agent, AgentConfig
from nodeagent._execute import Executor
from qubits.protocol import AttemptEnd, Claim, Outcome

from ._util import BenchError, summary_ms
from ._work import submit_many


class _NoopExecutor(Executor):
    """The real executor's hooks (DAG after commit) without starting a process."""

    executions: list[tuple[str, str, int]]

    async def run(self, claim: Claim) -> AttemptEnd:
        self.executions.append((claim.job, claim.task, claim.attempt))
        return AttemptEnd(Outcome.SUCCEEDED, None, 0)


class _SimAgent(Agent):
    """A real agent whose executor runs nothing; notes when each claim is held."""

    def __init__(self, config: AgentConfig, js: jobspaces.Jobspace, executions: list[tuple[str, str, int]]) -> None:
        super().__init__(config, js)
        ex = _NoopExecutor(self, config.cache_dir)
        ex.executions = executions
        self.executor = ex
        self.held_at: float | None = None
        self.list_seconds = 0.0
        self.refused = 0
        """Asks that failed with the store still failing after the retry budget."""
        inner_page = self.ready.page

        async def timed_page(limit: int | None = None) -> Any:
            t = time.perf_counter()
            try:
                return await (inner_page() if limit is None else inner_page(limit))
            finally:
                self.list_seconds += time.perf_counter() - t

        self.ready.page = timed_page  # type: ignore[method-assign]

    def start_claim(self, claim: Claim, ready_key: str | None = None, cancelled: asyncio.Task[bool] | None = None) -> None:
        self.held_at = time.perf_counter()
        super().start_claim(claim, ready_key, cancelled)


@dataclass
class CellResult:
    latencies: list[float]
    list_seconds: list[float]
    misses: int
    refused: int
    executions: list[tuple[str, str, int]]
    requests: dict[str, int]
    wall: float


async def _fill_or_refused(agent: _SimAgent) -> int:
    """``Agent._fill_slots`` as the agent loop calls it: a store that keeps failing past the retry
    budget (moto busy serving 100 cold LISTs) is a wait and another try, never the end of the run."""
    try:
        return await agent._fill_slots()
    except jobspaces.TransientError:
        agent.refused += 1
        return 0


async def _run_agents(url: str, agents: int, rate: float, measure: int, seed: int, topup: int | None,
                      warm: bool = True) -> CellResult:
    inner = jobspaces.open_jobspace(url)
    js = jobspaces.CountingJobspace(inner)
    if topup:
        await submit_many(inner, topup, parallel=4)
    random.seed(seed)
    executions: list[tuple[str, str, int]] = []
    cache = Path(tempfile.mkdtemp(prefix="qubits-bench-claim-"))
    low, high = js.idle_poll
    period = agents / rate
    latencies: list[float] = []
    lists: list[float] = []
    misses = 0
    done = asyncio.Event()
    t_start = time.perf_counter()
    sims: list[_SimAgent] = []
    # Claims are measured once every agent has claimed once (cold caches and first listings are a
    # start-up cost, not the steady state); without ``warm`` from the start.
    all_warm = asyncio.Event()
    if not warm:
        all_warm.set()
    warm_count = 0

    async def one(i: int) -> None:
        nonlocal misses, warm_count
        config = AgentConfig(jobspace=url, name=f"sim-{seed}-{i}", slots=1, ttl=30.0, cache_dir=cache)
        agent = _SimAgent(config, js, executions)
        sims.append(agent)
        warmed = False
        next_ask = t_start + random.uniform(0, period)
        while not done.is_set():
            delay = next_ask - time.perf_counter()
            if delay > 0:
                try:
                    await asyncio.wait_for(done.wait(), delay)
                    return
                except TimeoutError:
                    pass
            agent.held_at = None
            agent.list_seconds = 0.0
            t_ask = time.perf_counter()
            interval = low
            while not await _fill_or_refused(agent):
                misses += 1
                if done.is_set():
                    return
                interval = min(high, max(low, interval * 2))
                await asyncio.sleep(interval)
            assert agent.held_at is not None
            if all_warm.is_set():
                latencies.append(agent.held_at - t_ask)
                lists.append(agent.list_seconds)
                if len(latencies) >= measure:
                    done.set()
            elif not warmed:
                warmed = True
                warm_count += 1
                if warm_count >= agents:
                    all_warm.set()
            await asyncio.gather(*(t for _, t in list(agent.running.values())), return_exceptions=True)
            next_ask = max(time.perf_counter(), next_ask + period * random.uniform(0.5, 1.5))

    await asyncio.gather(*(one(i) for i in range(agents)))
    wall = time.perf_counter() - t_start
    counts = js.counts()
    # Committed leases linger (TOMBSTONE_LINGER) before their owner deletes them; count those deletes
    # as made, rather than keep every cell waiting for them.
    deferred = 0
    for agent in sims:
        for burial in list(getattr(agent, "_burials", ())):
            burial.cancel()
            deferred += 1
    if deferred:
        counts["DELETE leases"] = counts.get("DELETE leases", 0) + deferred
    return CellResult(latencies, lists, misses, sum(a.refused for a in sims), executions, counts, wall)


def _cell_worker(args: dict[str, Any]) -> dict[str, Any]:
    """Entry of a worker process (or the single in-process run for memory://)."""
    r = asyncio.run(_run_agents(args["url"], args["agents"], args["rate"], args["measure"], args["seed"], args.get("topup"),
                                args.get("warm", True)))
    return {"latencies": r.latencies, "lists": r.list_seconds, "misses": r.misses, "refused": r.refused, "executions": r.executions,
            "requests": r.requests, "wall": r.wall}


def _topup(pool: Any, url: str, n: int, in_process: bool) -> None:
    if n <= 0:
        return
    if in_process:  # memory:// lives in the pool's one process
        pool.apply(_cell_worker, ({"url": url, "agents": 0, "rate": 1, "measure": 0, "seed": 0, "topup": n},))
    else:
        asyncio.run(submit_many(jobspaces.open_jobspace(url), n, parallel=4))


def run(store: Any, *, agents: list[int], queues: list[int], measure: int, rate: float, procs: int = 2) -> dict[str, Any]:
    """Every (queue size, agent count) cell on one store; raises BenchError on a duplicate execution."""
    ctx = multiprocessing.get_context("spawn")
    cells: list[dict[str, Any]] = []
    all_exec: dict[tuple[str, str], int] = {}
    in_process = store.in_process_only
    nprocs = 1 if in_process else procs
    for queue in queues:
        url = store.fresh_url()
        with ctx.Pool(nprocs) as pool:
            t = time.perf_counter()
            if in_process:
                pool.apply(_cell_worker, ({"url": url, "agents": 0, "rate": 1, "measure": 0, "seed": 0, "topup": queue},))
            else:
                import asyncio as _a

                _a.run(submit_many(jobspaces.open_jobspace(url), queue, parallel=4))
            fill_s = time.perf_counter() - t
            for n in agents:
                per = [n // nprocs + (1 if k < n % nprocs else 0) for k in range(nprocs)]
                per = [p for p in per if p]
                jobs = []
                for k, p in enumerate(per):
                    jobs.append({"url": url, "agents": p, "rate": rate * p / n, "measure": max(1, measure * p // n),
                                 "seed": hash((queue, n, k)) & 0xFFFF})
                # A cell claims one task per agent to warm up, then ``measure``: add as many first, so the
                # queue never drains below its size while the cell runs ("1,000 agents, 1k queued" means a
                # thousand tasks waiting throughout), and nothing is submitted while claims are timed.
                extra = n + measure
                _topup(pool, url, extra, in_process)
                results = pool.map(_cell_worker, jobs)
                lat = [x for r in results for x in r["latencies"]]
                lists = [x for r in results for x in r["lists"]]
                req: dict[str, int] = {}
                for r in results:
                    for k2, v in r["requests"].items():
                        req[k2] = req.get(k2, 0) + v
                claims = len(lat)
                executed = sum(len(r["executions"]) for r in results)
                dups = 0
                for r in results:
                    for job, task, _attempt in r["executions"]:
                        all_exec[(job, task)] = all_exec.get((job, task), 0) + 1
                        if all_exec[(job, task)] > 1:
                            dups += 1
                cell = {
                    "store": store.name, "queued": queue, "agents": n, "procs": len(per), "rate_per_s": rate,
                    "claims": claims, "latency_ms": summary_ms(lat), "list_ms": summary_ms(lists),
                    "retries_after_miss": sum(r["misses"] for r in results),
                    "store_refused": sum(r["refused"] for r in results),
                    "duplicates": dups, "wall_s": round(max(r["wall"] for r in results), 2), "fill_s": round(fill_s, 1),
                    "executed_with_warmup": executed,
                    "requests_per_claim": {k2: round(v / max(1, executed), 3) for k2, v in sorted(req.items())},
                    "requests_total_per_claim": round(sum(v for k2, v in req.items() if not k2.startswith("412")) / max(1, executed), 2),
                }
                cells.append(cell)
                print(f"bench: claim {store.name} queued={queue} agents={n}: p50 {cell['latency_ms']['p50']} ms, "
                      f"p99 {cell['latency_ms']['p99']} ms, {cell['wall_s']} s", file=sys.stderr, flush=True)
                if dups:
                    raise BenchError(f"claim scenario on {store.name}: {dups} duplicate executions (queue {queue}, {n} agents)")
                # Back to its size for the next cell.
                _topup(pool, url, executed - extra, in_process)
        store.discard(url)
    return {"cells": cells}
