"""What each topic of the dashboard shows, read through the client API: plain dicts, ready for JSON.

Topics: ``jobs`` (every job with its counts, and the agents in one line), ``nodes``, ``job/ID`` (a job's
tasks: state, attempts, timings, node, exit code), ``dag/ID`` (tasks and dependency edges, the ones
found at run time included), ``log/ID/TASK`` (stdout and stderr of each attempt), ``timeline/ID``.
Nothing here writes to the jobspace, and nothing carries the jobspace URL's query or credentials.
"""

from __future__ import annotations

import urllib.parse
from collections import OrderedDict
from typing import Any

from jobspaces import NotFound, run_sync

from .. import _layout as layout
from .._client import Client, JobStatus, TaskState
from .._logs import BOTH, STREAMS, flushes, in_order, render
from .._records import JobSpec, Lease, NodeInfo, Outcome, TaskSpec
from ..errors import NotFoundError
from ._hub import Reader

ROWS = 500
"""A job with at most this many tasks shows a row per task; a bigger one its unfinished and
unsuccessful tasks only (what `qubits status` does), so a page stays light."""
JOBS_SHOWN = 50
"""The newest jobs the jobs page lists."""
DAG_NODES = 400
"""The most tasks the DAG page draws (a bigger job shows its first ones and says so)."""
LOG_TAIL = 256 * 1024
"""Bytes of each output stream of an attempt the log page shows (the end of it)."""
LOG_PARTS_KEPT = 2000
"""Log parts a log topic keeps in memory (parts never change once written: each is read once)."""


def public_url(url: str) -> str:
    """The jobspace URL as a page may show it: no query (endpoints, keys) and no user or password."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Tick:
    """What the readers of one tick share: each job's status and the agents are read once per tick.
    Statuses of finished jobs never change and are kept across ticks (``finished``)."""

    def __init__(self, client: Client, finished: dict[tuple[str, bool], JobStatus],
                 starts: dict[tuple[str, str, int], float] | None = None) -> None:
        self.client = client
        self.finished = finished
        self.starts = {} if starts is None else starts
        """When each running attempt started (job, task, attempt): read once from its lease."""
        self._status: dict[tuple[str, bool], JobStatus] = {}
        self._tasks: dict[str, dict[str, tuple[str, TaskSpec]]] = {}
        self._nodes: list[tuple[NodeInfo, float]] | None = None

    def status(self, job: str, *, rows: bool = True) -> JobStatus:
        """The job's status, with its task rows or (cheaper: no listing of its tasks) counts only."""
        for key in [(job, True)] + ([] if rows else [(job, False)]):
            st = self.finished.get(key) or self._status.get(key)
            if st is not None:
                return st
        st = self.client.job(job).status(rows=ROWS if rows else 0)
        self._status[(job, rows)] = st
        if st.finished:
            self.finished[(job, rows)] = st
        return st

    def tasks(self, job: str) -> dict[str, tuple[str, TaskSpec]]:
        if job not in self._tasks:
            self._tasks[job] = self.client.job(job).tasks()
        return self._tasks[job]

    def started(self, job: str, task: str, attempt: int) -> float | None:
        """When a running attempt started (its lease says; one read per attempt, then remembered)."""
        key = (job, task, attempt)
        if key not in self.starts:
            try:
                data, _ = run_sync(self.client.aio.get(layout.lease(job, task)))
            except NotFound:
                return None
            lease = Lease.from_json(data, layout.lease(job, task))
            if lease.attempt != attempt or not lease.started:
                return None
            self.starts[key] = lease.started
        return self.starts[key]

    def nodes(self) -> list[tuple[NodeInfo, float]]:
        if self._nodes is None:
            self._nodes = self.client.nodes()
        return self._nodes


def job_state(st: JobStatus) -> str:
    """One word for a job: succeeded, failed, cancelled, running or pending."""
    c = st.counts
    if st.finished:
        if st.ok:
            return "succeeded"
        return "cancelled" if c.get(Outcome.CANCELLED.value) and not c.get(Outcome.FAILED.value) else "failed"
    return "running" if c.get("running") else "pending"


