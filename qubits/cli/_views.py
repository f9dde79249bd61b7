"""Operator views shared by `qubits nodes` and `qubits top`: agents, jobs, and one screen of both."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from qubits import Client, JobStatus, NodeInfo
from qubits._nodes import live_versions as live_versions
from qubits._nodes import node_dict as node_dict
from qubits._nodes import node_state as node_state
from qubits._nodes import skew_note as skew_note
from qubits._records import JobSpec
from qubits._version import __version__

_STATE_STYLE = {"live": "green", "paused": "yellow", "draining": "magenta", "stopped": "dim", "lost": "red"}


def nodes_table(nodes: list[tuple[NodeInfo, float]], *, title: str, show_all: bool = False, width: int = 80) -> Table:
    """One row per agent (live ones, or all with ``show_all``): state, slots, running tasks, version."""
    rows: list[list[Cell]] = []
    for info, age in sorted(nodes, key=lambda n: (node_state(*n) in ("stopped", "lost"), n[0].name)):
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
        rows.append([info.name, info.host, f"[{_STATE_STYLE[state]}]{label}[/]", str(info.slots), Text(running),
                     Text(",".join(info.capabilities)), info.enforcement or "-", info.wake or "-", version, _ago(age)])
    return fitted_table(title, ["node", "host", "state", "slots", "running", "capabilities", "limits", "wake", "version", "last seen"],
                        rows, width=width, fold=("host", "running", "capabilities"))


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


Cell = str | Text


def fitted_table(title: str, headers: list[str], rows: list[list[Cell]], *, width: int, keep: int = 1,
                 fold: tuple[str, ...] = ("name", "error")) -> Table:
    """A table for ``width`` columns whose first ``keep`` columns (ids) are never cut and whose ``fold``
    columns (names, errors) fold first: the others keep their width while the folding ones can give
    way, and fold too only on a terminal too narrow for them."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=0,
                  expand=False)
    cells = [[c if isinstance(c, Text) else Text.from_markup(c) for c in row] for row in rows]
    if cells:  # a column empty in every row says nothing: leave it out (pending tasks have no node, start, exit …)
        shown = [i for i in range(len(headers)) if i < keep or any(r[i].cell_len for r in cells)]
        headers, cells = [headers[i] for i in shown], [[r[i] for i in shown] for r in cells]
    natural = [max([len(h), *(r[i].cell_len for r in cells)]) for i, h in enumerate(headers)]
    folding = [i for i, h in enumerate(headers) if h in fold]
    room = width - sum(w for i, w in enumerate(natural) if i not in folding) - len(headers)  # one space between columns
    least = 6
    share = max(least, room // max(1, len(folding)))
    # Widths set exactly when the ids and the short columns fit at their natural width: only the folding
    # columns give way. On a narrower terminal the ids keep theirs and rich folds the rest.
    fits = room >= sum(min(natural[i], share) for i in folding)
    if fits and room < sum(natural[i] for i in folding):
        spare = room - sum(min(natural[i], share) for i in folding)
        widths = {i: min(natural[i], share) for i in folding}
        for i in sorted(folding, key=lambda i: natural[i]):
            extra = min(spare, natural[i] - widths[i])
            widths[i] += extra
            spare -= extra
    else:
        widths = {i: natural[i] for i in folding}
    for i, header in enumerate(headers):
        if i < keep:
            table.add_column(header, no_wrap=True, width=natural[i])
        elif i in folding:
            table.add_column(header, overflow="fold", width=widths[i] if fits else None)
        else:
            table.add_column(header, overflow="fold", width=natural[i] if fits else None)
    for row in cells:
        table.add_row(*row)
    return table


def elapsed(seconds: float) -> str:
    """A short duration: 0.4s, 42s, 4m05s, 1h02m, 2d03h."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


_JOB_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "pending": "dim", "submitting": "dim"}


def jobs_table(statuses: list[JobStatus], *, width: int, title: str = "jobs", bar: bool = True) -> Table:
    """One row per job, like squeue/sacct: id, state, progress, counts, elapsed, user, name."""
    rows: list[list[Cell]] = []
    for st in statuses:
        c = st.counts
        failed = c.get("failed", 0) + c.get("upstream_failed", 0)
        state = st.state
        progress = (_bar(st.done, st.total) + f" {st.done}/{st.total}") if bar else Text(f"{st.done}/{st.total}")
        rows.append([st.job, f"[{_JOB_STYLE.get(state, '')}]{state}[/]", progress, str(c.get("running", 0)),
                     f"[red]{failed}[/]" if failed else "0", elapsed(st.elapsed), Text(st.user), Text(st.name)])
    return fitted_table(title, ["job", "state", "done", "run", "fail", "elapsed", "user", "name"], rows, width=width,
                        fold=("user", "name"))


def top_view(client: Client, cache: JobsCache, *, jobs: int = 10, width: int = 80) -> Group:
    """One frame of `qubits top`: a header, the recent and unfinished jobs, and the live agents."""
    specs = client.jobs()
    recent = specs[-jobs:] if jobs > 0 else []
    shown = [cache.status(client, s) for s in recent]
    nodes = client.nodes()
    live = [(i, a) for i, a in nodes if node_state(i, a) not in ("stopped", "lost")]
    busy = sum(len(i.running) for i, _ in live)
    slots = sum(i.slots for i, _ in live)
    unfinished = sum(1 for st in shown if not st.finished)
    header = Text(f"qubits top · {client.url.split('?', 1)[0]} · {time.strftime('%H:%M:%S')}\n", style="bold")
    header.append(f"{len(specs)} jobs ({unfinished} unfinished of the last {len(recent)}) · {len(live)} agents live · "
                  f"{busy}/{slots} slots busy", style="")
    parts: list[Any] = [header, jobs_table(shown, width=width), nodes_table(nodes, title="agents")]
    note = skew_note(nodes)
    if note:
        parts.append(Text(note, style="yellow"))
    parts.append(Text("Ctrl-C to quit", style="dim"))
    return Group(*parts)
