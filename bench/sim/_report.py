"""Tables (rich), a plot per metric against agents (PNG), and bench/SIMULATED.md for the simulated scenario."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

HEAD = ["store", "tasks", "agents", "claim path", "window s", "claim p50 ms", "claim p99 ms", "call p99 ms",
        "conflicts/claim", "412/claim", "requests/task", "503/429", "per task", "hottest partition", "tasks/s", "dups"]


def _f(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _short(partition: str) -> str:
    return partition.replace("20260101-000000-000000", "{job}") or "(root)"


def rows(cells: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for c in cells:
        hot = next(iter(c["throttled_by_partition"]), "")
        window = f"{_f(c['window_s'], 1)}{'' if c['sampled'] else ' (all)'}"
        out.append([c["profile"].upper(), _f(c["tasks"]), _f(c["agents"]), c["variant"], window,
                    _f(c["claim_ms"]["p50"], 0), _f(c["claim_ms"]["p99"], 0), _f(c["claim_call_ms"]["p99"], 0),
                    _f(c["conflicts_per_claim"], 3), _f(c["lease_412_per_claim"], 2), _f(c["requests_per_task"], 2),
                    _f(c["throttled_total"]), _f(c["throttled_per_task"], 2), _short(hot), _f(c["tasks_per_s"], 0),
                    _f(c["duplicate_commits"])])
    return out


def print_tables(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, width=230)
    if not res["cells"]:
        console.print("(no cells in this plan)")
    table = Table(title="SIMULATED (virtual time): real agents on a simulated store; no-op tasks", title_justify="left")
    for h in HEAD:
        table.add_column(h, overflow="fold")
    for row in rows(res["cells"]):
        table.add_row(*row)
    console.print(table)
    for cal in res.get("calibration", []):
        console.print(f"calibration {cal['profile']}: {cal['clients']} clients CAS one object: {cal['ops_per_s']} op/s, "
                      f"op p50 {cal['op_ms']['p50']:.0f} ms")
    rt = res.get("realtime_check")
    if rt:
        for line in realtime_lines(rt):
            console.print(line)


def realtime_lines(rt: dict[str, Any]) -> list[str]:
    def pick(c: dict[str, Any]) -> str:
        return (f"claim p50 {c['claim_ms']['p50']:.0f} ms, p99 {c['claim_ms']['p99']:.0f} ms, call p50 {c['claim_call_ms']['p50']:.0f} ms, "
                f"requests/task {c['requests_per_task']}, {c['tasks_per_s']:.0f} tasks/s, {c['claims']} claims")
    out = [f"virtual, seed {i + 1}: {pick(c)}" for i, c in enumerate(rt["virtual"])]
    out.append(f"real time, seed 1: {pick(rt['real'])}")
    return out


def agreement(rt: dict[str, Any]) -> dict[str, Any]:
    """Real time against the mean of the virtual runs, metric by metric (relative difference)."""
    real = rt["real"]
    out = {}
    metrics: tuple[tuple[str, Callable[[dict[str, Any]], float]], ...] = (("claim p50", lambda c: c["claim_ms"]["p50"]), ("claim p99", lambda c: c["claim_ms"]["p99"]),
                      ("call p50", lambda c: c["claim_call_ms"]["p50"]), ("requests/task", lambda c: c["requests_per_task"]),
                      ("tasks/s", lambda c: c["tasks_per_s"]))
    for name, get in metrics:
        virt = [get(c) for c in rt["virtual"]]
        mean = sum(virt) / len(virt)
        out[name] = {"virtual_mean": round(mean, 2), "virtual_min": round(min(virt), 2), "virtual_max": round(max(virt), 2),
                     "real": round(get(real), 2), "diff": round((get(real) - mean) / mean, 3) if mean else None}
    return out


METRICS: list[tuple[str, Callable[[dict[str, Any]], float], bool]] = [
    ("claim p50 ms", lambda c: c["claim_ms"]["p50"], True),
    ("claim p99 ms", lambda c: c["claim_ms"]["p99"], True),
    ("conflicts per claim", lambda c: c["conflicts_per_claim"], False),
    ("requests per task", lambda c: c["requests_per_task"], False),
    ("503/429 per task", lambda c: c["throttled_per_task"], False),
    ("tasks/s", lambda c: c["tasks_per_s"], True),
]


def plot(out: Path, res: dict[str, Any]) -> Path | None:
    """One panel per metric against agents; a line per store, queue size and claim path."""
    if not res["cells"]:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for c in res["cells"]:
        series.setdefault((c["profile"], c["tasks"], c["variant"]), []).append(c)
    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    styles = {"before": ":", "current": "-", "sharded": "--"}
    colors: dict[tuple[str, int], str] = {}
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for ax, (title, get, logy) in zip(axes.flat, METRICS, strict=True):
        for (profile, tasks, variant), cells in sorted(series.items()):
            cells = sorted(cells, key=lambda c: c["agents"])
            color = colors.setdefault((profile, tasks), palette[len(colors) % len(palette)])
            ys = [get(c) for c in cells]
            ax.plot([c["agents"] for c in cells], [y if y else (1e-3 if logy else 0) for y in ys], marker="o",
                    linestyle=styles.get(variant, "-"), color=color, label=f"{profile.upper()} {tasks:,} tasks, {variant}")
        if title.startswith("claim p99"):
            ax.axhline(2 * res["s3_put_p99_ms"], color="grey", linewidth=0.8, linestyle="-.")
            ax.text(10, 2 * res["s3_put_p99_ms"], " target: 2 x S3 PUT p99", fontsize=7, color="grey", va="bottom")
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("agents (4 slots each)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=6)
    fig.suptitle("SIMULATED: qubits' real claim path on a simulated store (virtual time, no-op tasks)")
    fig.tight_layout()
    path = out / "sim.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def markdown_table(cells: list[dict[str, Any]]) -> str:
    if not cells:
        return "(this plan has no cells: only the checks below)"
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "|".join("---" for _ in HEAD) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(cells)]
    return "\n".join(lines)


def write_json(out: Path, res: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sim.json"
    path.write_text(json.dumps(res, indent=1, sort_keys=True, default=str))
    return path