def _job_row(spec: JobSpec, st: JobStatus) -> dict[str, Any]:
    c = st.counts
    return {"id": spec.id, "name": spec.name, "kind": spec.kind, "created": spec.created, "state": job_state(st),
            "total": st.total, "done": st.done, "succeeded": c.get("succeeded", 0), "running": c.get("running", 0),
            "failed": c.get("failed", 0) + c.get("upstream_failed", 0), "cancelled": c.get("cancelled", 0),
            "pending": c.get("pending", 0), "counts": c}


def read_jobs(tick: Tick) -> dict[str, Any]:
    """The jobs page: the newest jobs, newest first, and the agents in one line."""
    from .._nodes import node_state

    specs = tick.client.jobs()[-JOBS_SHOWN:]
    rows = [_job_row(spec, tick.status(spec.id, rows=False)) for spec in reversed(specs)]
    live = [info for info, age in tick.nodes() if node_state(info, age) not in ("stopped", "lost")]
    return {"url": public_url(tick.client.url), "jobs": rows, "agents": len(live),
            "busy": sum(len(i.running) for i in live), "slots": sum(i.slots for i in live)}


def read_nodes(tick: Tick) -> dict[str, Any]:
    """The nodes page: every agent that published its presence, live ones first."""
    from .._nodes import node_dict, skew_note

    nodes = tick.nodes()
    rows = sorted((node_dict(info, age) for info, age in nodes), key=lambda n: (not n["live"], n["name"]))
    return {"url": public_url(tick.client.url), "nodes": rows, "skew": skew_note(nodes)}


def _task_row(tick: Tick, job: str, row: TaskState, name: str | None) -> dict[str, Any]:
    client = tick.client
    out: dict[str, Any] = {"task": row.task, "name": name or row.name, "state": row.state, "attempt": row.attempt,
                           "node": row.holder, "error": row.error, "exit_code": None, "started": None,
                           "finished": None, "attempts": []}
    done = client.done_record(job, row.task) if row.state in {o.value for o in Outcome} else None  # cached
    if done is not None:
        out.update(exit_code=done.exit_code, started=done.started or None, finished=done.finished or None)
        out["attempts"] = [{"attempt": a.get("attempt"), "node": a.get("holder"), "outcome": a.get("outcome"),
                            "error": a.get("error"), "started": a.get("started"), "finished": a.get("finished")}
                           for a in done.attempts]
    elif row.state == "running" and row.attempt:
        out["started"] = tick.started(job, row.task, row.attempt)
    return out


def read_job(tick: Tick, job: str) -> dict[str, Any]:
    """A job's page: its counts and a row per task (see ROWS)."""
    spec = tick.client.job(job).spec()
    st = tick.status(job)
    names = {tid: t.name for tid, (_chunk, t) in tick.tasks(job).items() if t.name} if st.total <= ROWS else {}
    return {**_job_row(spec, st), "sealed": st.sealed, "finished": st.finished, "ok": st.ok, "config_dag": bool(spec.config.get("dag")),
            "rows": [_task_row(tick, job, r, names.get(r.task)) for r in st.rows], "all_rows": st.total <= ROWS}


def read_dag(tick: Tick, job: str) -> dict[str, Any]:
    """A job's graph: a node per task (dynamic ones marked) and an edge per dependency, static ones from
    the specs and the ones found at run time from the wait edges."""
    client = tick.client
    tasks = tick.tasks(job)
    st = tick.status(job)
    states = {r.task: r.state for r in st.rows}
    if st.total > ROWS:  # the rows leave out succeeded and pending tasks: tell them apart by the done records
        for meta in client.aio_list(layout.done_prefix(job)):
            tid = meta.key.rsplit("/", 1)[1].removesuffix(".json")
            done = client.done_record(job, tid)  # cached: the status read it
            if tid not in states and done is not None:
                states[tid] = done.outcome
    edges: dict[tuple[str, str], bool] = {}
    for tid, (_chunk, spec) in tasks.items():
        for dep in spec.deps:
            edges[(dep, tid)] = False
    prefix = layout.all_waits(job)
    for meta in client.aio_list(prefix):
        dep, _, waiter = meta.key[len(prefix):].partition("/")
        edges.setdefault((dep, waiter), True)
    ids = list(tasks)[:DAG_NODES]
    shown = set(ids)
    nodes = [{"id": tid, "name": tasks[tid][1].name or tid, "state": states.get(tid, "pending"),
              "dynamic": tasks[tid][0] == "x"} for tid in ids]
    return {"nodes": nodes, "edges": [[d, t, dyn] for (d, t), dyn in sorted(edges.items()) if d in shown and t in shown],
            "total": len(tasks)}


