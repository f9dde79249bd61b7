"""The simulated scenario: real agents on a simulated S3 or GCS, 10 to 10,000 agents, in virtual time.

Each cell is one store profile x one claim-path variant x one fleet size x one queue size, run in its
own process on a ``VirtualLoop``. Agents have ``slots`` slots and run no-op tasks (claim -> commit), so
they ask for work as fast as the store lets them: the worst case for contention and rate limits.

A cell measures a window of steady state: agents start over ``ramp`` seconds, the window opens
``warmup`` seconds later and lasts ``window`` seconds (virtual), or until the queue is drained. A queue
that drains before the warm-up ends is measured whole. Big cells (1,000 and 10,000 agents, 100k and 1M
tasks) are therefore **sampled**: a few seconds of a run that would take minutes to drain.

Metrics per cell:

- claim p50/p99: from the moment an agent has a free slot and asks for work to the moment it holds the
  lease (LISTs, stale entries, lost races, 503 retries and backoff waits included);
- claim call p50/p99: the successful ``Protocol.claim`` call alone (the create-only lease write);
- conflicts per claim: claims lost to another agent (lease held or race lost) per successful claim;
- requests per task: every request the store received (throttled ones included) per committed task;
- 503/429: throttled answers, and the partition (or "per-object") that produced most of them;
- throughput: tasks committed per virtual second;
- duplicates: tasks committed twice (must be 0), and re-executions (a task run twice, allowed after a
  lease was given back or lost; its commit is still one).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from typing import Any

from .._util import summary_ms
from ._store import PROFILES

S3_PUT_P99_MS = PROFILES["s3"].latency["PUT"].quantile_ms(0.99)


@dataclass(frozen=True)
class Budget:
    ramp: float
    warmup: float
    window: float


BUDGETS = {10: Budget(1.0, 3.0, 20.0), 100: Budget(1.0, 3.0, 8.0), 1000: Budget(1.0, 2.0, 3.0), 10000: Budget(2.0, 2.0, 3.0)}
"""Virtual seconds per fleet size: the simulator's CPU grows with agents, not with virtual time."""


@dataclass
class SimPlan:
    name: str
    profiles: list[str]
    agents: list[int]
    tasks: list[int]
    variants: list[str]
    slots: int = 4
    procs: int = 2
    compare_agents: list[int] = field(default_factory=list)
    compare_tasks: list[int] = field(default_factory=list)
    """Fleet and queue sizes at which the other variants run beside ``current``."""
    realtime_check: bool = True


PLANS = {
    "full": SimPlan("full", ["s3", "gcs"], [10, 100, 1000, 10000], [10_000, 100_000, 1_000_000],
                    ["before", "current", "sharded"], compare_agents=[10, 100, 1000], compare_tasks=[100_000]),
    "quick": SimPlan("quick", ["s3", "gcs"], [10, 100, 1000], [10_000], ["before", "current", "sharded"],
                     compare_agents=[1000], compare_tasks=[10_000]),
    # The fleet the quick plan leaves out, on a queue it cannot drain in the window (the full plan's
    # largest cells without its 1M queues and its variants: about 10 CPU-minutes a cell here).
    "scale": SimPlan("scale", ["s3", "gcs"], [10000], [100_000], ["current"], realtime_check=False),
    # A queue of a million tasks (1,000 spec chunks, a million ready entries) under 1,000 agents.
    "million": SimPlan("million", ["s3", "gcs"], [1000], [1_000_000], ["current"], realtime_check=False),
    # Only the virtual-against-real-time check (run it on an otherwise idle machine).
    "check": SimPlan("check", ["s3"], [], [], ["current"]),
    "tiny": SimPlan("tiny", ["s3"], [10, 50], [2_000], ["current"], procs=1, realtime_check=False),
}


def budget_for(agents: int) -> Budget:
    for n in sorted(BUDGETS):
        if agents <= n:
            return BUDGETS[n]
    return BUDGETS[max(BUDGETS)]


def run_one(args: dict[str, Any]) -> dict[str, Any]:
    """One cell, in this (worker) process: apply the variant, run in virtual or real time, summarize."""
    import asyncio

    from . import _variants
    from ._clock import run_virtual
    from ._fleet import CellConfig, run_cell

    _variants.apply(args["variant"])
    # A cell keeps millions of objects alive (the store, every agent's page of the ready index): with
    # the default thresholds the cyclic collector walked them all every few thousand allocations, a
    # third of the cell's CPU. Nothing here makes cycles worth collecting sooner; the results are equal.
    gc.set_threshold(100_000, 50, 1000)
    profile = PROFILES[args["profile"]]
    b = budget_for(args["agents"])
    cfg = CellConfig(profile, args["agents"], args["tasks"], slots=args.get("slots", 4), ramp=args.get("ramp", b.ramp),
                     warmup=args.get("warmup", b.warmup), window=args.get("window", b.window), seed=args.get("seed", 1),
                     task_seconds=args.get("task_seconds", 0.0))
    t = time.perf_counter()
    cpu = time.process_time()
    if args.get("realtime"):
        res = asyncio.run(run_cell(cfg))
    else:
        res = run_virtual(run_cell(cfg))
    res["real_s"] = round(time.perf_counter() - t, 1)
    res["cpu_s"] = round(time.process_time() - cpu, 1)
    res["variant"] = args["variant"]
    res["clock"] = "real" if args.get("realtime") else "virtual"
    return summarize(res)


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """Replace raw samples by percentiles and derive the per-claim and per-task ratios."""
    waits = res.pop("claim_wait_s")
    calls = res.pop("claim_call_s")
    res["claim_ms"] = summary_ms(waits)
    res["claim_call_ms"] = summary_ms(calls)
    claims = max(1, res["claims_counted"])
    commits = max(1, res["commits"])
    res["conflicts_per_claim"] = round(res["conflicts"] / claims, 3)
    res["lease_412_per_claim"] = round(res["lease_create_412"] / claims, 3)
    res["requests_per_task"] = round(res["requests_total"] / commits, 2)
    res["throttled_per_task"] = round(res["throttled_total"] / commits, 3)
    res["tasks_per_s"] = round(res["tasks_per_s"], 1)
    return res


