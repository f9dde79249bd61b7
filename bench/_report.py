"""Turning results into tables: rich on the terminal, markdown for RESULTS.md, a PNG of claim latency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _f(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def floor_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["store", "request", "n", "p50 ms", "p95 ms", "p99 ms"]
    rows = []
    for r in res["stores"]:
        for kind, s in r["ops"].items():
            rows.append([r["store"], kind, _f(s["n"]), _f(s["p50"], 3), _f(s["p95"], 3), _f(s["p99"], 3)])
    return head, rows


def claim_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["store", "queued", "agents", "claims", "p50 ms", "p95 ms", "p99 ms", "list p50 ms", "p50 / PUT", "asks again",
            "requests/claim", "dups"]
    rows = []
    for c in res["cells"]:
        lat = c["latency_ms"]
        rows.append([c["store"], _f(c["queued"]), _f(c["agents"]), _f(c["claims"]), _f(lat["p50"], 2), _f(lat["p95"], 2),
                     _f(lat["p99"], 2), _f(c["list_ms"]["p50"], 2), _f(c.get("ratio_p50_to_put"), 1),
                     _f(c["retries_after_miss"]), _f(c["requests_total_per_claim"], 2), _f(c["duplicates"])])
    return head, rows


def throughput_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["store", "tasks", "agents x slots", "tasks/s median (min-max)", "requests/task", "by kind", "$ per 1M tasks", "dups"]
    rows = []
    for r in res["runs"]:
        m = r["median_run"]
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in m["requests_per_task_by_kind"].items())
        tps = r["tasks_per_s"]
        rows.append([r["store"], _f(r["tasks"]), f"{r['agents']} x {r['slots']}",
                     f"{_f(tps['median'])} ({_f(tps['min'])}-{_f(tps['max'])})", _f(m["requests_per_task_total"], 2),
                     kinds, _f(m["cost_per_million_tasks_usd"], 2), _f(m["exactly_once"]["duplicates"])])
    return head, rows


def requests_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["store", "agents x slots", "request", "per task"]
    rows = []
    for r in res["runs"]:
        m = r["median_run"]
        for k, v in m["requests_per_task"].items():
            if not k.startswith("412"):
                rows.append([r["store"], f"{r['agents']} x {r['slots']}", k, _f(v, 3)])
        if "moto_log_requests_per_task_total" in m:
            rows.append([r["store"], f"{r['agents']} x {r['slots']}", "(moto's own log: all requests)",
                         _f(m["moto_log_requests_per_task_total"], 2)])
    return head, rows


def idle_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["store", "window s", "requests / agent-hour", "by kind and area (per hour)", "$ / agent-month", "$ / month, fleet of 100"]
    rows = []
    for r in res["stores"]:
        detail = ", ".join(f"{k} {v:g}" for k, v in r["by_kind_area_per_hour"].items())
        rows.append([r["store"], _f(r["window_s"], 0), _f(r["requests_per_agent_hour"], 0), detail,
                     _f(r["cost_per_agent_month_usd"], 3), _f(r["cost_fleet_month_usd"], 2)])
    return head, rows


def wake_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["store", "variant", "agent wakes by", "tries", "idle poll s", "dispatch ms (p50 / p99 / max)", "of which submit ms (p50)",
            "hints / notifications"]
    rows = []
    for r in res["rows"]:
        lat = r["latency_ms"]
        rows.append([r["store"], r["variant"], r["wake"], str(r["tries"]), _f(r["idle_poll_s"] or (0.25 if r["store"] == "local" else 60.0), 2),
                     f"{_f(lat['p50'], 1)} / {_f(lat['p99'], 1)} / {_f(lat['max'], 1)}",
                     _f((r.get("submit_ms") or {}).get("p50"), 1), f"{r['hints_accepted']} / {r['notifications']}"])
    return head, rows


def takeover_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["store", "ttl s", "tries", "taken over", "kill -> new holder s (p50 / max)", "target s (ttl + scan)", "met"]
    rows = []
    for r in res["rows"]:
        s = r["seconds"]
        rows.append([r["store"], _f(r["ttl"]), _f(r["reps"]), _f(r["took_over"]), f"{_f(s['p50'], 2)} / {_f(s['max'], 2)}",
                     _f(r["target_s"], 2), _f(r["within_target"])])
    return head, rows


def memory_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["store", "idle agent MB", "agent running 16 tasks MB", "(its 16 task processes MB)", "submit client",
            "client MB before / after / peak"]
    rows = []
    for r in res["stores"]:
        c = r["submit_client_mb"]
        rows.append([r["store"], _f(r["idle_agent_mb"]), _f(r["busy_agent_mb"]), _f(r["busy_task_processes_mb"]),
                     f"{_f(r['submit_tasks'])} tasks", f"{_f(c['rss_before_mb'])} / {_f(c['rss_after_mb'])} / {_f(c['peak_mb'])}"])
    return head, rows


def peers_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["system", "store", "task", "tasks", "workers", "tasks/s median (min-max)", "qubits / peer (tasks/s)",
            "dispatch p50 / p99 ms", "qubits / peer (dispatch p50)", "requests/task", "kill -9 mid-task"]
    rows = []
    for r in res["rows"]:
        tps = r.get("tasks_per_s") or {}
        rows.append([r["system"], r["store"], r["task"], _f(r.get("tasks")), r.get("workers", "-"),
                     f"{_f(tps.get('median'))} ({_f(tps.get('min'))}-{_f(tps.get('max'))})" if tps else r.get("error", "-"),
                     _f(r.get("qubits_ratio"), 2), f"{_f((r.get('dispatch_ms') or {}).get('p50'), 1)} / {_f((r.get('dispatch_ms') or {}).get('p99'), 1)}",
                     _f(r.get("dispatch_p50_ratio"), 2), _f(r.get("requests_per_task"), 2), r.get("kill9", "-")])
    return head, rows


def plan_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["targets", "store", "no-op make s (median, all; CPU)", "after a comment edit s (median, all; CPU)", "seeding s", "load avg"]
    cells = [f"{r['median']} ({', '.join(map(str, r['all']))}; CPU {r['cpu_median']})" for r in (res["noop_make_s"], res["after_comment_edit_s"])]
    return head, [[_f(res["targets"]), res["store"], *cells, _f(res["seed_s"]), _f(res.get("loadavg"), 2)]]


def dashboard_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["store", "jobs", "tabs", "window s", "ticks", "requests", "requests/min", "by kind"]
    rows = [[r["store"], r["jobs"], r["viewers"], _f(r["window_s"], 0), r["ticks"], r["requests"], _f(r["per_minute"]),
             ", ".join(f"{k} {v}" for k, v in sorted(r["by_kind"].items()))] for r in res["rows"]]
    return head, rows


TABLES = {
    "floor": ("Floor: one request of each kind", floor_rows),
    "claim": ("Claim latency (ask for work -> hold a lease)", claim_rows),
    "throughput": ("Throughput with real agent processes (no-op shell task)", throughput_rows),
    "requests": ("Requests per task by kind and key area (median run)", requests_rows),
    "idle": ("Idle agents: requests and cost", idle_rows),
    "wake": ("Dispatch into an idle agent, by what wakes it", wake_rows),
    "takeover": ("Takeover after kill -9 of the holder", takeover_rows),
    "memory": ("Resident memory", memory_rows),
    "peers": ("Peers, same workload, same machine, same run", peers_rows),
    "plan": ("Planning a no-op make (Qfile targets all made; local directory)", plan_rows),
    "dashboard": ("An open dashboard (jobs page): store requests, 1 and 5 tabs", dashboard_rows),
}


def print_table(name: str, res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    title, fn = TABLES[name]
    head, rows = fn(res)
    table = Table(title=title, title_justify="left")
    for h in head:
        table.add_column(h, overflow="fold")
    for row in rows:
        table.add_row(*(str(c) for c in row))  # rich renders strings, not numbers
    Console(stderr=True, width=200).print(table)


def markdown_table(name: str, res: dict[str, Any]) -> str:
    _title, fn = TABLES[name]
    head, rows = fn(res)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(out: Path, name: str, res: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(res, indent=1, sort_keys=True, default=str))
    return path


def plot_claim(out: Path, res: dict[str, Any]) -> Path | None:
    """claim latency p50 and p99 against agents, one line per store and queue size (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for c in res["cells"]:
        series.setdefault((c["store"], c["queued"]), []).append(c)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, q in zip(axes, ("p50", "p99"), strict=True):
        for (store, queued), cells in sorted(series.items()):
            cells = sorted(cells, key=lambda c: c["agents"])
            ax.plot([c["agents"] for c in cells], [c["latency_ms"][q] for c in cells], marker="o", label=f"{store}, {queued:,} queued")
        for store, put in res.get("put_p50_ms", {}).items():
            ax.axhline(put, linestyle=":", linewidth=0.8, color="grey")
            ax.text(1, put, f" {store} PUT p50", fontsize=7, color="grey", va="bottom")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("concurrent agents")
        ax.set_title(f"claim latency {q}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms (ask for work -> hold a lease)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = out / "claim.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
