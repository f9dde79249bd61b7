"""Operator views shared by `qubits nodes` and `qubits top`: agents, jobs, and one screen of both."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from qubits import Client, JobStatus, NodeInfo, __version__
from qubits._records import JobSpec


def node_state(info: NodeInfo, age: float) -> str:
    """live, paused, draining, stopped or lost."""
    if info.stopped:
        return "stopped"
    if age >= info.lost_after():
        return "lost"
    if info.paused:
        return "paused"
    return "draining" if info.draining else "live"


def live_versions(nodes: list[tuple[NodeInfo, float]]) -> Counter[str]:
    return Counter(info.version for info, age in nodes if node_state(info, age) not in ("stopped", "lost"))


def skew_note(nodes: list[tuple[NodeInfo, float]]) -> str | None:
    """A line naming the versions when live agents (or this client) run different ones."""
    versions = live_versions(nodes)
    if not versions or (len(versions) == 1 and __version__ in versions):
        return None
    shown = ", ".join(f"{v} on {n}" for v, n in versions.most_common())
    return f"version skew: {shown} agent(s); this client runs {__version__}"


def node_dict(info: NodeInfo, age: float) -> dict[str, Any]:
    return {**info.to_dict(), "state": node_state(info, age), "last_seen_s": round(age, 1),
            "live": node_state(info, age) not in ("stopped", "lost"), "skew": info.version != __version__}


_STATE_STYLE = {"live": "green", "paused": "yellow", "draining": "magenta", "stopped": "dim", "lost": "red"}


def nodes_table(nodes: list[tuple[NodeInfo, float]], *, title: str, show_all: bool = False) -> Table:
    """One row per agent (live ones, or all with ``show_all``): state, slots, running tasks, version."""
    table = Table(title=title, title_justify="left", expand=False)
    for col in ("node", "host", "state", "slots", "running", "capabilities", "wake", "version", "last seen"):
        table.add_column(col, overflow="fold")
    rows = sorted(nodes, key=lambda n: (node_state(*n) in ("stopped", "lost"), n[0].name))
    for info, age in rows:
        state = node_state(info, age)
        if not show_all and state in ("stopped", "lost"):
            continue
        label = state
        if info.paused and info.paused_until:
            label += " until " + time.strftime("%H:%M", time.localtime(info.paused_until))
        elif info.paused and info.paused_reason == "in use":
            label += " (machine in use; until idle)"
        running = f"{len(info.running)}/{info.slots}"
        if info.running:
            names = ", ".join(r.split("/", 1)[-1] for r in info.running[:3])
            running += f" {names}" + (" …" if len(info.running) > 3 else "")
        version = info.version if info.version == __version__ else f"[yellow]{info.version} (skew)[/]"
        table.add_row(info.name, info.host, f"[{_STATE_STYLE[state]}]{label}[/]", str(info.slots), running,
                      ",".join(info.capabilities), info.wake or "-", version, _ago(age))
    return table


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


@dataclass
class JobsCache:
    """Statuses of finished jobs do not change: read them once."""

    finished: dict[str, JobStatus] = field(default_factory=dict)

    def status(self, client: Client, spec: JobSpec) -> JobStatus:
        cached = self.finished.get(spec.id)
        if cached is not None:
            return cached
        status = client.job(spec.id).status(rows=0)
        if status.finished:
            self.finished[spec.id] = status
        return status


def _bar(done: int, total: int, width: int = 10) -> Text:
    filled = int(width * done / total) if total else width
    return Text("█" * filled, style="green") + Text("░" * (width - filled), style="dim")


def jobs_table(rows: list[tuple[JobSpec, JobStatus]]) -> Table:
    table = Table(title="jobs", title_justify="left", expand=False)
    for col in ("job", "name", "done", "run", "fail", "pend", "age"):
        table.add_column(col, no_wrap=col != "name", overflow="ellipsis" if col == "name" else "fold", min_width=8 if col == "name" else None)
    now = time.time()
    for spec, st in rows:
        c = st.counts
        failed = c.get("failed", 0) + c.get("upstream_failed", 0)
        state_style = "green" if st.ok else ("red" if failed else ("cyan" if not st.finished else "yellow"))
        table.add_row(f"[{state_style}]{spec.id}[/]", spec.name[:40], _bar(st.done, st.total) + f" {st.done}/{st.total}",
                      str(c.get("running", 0)), f"[red]{failed}[/]" if failed else "0", str(c.get("pending", 0)),
                      _ago(max(0.0, now - spec.created)).removesuffix(" ago") if spec.created else "")
    return table


def top_view(client: Client, cache: JobsCache, *, jobs: int = 10) -> Group:
    """One frame of `qubits top`: a header, the recent and unfinished jobs, and the live agents."""
    specs = client.jobs()
    recent = specs[-jobs:] if jobs > 0 else []
    shown = [(s, cache.status(client, s)) for s in recent]
    nodes = client.nodes()
    live = [(i, a) for i, a in nodes if node_state(i, a) not in ("stopped", "lost")]
    busy = sum(len(i.running) for i, _ in live)
    slots = sum(i.slots for i, _ in live)
    unfinished = sum(1 for _, st in shown if not st.finished)
    header = Text(f"qubits top · {client.url.split('?', 1)[0]} · {time.strftime('%H:%M:%S')}\n", style="bold")
    header.append(f"{len(specs)} jobs ({unfinished} unfinished of the last {len(recent)}) · {len(live)} agents live · "
                  f"{busy}/{slots} slots busy", style="")
    parts: list[Any] = [header, jobs_table(shown), nodes_table(nodes, title="agents")]
    note = skew_note(nodes)
    if note:
        parts.append(Text(note, style="yellow"))
    parts.append(Text("Ctrl-C to quit", style="dim"))
    return Group(*parts)