def cells_for(plan: SimPlan) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for profile in plan.profiles:
        for variant in plan.variants:
            for tasks in plan.tasks:
                for agents in plan.agents:
                    if variant != "current" and (agents not in plan.compare_agents or tasks not in plan.compare_tasks):
                        continue
                    out.append({"profile": profile, "variant": variant, "agents": agents, "tasks": tasks, "slots": plan.slots})
    # The largest cells first, so two workers finish together.
    out.sort(key=lambda c: -(c["agents"] * (1 + (c["tasks"] >= 1_000_000))))
    return out


def run_cells(cells: list[dict[str, Any]], procs: int = 2, progress: bool = True) -> list[dict[str, Any]]:
    """Run cells in ``procs`` fresh processes (one process per cell: memory is returned after each)."""
    ctx = multiprocessing.get_context("spawn")
    results: list[dict[str, Any]] = []
    with ctx.Pool(procs, maxtasksperchild=1) as pool:
        for res in pool.imap_unordered(run_one, cells):
            results.append(res)
            if progress:
                c = res["claim_ms"]
                print(f"sim: {res['profile']} {res['variant']:8s} {res['agents']:>6,} agents {res['tasks']:>9,} tasks: "
                      f"claim p50 {c['p50']} p99 {c['p99']} ms, {res['tasks_per_s']:,.0f} tasks/s, "
                      f"{res['throttled_total']:,} throttled, dup {res['duplicate_commits']} ({res['real_s']} s)", flush=True)
    order = {n: i for i, n in enumerate(["before", "current", "sharded"])}
    results.sort(key=lambda r: (r["profile"], r["tasks"], r["agents"], order.get(r["variant"], 9)))
    return results


def calibrate_cas(profile_name: str, clients: int = 8, seconds: float = 20.0) -> dict[str, Any]:
    """Single-object CAS under contention (Douglas' experiment): ``clients`` loop read -> CAS."""
    import asyncio

    from jobspaces import PreconditionFailed, TransientError

    from ._clock import run_virtual
    from ._store import SimJobspace, SimStore

    async def main() -> dict[str, Any]:
        store = SimStore(PROFILES[profile_name], seed=7)
        store.load("cas", b"0")
        js = SimJobspace(store)
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        ok: list[float] = []

        async def client() -> None:
            while loop.time() < end:
                t = loop.time()
                try:
                    data, etag = await js.get("cas")
                    await js.put("cas", str(int(data) + 1).encode(), if_match=etag)
                    ok.append(loop.time() - t)
                except (PreconditionFailed, TransientError):
                    continue

        await asyncio.gather(*(client() for _ in range(clients)))
        return {"profile": profile_name, "clients": clients, "ops_per_s": round(len(ok) / seconds, 2),
                "op_ms": summary_ms(ok), "throttled": sum(store.stats.throttled.values())}

    result: dict[str, Any] = run_virtual(main())
    return result


def realtime_check(procs: int = 2) -> dict[str, Any]:
    """The same small cell in virtual time and in real time (a plain asyncio loop and real sleeps)."""
    base = {"profile": "s3", "variant": "current", "agents": 10, "tasks": 5_000, "slots": 4, "ramp": 1.0, "warmup": 2.0, "window": 12.0}
    cells = [dict(base, seed=s) for s in (1, 2, 3)] + [dict(base, seed=1, realtime=True)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(procs, 2), maxtasksperchild=1) as pool:
        out = pool.map(run_one, cells)
    return {"virtual": out[:3], "real": out[3]}


def run(plan_name: str = "quick", procs: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Everything the scenario reports, as one JSON-able dict."""
    plan = PLANS[plan_name]
    t = time.perf_counter()
    res: dict[str, Any] = {
        "plan": plan.name,
        "profiles": {name: {"latency": {k: {"median_ms": v.median_ms, "sigma": round(v.sigma, 3),
                                            "p99_ms": round(v.quantile_ms(0.99), 1), "source": v.source}
                                        for k, v in p.latency.items()},
                            "write_rate": p.write_rate, "read_rate": p.read_rate, "prefix_depth": p.prefix_depth,
                            "object_write_rate": p.object_write_rate, "throttle_status": p.throttle_status}
                     for name, p in PROFILES.items()},
        "s3_put_p99_ms": round(S3_PUT_P99_MS, 1),
        "method": __doc__,
    }
    res["calibration"] = [calibrate_cas("s3"), calibrate_cas("gcs")]
    if plan.realtime_check:
        res["realtime_check"] = realtime_check(procs or plan.procs)
    res["cells"] = run_cells(cells_for(plan), procs or plan.procs, progress)
    res["seconds"] = round(time.perf_counter() - t, 1)
    res["loadavg"] = round(os.getloadavg()[0], 2)
    return res
