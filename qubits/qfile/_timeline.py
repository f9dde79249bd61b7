"""A picture of a job: a self-contained HTML page (inline SVG and CSS, no scripts, nothing fetched).

Two charts: one row per node (agent) with one bar per attempt it ran, and one row per task with
each of its attempts. Colours tell how an attempt ended: succeeded, failed, lost (its agent stopped
renewing), parked (waited for dependencies found at run time), released (declined or drained), running.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

import jobspaces

from .. import _layout as layout
from .._client import Job
from .._records import Lease, LeaseState
from ._tasks import display_name

COLOURS = {
    "succeeded": "#2e9e44",
    "failed": "#d63a3a",
    "lost": "#f08c00",
    "parked": "#9bb7d4",
    "released": "#9c5fd1",
    "running": "#17a2b8",
    "cancelled": "#e0c341",
    "upstream_failed": "#8a1f1f",
}


@dataclass(frozen=True)
class Bar:
    """One attempt of one task."""

    task: str
    name: str
    node: str
    attempt: int
    outcome: str
    start: float
    end: float
    error: str | None = None
    final: bool = False
    """The attempt that decided the task (else an earlier one: failed and retried, lost, parked…)."""

    @property
    def ran(self) -> bool:
        """Whether the node ran something: an upstream failure or a cancel is decided without running."""
        return self.outcome not in ("upstream_failed", "cancelled")


def _bars_of(task: str, history: list[dict[str, Any]], final: dict[str, Any] | None) -> list[Bar]:
    out = []
    entries = [(h, False) for h in history] + ([(final, True)] if final else [])
    for h, is_final in entries:
        start = float(h.get("started") or 0.0)
        end = max(start, float(h.get("finished") or 0.0) or start)
        if not h.get("holder") or not end:
            continue
        outcome = str(h.get("outcome"))
        if outcome in ("upstream_failed", "cancelled"):
            start = end  # decided, not run: a mark at the moment, not a bar
        out.append(Bar(task, display_name(task), str(h["holder"]), int(h.get("attempt") or 0), outcome, start, end, h.get("error"), is_final))
    return out


def collect(job: Job) -> tuple[list[Bar], dict[str, str]]:
    """Every attempt of every task of ``job`` (decided or not), and the outcome of each decided task."""
    bars: list[Bar] = []
    outcomes: dict[str, str] = {}
    for tid, done in job.results().items():
        outcomes[tid] = done.outcome
        final = {"attempt": done.attempt, "holder": done.holder, "outcome": done.outcome, "error": done.error,
                 "started": done.started, "finished": done.finished}
        bars += _bars_of(tid, done.attempts, final)
    now = time.time()
    for meta in job.client.aio_list(layout.lease_prefix(job.id)):
        tid = meta.key.rsplit("/", 1)[1]
        if tid in outcomes:
            continue
        try:
            data, _ = jobspaces.run_sync(job.client.aio.get(meta.key))
        except jobspaces.NotFound:
            continue
        lease = Lease.from_json(data, meta.key)
        current = None
        if lease.state is LeaseState.HELD:
            current = {"attempt": lease.attempt, "holder": lease.holder, "outcome": "running", "started": lease.started, "finished": now}
        bars += _bars_of(tid, lease.history, current)
    return bars, outcomes


def _lanes(bars: list[Bar]) -> list[list[Bar]]:
    """Pack overlapping bars of one row into lanes (an agent with several slots)."""
    lanes: list[list[Bar]] = []
    for b in sorted(bars, key=lambda b: (b.start, b.end)):
        for lane in lanes:
            if lane[-1].end <= b.start:
                lane.append(b)
                break
        else:
            lanes.append([b])
    return lanes


def _chart(title: str, rows: list[tuple[str, list[Bar]]], t0: float, t1: float) -> str:
    label_w, plot_w, lane_h, gap = 260, 900, 14, 6
    span = max(t1 - t0, 1e-3)
    laid = [(label, _lanes(bars)) for label, bars in rows]
    height = 30 + sum(len(lanes) * lane_h + gap for _, lanes in laid) + 10
    parts = [f'<h2>{html.escape(title)}</h2>', f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 20}" height="{height}">']
    for i in range(6):  # time axis
        x = label_w + plot_w * i / 5
        parts.append(f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{height - 5}" class="grid"/>')
        parts.append(f'<text x="{x:.1f}" y="14" class="axis">{span * i / 5:.1f}s</text>')
    y = 30
    for label, lanes in laid:
        row_h = len(lanes) * lane_h
        parts.append(f'<text x="{label_w - 8}" y="{y + row_h / 2 + 4:.1f}" class="label">{html.escape(label[:40])}</text>')
        parts.append(f'<line x1="{label_w}" y1="{y + row_h + gap / 2:.1f}" x2="{label_w + plot_w}" y2="{y + row_h + gap / 2:.1f}" class="row"/>')
        for j, lane in enumerate(lanes):
            for b in lane:
                x = label_w + plot_w * (b.start - t0) / span
                w = max(4.0, plot_w * (b.end - b.start) / span)
                colour = COLOURS.get(b.outcome, "#777")
                tip = f"{b.name} · attempt {b.attempt} · {b.outcome} · {b.node} · {b.end - b.start:.2f}s" + (f" · {b.error}" if b.error else "")
                parts.append(
                    f'<rect x="{x:.1f}" y="{y + j * lane_h + 1}" width="{w:.1f}" height="{lane_h - 2}" rx="2" '
                    f'fill="{colour}" class="bar {html.escape(b.outcome)}"><title>{html.escape(tip)}</title></rect>'
                )
        y += row_h + gap
    parts.append("</svg>")
    return "\n".join(parts)


_CSS = """
body { font: 13px system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 24px 0 6px; }
.meta { color: #555; margin-bottom: 10px; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 4px; vertical-align: -2px; }
svg .label { text-anchor: end; font-size: 11px; fill: #333; }
svg .axis { text-anchor: middle; font-size: 10px; fill: #777; }
svg .grid { stroke: #eee; } svg .row { stroke: #f4f4f4; }
table { border-collapse: collapse; margin-top: 8px; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
td.err { color: #a00; max-width: 700px; }
"""


def timeline_html(job: Job, *, graph: str = "") -> str:
    """The page for ``job``: header, legend, the chart by node, the chart by task, failures; ``graph``:
    the address of the page of its graph, linked from the header."""
    spec = job.spec()
    bars, outcomes = collect(job)
    t0 = min((b.start for b in bars), default=spec.created or time.time())
    t1 = max((b.end for b in bars), default=t0 + 1)
    by_node: dict[str, list[Bar]] = {}
    by_task: dict[str, list[Bar]] = {}
    for b in sorted(bars, key=lambda b: b.start):
        if b.ran:
            by_node.setdefault(b.node, []).append(b)
        by_task.setdefault(b.task, []).append(b)
    counts: dict[str, int] = {}
    for o in outcomes.values():
        counts[o] = counts.get(o, 0) + 1
    retried = sum(1 for bs in by_task.values() if any(b.outcome in ("failed", "lost") and not b.final for b in bs))
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing decided yet"
    legend = "".join(f'<span><i style="background:{c}"></i>{k}</span>' for k, c in COLOURS.items())
    failures = [
        (display_name(b.task), b.attempt, b.node, b.outcome, b.error or "")
        for b in bars if b.outcome in ("failed", "lost", "upstream_failed")
    ]
    never_ran = [(display_name(t), 0, "", o, "") for t, o in sorted(outcomes.items()) if t not in by_task and o != "succeeded"]
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{a or ''}</td><td>{html.escape(h)}</td><td>{html.escape(o)}</td>"
        f'<td class="err">{html.escape(e[:300])}</td></tr>'
        for n, a, h, o, e in failures + never_ran
    )
    table = (
        "<h2>Failures and tasks that never ran</h2><table><tr><th>task</th><th>attempt</th><th>node</th>"
        f"<th>outcome</th><th>error</th></tr>{rows}</table>" if rows else ""
    )
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0))
    link = f' · <a href="{html.escape(graph)}" class="graph">its graph</a>' if graph else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>qubits timeline {html.escape(job.id)}</title>
<style>{_CSS}</style></head><body>
<h1>Job {html.escape(job.id)} <small>{html.escape(spec.name)}</small></h1>
<div class="meta">{len(outcomes)} tasks decided ({html.escape(summary)}); {len(bars)} attempts on {len(by_node)} node(s);
{retried} task(s) retried; started {stamp}, spans {t1 - t0:.1f}s{link}</div>
<div class="legend">{legend}</div>
{_chart("By node: one row per agent, one bar per attempt", sorted(by_node.items()), t0, t1)}
{_chart("By task: one row per task, one bar per attempt", [(bs[0].name, bs) for bs in by_task.values()], t0, t1)}
{table}
</body></html>
"""
