"""End-to-end throughput with real agent processes, requests per task by kind, and what an idle fleet costs.

Method (the same as for the peers): agents start and are confirmed working (one warm-up task), sit idle
for 2 s, then ``t0`` is taken and the client submits N no-op tasks through ``Specs.submit``; each task
appends ``task start-time`` to a marker file. wall = last task start - t0 (it includes submitting).
Requests are counted by every agent (QUBITS_COUNT_REQUESTS) and by the submitting client, from the
agents' start to their drain, and divided by N; on moto they are also counted in the server's log.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jobspaces

from ._fleet import Fleet
from ._servers import request_total
from ._util import BenchError, check_exactly_once, min_med_max, wait_for_marker
from ._work import submit

# S3 Standard request prices, us-east-1 (https://aws.amazon.com/s3/pricing/, "Requests & data retrievals"):
# PUT, COPY, POST, LIST $0.005 per 1,000; GET, SELECT and all other requests $0.0004 per 1,000;
# DELETE (and CANCEL) requests are free.
PRICE_PER_1K = {"PUT": 0.005, "PUT_CREATE": 0.005, "PUT_CAS": 0.005, "POST": 0.005, "LIST": 0.005,
                "GET": 0.0004, "HEAD": 0.0004, "DELETE": 0.0}
HOURS_PER_MONTH = 730


def by_kind(counts: Counter[str] | dict[str, int]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for name, n in counts.items():
        kind = name.split(" ", 1)[0]
        if kind != "412":
            out[kind] += n
    return dict(out)


def cost(kinds: dict[str, float]) -> float:
    """Dollars for these request counts at S3 Standard prices."""
    return sum(PRICE_PER_1K.get(k, 0.005) * n / 1000 for k, n in kinds.items())


def _one_run(store: Any, *, tasks: int, agents: int, slots: int, ttl: float) -> dict[str, Any]:
    url = store.fresh_url()
    work = Path(tempfile.mkdtemp(prefix="qubits-bench-tp-"))
    marker = work / "marker"
    fleet = Fleet(url, agents, slots=slots, ttl=ttl)
    moto = getattr(store, "moto", None)
    offset = moto.log_offset() if moto else 0
    try:
        fleet.wait_ready()
        js = jobspaces.CountingJobspace(jobspaces.open_jobspace(url))
        warm = work / "warm"
        asyncio.run(submit(js, 1, marker=warm))
        if not wait_for_marker(warm, 1, 60):
            raise BenchError(f"throughput on {store.name}: the warm-up task never started")
        time.sleep(2.0)
        js.reset()
        t0 = time.time()
        asyncio.run(submit(js, tasks, marker=marker))
        submit_s = time.time() - t0
        lines = wait_for_marker(marker, tasks, timeout=max(120.0, tasks / 5))
        if len(lines) < tasks:
            raise BenchError(f"throughput on {store.name}: {len(lines)} of {tasks} tasks started within the timeout")
        check = check_exactly_once(lines, {f"t{i:06d}" for i in range(tasks)}, f"throughput on {store.name}")
        wall = max(t for _, t in lines) - t0
        # Let the last commits land before the drain, so their requests are counted.
        time.sleep(1.0)
    finally:
        counts = fleet.stop()
        fleet.cleanup()
    client = Counter(js.counts())
    total = counts + client
    # A committed lease lingers TOMBSTONE_LINGER seconds before its committer deletes it; a drain that
    # comes sooner leaves that delete undone (another agent's lease scan does it later). Count it as made.
    commits = fleet.agent_counters().get("commits", 0)
    deferred = max(0, commits - total.get("DELETE leases", 0))
    if deferred:
        total["DELETE leases"] += deferred
    per_task = {k: round(v / tasks, 3) for k, v in sorted(total.items())}
    kinds = {k: v / tasks for k, v in by_kind(total).items()}
    out: dict[str, Any] = {
        "wall_s": round(wall, 3), "tasks_per_s": round(tasks / wall, 1), "submit_s": round(submit_s, 3),
        "exactly_once": check, "requests_per_task": per_task,
        "requests_per_task_total": round(request_total(total) / tasks, 2),
        "requests_per_task_by_kind": {k: round(v, 3) for k, v in sorted(kinds.items())},
        "client_requests_per_task": round(request_total(client) / tasks, 2),
        "cost_per_million_tasks_usd": round(cost(kinds) * 1_000_000, 2),
        "agent_counters": dict(fleet.agent_counters()),
        "deferred_lease_deletes": deferred,
    }
    if moto:
        logged = moto.requests(store.last_bucket, offset, prefix="js")
        out["moto_log_requests_per_task_total"] = round(request_total(logged) / tasks, 2)
    store.discard(url)
    return out


def run(store: Any, *, tasks: int, agents: int, slots: int, reps: int, ttl: float = 30.0) -> dict[str, Any]:
    """``reps`` runs of ``tasks`` no-op shell tasks on ``agents`` agents of ``slots`` slots."""
    runs = [_one_run(store, tasks=tasks, agents=agents, slots=slots, ttl=ttl) for _ in range(reps)]
    walls = [r["wall_s"] for r in runs]
    med = statistics.median(walls)
    median_run = min(runs, key=lambda r: abs(r["wall_s"] - med))
    return {
        "store": store.name, "tasks": tasks, "agents": agents, "slots": slots, "reps": reps,
        "wall_s": min_med_max(walls),
        "tasks_per_s": {"min": round(tasks / max(walls), 1), "median": round(tasks / med, 1), "max": round(tasks / min(walls), 1)},
        "median_run": median_run, "runs": runs,
    }


def idle(store: Any, *, window: float, settle: float = 10.0, fleet_size: int = 100) -> dict[str, Any]:
    """Requests of one idle agent per hour: (counts after settle + window) - (counts after settle)."""
    def lifetime(seconds: float) -> Counter[str]:
        url = store.fresh_url()
        fleet = Fleet(url, 1, ttl=30.0, name="idle")
        try:
            fleet.wait_ready()
            time.sleep(seconds)
        finally:
            counts = fleet.stop()
            fleet.cleanup()
        return counts

    # The two lifetimes run side by side (separate jobspaces): the window costs its own length only.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        short_f, long_f = pool.submit(lifetime, settle), pool.submit(lifetime, settle + window)
        short, long = short_f.result(), long_f.result()
    diff = Counter({k: max(0, long.get(k, 0) - short.get(k, 0)) for k in set(long) | set(short)})
    per_hour = {k: round(v * 3600 / window, 1) for k, v in sorted(diff.items()) if v}
    kinds = {k: v * 3600 / window for k, v in by_kind(diff).items()}
    monthly = cost(kinds) * HOURS_PER_MONTH
    return {
        "store": store.name, "window_s": window, "settle_s": settle,
        "requests_per_agent_hour": round(sum(kinds.values()), 1), "by_kind_area_per_hour": per_hour,
        "cost_per_agent_month_usd": round(monthly, 3), "fleet": fleet_size,
        "cost_fleet_month_usd": round(monthly * fleet_size, 2),
    }


def idle_schedule(*, hours: float = 2.0, settle: float = 3600.0, fleet_size: int = 100) -> dict[str, Any]:
    """The same figures from a whole idle schedule: a real ``Agent`` polling like an object store (its idle
    poll, presence, lease scans and safety-net listings) on a counting in-memory store, run for ``settle``
    plus ``hours`` of virtual time (bench/sim's clock). A window of minutes on a real store sees only the
    once-a-minute HEADs; the 20- and 60-minute events are counted here."""
    import asyncio

    from nodeagent._agent import Agent, AgentConfig

    from .sim._clock import run_virtual

    async def life() -> Counter[str]:
        js = jobspaces.CountingJobspace(jobspaces.open_jobspace(f"memory://idle-{time.monotonic_ns()}"))
        js.idle_poll = jobspaces.Jobspace.idle_poll  # an object store's
        agent = Agent(AgentConfig(jobspace=js.url, name="idle", ttl=30.0, hint_listen=None,
                                  cache_dir=Path(tempfile.mkdtemp(prefix="qubits-bench-idle-"))), js)
        run = asyncio.ensure_future(agent.run())
        await asyncio.sleep(settle)
        before = Counter(js.counts())
        await asyncio.sleep(hours * 3600)
        after = Counter(js.counts())
        agent.drain()
        await run
        return after - before

    diff = run_virtual(life())
    kinds = {k: v / hours for k, v in by_kind(diff).items()}
    monthly = cost(kinds) * HOURS_PER_MONTH
    return {
        "store": f"schedule ({hours:g} h, virtual time)", "window_s": hours * 3600, "settle_s": settle,
        "requests_per_agent_hour": round(sum(kinds.values()), 1),
        "by_kind_area_per_hour": {k: round(v / hours, 1) for k, v in sorted(diff.items()) if v},
        "cost_per_agent_month_usd": round(monthly, 3), "fleet": fleet_size, "cost_fleet_month_usd": round(monthly * fleet_size, 2),
    }
