"""A picture of a Qfile's graph: the targets as far as the client can plan them, grown with what a job
found while it ran (dependencies decided on the nodes), each target coloured by how it stands.

``dot_text`` writes Graphviz DOT; ``dag_html`` a self-contained page (inline SVG, no scripts, nothing
fetched), laid out in columns by depth (a target one column right of its deepest dependency).
"""

from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import jobspaces

from .. import _layout as layout
from .._client import Client, Job, connect
from .._defaults import GRAPH_REFRESH
from .._records import Lease, LeaseState
from ._graph import Node
from ._tasks import ROOT, target_of
from ._timeline import COLOURS

STATES = {**COLOURS, "planned": "#c9ced6", "reused": "#9fd8ad", "waiting": "#9bb7d4"}
"""Colour of each state a target can be in (planned: not run by the job drawn; reused: made by an
earlier job, by its identity)."""


@dataclass
class Picture:
    """Targets (name -> state) and edges (dependency, dependent)."""

    states: dict[str, str] = field(default_factory=dict)
    edges: set[tuple[str, str]] = field(default_factory=set)
    dynamic: set[str] = field(default_factory=set)
    """Targets whose dependencies are decided on the node (the plan knows only part of them)."""
    title: str = ""

    def add_plan(self, nodes: list[Node]) -> None:
        for n in nodes:
            self.states.setdefault(n.target, "planned")
            self.edges.update((d, n.target) for d in n.deps)
            if n.dynamic:
                self.dynamic.add(n.target)

    def add_job(self, job: Job) -> None:
        """What ``job`` found and how its targets stand: wait edges (every dependency a target asked
        for, static or found at run time), done records, and leases of what is not decided."""
        js = jobspaces.SyncJobspace(job.client.aio)
        spec = job.spec()
        prefix = layout.all_waits_prefix(job.id)
        for meta in js.list(prefix):
            dep, _, waiter = meta.key[len(prefix) :].partition("/")
            if waiter == ROOT or "/" in waiter or dep.startswith("~x~"):
                continue
            a, b = target_of(dep)[0], target_of(waiter)[0]
            self.edges.add((a, b))
            self.states.setdefault(a, "planned")
            self.states.setdefault(b, "planned")
        for t in spec.config.get("targets") or []:
            self.states.setdefault(str(t), "planned")
        for tid, done in job.results().items():
            if tid != ROOT:
                self.states[target_of(tid)[0]] = done.outcome
        for meta in js.list(layout.lease_prefix(job.id)):
            tid = meta.key.rsplit("/", 1)[1]
            name = target_of(tid)[0]
            if tid == ROOT or self.states.get(name) not in (None, "planned"):
                continue
            try:
                lease = Lease.from_json(js.get(meta.key)[0], meta.key)
            except jobspaces.NotFound:
                continue
            self.states[name] = {LeaseState.PARKED: "waiting", LeaseState.HELD: "running"}.get(lease.state, "planned")
        fresh = spec.config.get("fresh") or {}
        for name in fresh:
            if self.states.get(name) in (None, "planned"):
                self.states[name] = "reused"
        self.title = f"job {job.id}: {spec.name}"


def _columns(p: Picture) -> dict[str, int]:
    deps: dict[str, set[str]] = {n: set() for n in p.states}
    for a, b in p.edges:
        deps.setdefault(b, set()).add(a)
        deps.setdefault(a, set())
    col: dict[str, int] = {}

    def depth(n: str, path: frozenset[str]) -> int:
        if n in col:
            return col[n]
        if n in path:
            return 0  # a cycle (the job failed on it): draw it anyway
        col[n] = 1 + max((depth(d, path | {n}) for d in deps[n]), default=-1)
        return col[n]

    for n in sorted(deps):
        depth(n, frozenset())
    return col


