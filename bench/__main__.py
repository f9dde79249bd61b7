"""``python -m bench [--quick] [--scenario NAME ...] [--stores memory,local,moto,seaweed] [--out DIR]``.

Prints a table per scenario, writes ``DIR/<scenario>.json`` (and ``claim.png``), and with ``--markdown``
a results page. Exit status: 0 when every scenario ran (whatever the speed), 1 when the benchmark is
broken or an execution was duplicated, 2 for bad options.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from . import _report
from ._plan import Plan, plan_for
from ._stores import STORES, Store, open_store
from ._util import BenchError, machine

SCENARIOS = ("floor", "claim", "throughput", "idle", "wake", "takeover", "memory", "peers", "sim", "plan", "dashboard")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a CI smoke run (under two minutes); fails only when broken")
    p.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable; default all but "
                   "peers in --quick)")
    p.add_argument("--stores", help=f"comma-separated stores (known: {','.join(STORES)})")
    p.add_argument("--out", default="bench-results", help="directory for JSON and PNG (default ./bench-results)")
    p.add_argument("--markdown", help="also write the results as markdown to this file (e.g. bench/RESULTS.md)")
    p.add_argument("--tiny", action="store_true", help="smaller than --quick (the test suite's smoke test)")
    return p.parse_args(argv)


class Run:
    """One invocation: the stores it started, and what each scenario produced."""

    def __init__(self, plan: Plan, stores: list[str], out: Path) -> None:
        self.plan = plan
        self.store_names = stores
        self.out = out
        self.stores: dict[str, Store] = {}
        self.skipped: dict[str, str] = {}
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def store(self, name: str) -> Store | None:
        if name in self.skipped:
            return None
        if name not in self.stores:
            try:
                self.stores[name] = open_store(name)
            except Exception as exc:  # noqa: BLE001 - a store that cannot start here is reported, not fatal
                self.skipped[name] = str(exc)[-300:]
                print(f"bench: store {name} unavailable: {self.skipped[name]}", file=sys.stderr)
                return None
        return self.stores[name]

    def fresh(self, name: str) -> Store | None:
        """The store, restarted when it is a server whose state only grows (moto)."""
        s = self.store(name)
        if s is not None and hasattr(s, "restart"):
            s.restart()
        return s

    def stop(self) -> None:
        for s in self.stores.values():
            s.stop()


def _floor(run: Run) -> dict[str, Any]:
    from . import floor

    rows = []
    for name in run.store_names:
        s = run.store(name)
        if s is not None:
            rows.append(floor.run(s, n=run.plan.floor_n, lists=run.plan.floor_lists))
    return {"stores": rows}


def _claim(run: Run) -> dict[str, Any]:
    from . import claim

    puts = {r["store"]: r["ops"]["PUT_CREATE"]["p50"] for r in run.results.get("floor", {}).get("stores", [])}
    cells = []
    for name in run.store_names:
        if run.plan.claim_stores is not None and name not in run.plan.claim_stores:
            continue
        s = run.fresh(name)
        if s is None:
            continue
        p = run.plan.claim_for(name)
        res = claim.run(s, agents=p["agents"], queues=p["queues"], measure=p["measure"], rate=p["rate"])
        for c in res["cells"]:
            if name in puts and puts[name]:
                c["ratio_p50_to_put"] = round(c["latency_ms"]["p50"] / puts[name], 1)
        cells += res["cells"]
    return {"cells": cells, "put_p50_ms": puts, "method": claim.__doc__}


def _throughput(run: Run) -> dict[str, Any]:
    from . import throughput

    rows = []
    for name in run.store_names:
        for agents, slots in run.plan.throughput_shapes:
            s = run.fresh(name)
            if s is None or s.in_process_only:
                continue
            rows.append(throughput.run(s, tasks=run.plan.throughput_tasks_for(name), agents=agents, slots=slots,
                                       reps=run.plan.reps))
    return {"runs": rows, "method": throughput.__doc__, "prices": throughput.PRICE_PER_1K}


def _idle(run: Run) -> dict[str, Any]:
    from . import throughput

    rows = []
    for name in run.store_names:
        s = run.store(name)
        if s is None or s.in_process_only or name not in run.plan.idle_stores:
            continue
        rows.append(throughput.idle(s, window=run.plan.idle_window, settle=run.plan.idle_settle))
    rows.append(throughput.idle_schedule())
    return {"stores": rows}


def _wake(run: Run) -> dict[str, Any]:
    from . import wake

    stores = [s for name in run.store_names if name in run.plan.wake_stores and (s := run.store(name)) is not None]
    return wake.run(stores, tries=run.plan.wake_tries, no_hint_poll=run.plan.wake_no_hint_poll,
                    no_hint_tries=run.plan.wake_no_hint_tries)


def _takeover(run: Run) -> dict[str, Any]:
    from . import takeover

    rows = []
    for name in run.store_names:
        s = run.store(name)
        if s is None or s.in_process_only or name not in run.plan.takeover_stores:
            continue
        rows += takeover.run(s, ttls=run.plan.takeover_ttls, reps=run.plan.takeover_reps)["rows"]
    return {"rows": rows, "method": takeover.__doc__}


def _memory(run: Run) -> dict[str, Any]:
    from . import memory

    rows = []
    for name in run.store_names:
        s = run.store(name)
        if s is None or s.in_process_only or name not in run.plan.memory_stores:
            continue
        rows.append(memory.run(s, submit_tasks=run.plan.memory_submit))
    return {"stores": rows, "method": memory.__doc__}


def _plan_cost(run: Run) -> dict[str, Any]:
    """A no-op ``make`` of a Qfile with plan_targets targets, all made, on a local directory."""
    from . import plan

    return plan.run(targets=run.plan.plan_targets)


def _peers(run: Run) -> dict[str, Any]:
    from . import peers

    return peers.run(run)


def _dashboard(run: Run) -> dict[str, Any]:
    """Store requests of an open dashboard per minute (opt-in: --scenario dashboard)."""
    from . import dashboard

    rows = []
    for name in run.store_names:
        s = run.store(name)
        if s is not None and not s.in_process_only:
            rows += dashboard.run(s, window=run.plan.dashboard_window)["rows"]
    return {"rows": rows, "method": dashboard.__doc__}


def _sim(run: Run) -> dict[str, Any]:
    """SIMULATED stores (bench/sim): prints and plots itself; see bench/SIMULATED.md."""
    from .sim import _report as sim_report
    from .sim import scenario

    res = scenario.run(run.plan.name if run.plan.name in scenario.PLANS else "quick")
    sim_report.plot(run.out, res)
    sim_report.print_tables(res)
    if any(c["duplicate_commits"] for c in res["cells"]):
        raise BenchError("sim: a task was committed twice")
    return res


RUNNERS = {"floor": _floor, "claim": _claim, "throughput": _throughput, "idle": _idle, "wake": _wake, "takeover": _takeover,
           "memory": _memory, "peers": _peers, "sim": _sim, "plan": _plan_cost,
           "dashboard": _dashboard}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    plan = plan_for(quick=args.quick, tiny=args.tiny)
    stores = [s.strip() for s in (args.stores or ",".join(plan.stores)).split(",") if s.strip()]
    unknown = [s for s in stores if s not in STORES]
    if unknown:
        print(f"bench: unknown store(s) {', '.join(unknown)}; known: {', '.join(STORES)}", file=sys.stderr)
        return 2
    scenarios = args.scenario or [s for s in SCENARIOS if s in plan.default_scenarios]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    run = Run(plan, stores, out)
    meta = {"command": command, "machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "plan": plan.name, "stores": stores, "scenarios": scenarios}
    broken = False
    t_all = time.monotonic()
    try:
        # The floor first: the claim scenario compares against it.
        order = sorted(scenarios, key=SCENARIOS.index)
        if "claim" in order and "floor" not in order:
            order.insert(0, "floor")
        for name in order:
            t = time.monotonic()
            print(f"bench: {name} …", file=sys.stderr, flush=True)
            try:
                res = RUNNERS[name](run)
            except BenchError as exc:
                broken = True
                run.errors[name] = str(exc)
                print(f"bench: {name} FAILED: {exc}", file=sys.stderr)
                continue
            except Exception as exc:  # noqa: BLE001 - one broken scenario is reported; the others still run
                broken = True
                run.errors[name] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
                continue
            res["seconds"] = round(time.monotonic() - t, 1)
            run.results[name] = res
            _report.write_json(out, name, res)
            if name == "claim":
                _report.plot_claim(out, res)
            if name == "throughput":
                _report.print_table("throughput", res)
                _report.print_table("requests", res)
            elif name in _report.TABLES:
                _report.print_table(name, res)
    finally:
        run.stop()
    meta["seconds"] = round(time.monotonic() - t_all, 1)
    meta["skipped_stores"] = run.skipped
    meta["errors"] = run.errors
    meta["loadavg_at_end"] = round(__import__("os").getloadavg()[0], 2)
    _report.write_json(out, "run", meta)
    if args.markdown:
        from ._markdown import write_markdown

        write_markdown(Path(args.markdown), meta, run.results, out)
    print(json.dumps({"seconds": meta["seconds"], "errors": run.errors, "skipped_stores": run.skipped}), file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