def read_timeline(tick: Tick, job: str) -> dict[str, Any]:
    """The timeline page: the same self-contained page `qubits timeline` writes."""
    from ..qfile._timeline import timeline_html

    return {"html": timeline_html(tick.client.job(job))}


class LogReader:
    """The output of every attempt of one task, read incrementally: each part once."""

    def __init__(self, client: Client, job: str, task: str) -> None:
        self.client = client
        self.job = job
        self.task = task
        self.tid: str | None = None
        self.parts: OrderedDict[str, bytes] = OrderedDict()

    def __call__(self, tick: Tick) -> dict[str, Any]:
        client = self.client
        if self.tid is None:
            self.tid = client.job(self.job)._task_id(self.task)
        tid = self.tid
        done = client.done_record(self.job, tid)
        by_attempt: dict[int, list[str]] = {}
        bodies: dict[str, bytes] = {}
        for meta in client.aio_list(layout.task_runs(self.job, tid)):
            bits = meta.key.split("/")
            if len(bits) < 6 or bits[4] not in (*STREAMS, "order") or not bits[3].isdigit():
                continue
            if meta.key not in self.parts:
                try:
                    self.parts[meta.key] = run_sync(client.aio.get(meta.key))[0]
                except NotFound:
                    continue
                while len(self.parts) > LOG_PARTS_KEPT:
                    self.parts.popitem(last=False)
            bodies[meta.key] = self.parts.get(meta.key, b"")
            by_attempt.setdefault(int(bits[3]), []).append(meta.key)
        attempts = []
        for n, keys in sorted(by_attempt.items()):
            found = flushes(keys, layout.run_prefix(self.job, tid, n))
            ordered = [fl for _m, fl in in_order(found, 0, final=True)]
            shown = {s: b"".join(render(fl, s, bodies) for fl in ordered)[-LOG_TAIL:].decode(errors="replace")
                     for s in (BOTH, *STREAMS)}
            attempts.append({"attempt": n, "output": shown[BOTH], "stdout": shown["stdout"], "stderr": shown["stderr"]})
        return {"task": tid, "name": _name_of(tick, self.job, tid), "attempts": attempts, "finished": done is not None,
                "outcome": done.outcome if done else None, "exit_code": done.exit_code if done else None,
                "error": done.error if done else None}


def _name_of(tick: Tick, job: str, tid: str) -> str:
    entry = tick.tasks(job).get(tid)
    return (entry[1].name if entry else "") or tid


def make_reader(client: Client, topic: str) -> Reader:
    """The reader of ``topic``; ValueError if there is no such topic."""
    kind, _, rest = topic.partition("/")
    if kind == "jobs" and not rest:
        return read_jobs
    if kind == "nodes" and not rest:
        return read_nodes
    if kind == "log":
        job, _, task = rest.partition("/")
        if job and task:
            return LogReader(client, job, task)
    elif rest and "/" not in rest:
        simple = {"job": read_job, "dag": read_dag, "timeline": read_timeline}.get(kind)
        if simple is not None:
            return lambda tick: simple(tick, rest)
    raise ValueError(f"no such topic: {topic!r}")


def check_job(client: Client, job: str) -> JobSpec:
    """The spec of ``job``; NotFoundError if there is none."""
    try:
        return client.job(job).spec()
    except NotFound:
        raise NotFoundError(f"no job {job!r}") from None