def dot_text(p: Picture) -> str:
    """Graphviz DOT of the picture (``dot -Tsvg``)."""
    lines = ["digraph qubits {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontname="sans-serif"];']
    for name, state in sorted(p.states.items()):
        label = name + (" +" if name in p.dynamic else "")
        lines.append(f'  "{_q(name)}" [label="{_q(label)}", fillcolor="{STATES.get(state, "#777")}", tooltip="{_q(state)}"];')
    for a, b in sorted(p.edges):
        lines.append(f'  "{_q(a)}" -> "{_q(b)}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def dag_svg(p: Picture) -> str:
    col = _columns(p)
    by_col: dict[int, list[str]] = {}
    for name in sorted(p.states):
        by_col.setdefault(col[name], []).append(name)
    box_w, box_h, gap_x, gap_y, pad = 170, 24, 60, 10, 10
    pos: dict[str, tuple[float, float]] = {}
    deps_of: dict[str, list[str]] = {}
    for a, b in p.edges:
        deps_of.setdefault(b, []).append(a)
    for c in sorted(by_col):
        names = by_col[c]
        if c > 0:  # under their dependencies, roughly: fewer crossings
            names.sort(key=lambda n: (sum(pos[d][1] for d in deps_of.get(n, []) if d in pos) / max(1, len(deps_of.get(n, []))), n))
        for i, name in enumerate(names):
            pos[name] = (pad + c * (box_w + gap_x), pad + i * (box_h + gap_y))
    width = int(max((x for x, _ in pos.values()), default=0) + box_w + 2 * pad)
    height = int(max((y for _, y in pos.values()), default=0) + box_h + 2 * pad)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="dag">']
    for a, b in sorted(p.edges):
        if a not in pos or b not in pos:
            continue
        (x1, y1), (x2, y2) = pos[a], pos[b]
        sx, sy, ex, ey = x1 + box_w, y1 + box_h / 2, x2, y2 + box_h / 2
        mid = (sx + ex) / 2
        parts.append(f'<path d="M{sx:.1f},{sy:.1f} C{mid:.1f},{sy:.1f} {mid:.1f},{ey:.1f} {ex:.1f},{ey:.1f}" class="edge"/>')
    for name, (x, y) in sorted(pos.items()):
        state = p.states[name]
        label = name + (" +" if name in p.dynamic else "")
        parts.append(
            f'<g class="node {html.escape(state)}"><title>{html.escape(name)} · {html.escape(state)}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{box_w}" height="{box_h}" rx="5" fill="{STATES.get(state, "#777")}"/>'
            f'<text x="{x + 8:.1f}" y="{y + 16:.1f}">{html.escape(label[:24])}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


_CSS = """
body { font: 13px system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; } .meta { color: #555; margin-bottom: 10px; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 4px; vertical-align: -2px; }
svg.dag .edge { fill: none; stroke: #8a94a3; stroke-width: 1.2; }
svg.dag text { font-size: 11px; fill: #111; }
"""


def write_page(path: Path, job: Job, *, refresh: float | None = None) -> None:
    """Write the page of ``job``'s graph to ``path`` (atomically: a browser reloading it never sees half
    a page); ``refresh``: seconds after which the browser reloads it (while the job runs)."""
    picture = Picture()
    picture.add_job(job)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dag_html(picture, refresh=refresh), encoding="utf-8")
    os.replace(tmp, path)


class LivePage:
    """``make --graph``: the page of a job's graph, rewritten every GRAPH_REFRESH seconds while the
    job runs (it grows as dependencies are found, and reloads itself), and once more at the end."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url
        self._client: Client | None = None
        self._last = 0.0

    def update(self, job: str, finished: bool) -> None:
        if not finished and time.monotonic() - self._last < GRAPH_REFRESH:
            return
        self._client = self._client or connect(self.url)
        write_page(self.path, Job(self._client, job), refresh=None if finished else GRAPH_REFRESH)
        self._last = time.monotonic()


def dag_html(p: Picture, *, links: str = "", refresh: float | None = None) -> str:
    """The self-contained page of the picture."""
    counts: dict[str, int] = {}
    for s in p.states.values():
        counts[s] = counts.get(s, 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    legend = "".join(f'<span><i style="background:{c}"></i>{k}</span>' for k, c in STATES.items() if k in counts)
    note = " A target marked + decides its dependencies on the node: the picture grows as the job finds them." if p.dynamic else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{f'<meta http-equiv="refresh" content="{refresh:g}">' if refresh else ""}
<title>qubits graph {html.escape(p.title)}</title>
<style>{_CSS}</style></head><body>
<h1>Graph <small>{html.escape(p.title)}</small></h1>
<div class="meta">{len(p.states)} targets ({html.escape(summary)}), {len(p.edges)} dependencies.{note} {links}</div>
<div class="legend">{legend}</div>
{dag_svg(p)}
</body></html>
"""
