"""A job in slow motion: claims, waits, releases, commits and agents as they happen, read from the
jobspace itself (the leases, done records and agents' presence), so it works wherever the agents run.

A watcher lists ``leases/{job}/`` and ``done/{job}/`` on each poll, reads only the objects whose ETag
changed, and says what changed since the last poll: a claim (attempt n of m, on which node), a
takeover (its holder stopped renewing), a wait for dependencies, a release (a failed attempt, or a
drain), a wake, and a commit (outcome, node, time). Agents are reported when they appear, drain or
stop. Changes between two polls collapse into the last state (a task claimed and committed within
one poll shows its commit).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jobspaces
from jobspaces import run_sync

from . import _layout as layout
from ._records import Done, Lease, LeaseState, NodeInfo
from ._status import counted_attempts, waits

if TYPE_CHECKING:
    from ._client import Client

NODES_EVERY = 2.0
"""Seconds between readings of the agents' presence."""


@dataclass(frozen=True)
class TaskEvent:
    """One thing that happened to a job: ``kind`` is claim, takeover, wait, wake, release, commit, or
    node (an agent appeared, drains or stopped; ``task`` is then empty)."""

    kind: str
    task: str
    name: str = ""
    node: str = ""
    attempt: int = 0
    """The run's number (its output's folder)."""
    detail: str = ""
    """Human words: 'attempt 1 of 3', 'waits for a, b', 'succeeded in 1.2s', 'exit status 3' …"""
    wall: float = 0.0
    """When this client saw it (wall clock)."""

    def text(self) -> str:
        """One line: kind, task (id and name), node, detail."""
        if not self.task:
            return f"{self.kind:<8} {self.node}" + (f": {self.detail}" if self.detail else "")
        who = self.task + (f" {self.name}" if self.name and self.name != self.task else "")
        where = f" on {self.node}" if self.node else ""
        return f"{self.kind:<8} {who}{where}" + (f": {self.detail}" if self.detail else "")


class JobEvents:
    """What happens to one job, a poll at a time (``poll()``), or as a stream (``Job.events()``)."""

    def __init__(self, client: Client, job: str, *, nodes: bool = True) -> None:
        self.client = client
        self.job = job
        self._etags: dict[str, str] = {}
        self._leases: dict[str, Lease] = {}
        self._done: set[str] = set()
        self._claimed: dict[str, int] = {}
        """The run (attempt) of each task whose claim was shown."""
        self._names: dict[str, tuple[str, int]] = {}
        self._nodes: dict[str, str] | None = {} if nodes else None
        self._nodes_at = 0.0

    def _name(self, task: str) -> tuple[str, int]:
        """(name, max_attempts) of a task (its spec is read once per job, and again for tasks added later)."""
        if task not in self._names:
            self._names.update({tid: (t.name, t.max_attempts) for tid, (_c, t) in run_sync(self.client.specs.all_tasks(self.job)).items()})
        return self._names.get(task, (task, 0))

    def poll(self) -> list[TaskEvent]:
        """What changed since the last poll, oldest first."""
        js = self.client.aio
        now = time.time()
        events: list[TaskEvent] = []
        if self._nodes is not None and time.monotonic() - self._nodes_at >= NODES_EVERY:
            self._nodes_at = time.monotonic()
            events += self._node_events(now)
        for meta in self.client.aio_list(layout.done_prefix(self.job)):
            tid = meta.key.rsplit("/", 1)[1].removesuffix(".json")
            if tid in self._done:
                continue
            self._done.add(tid)
            done = self.client.done_record(self.job, tid)
            if done is not None:
                events += self._commit(done, now)
        for meta in self.client.aio_list(layout.lease_prefix(self.job)):
            tid = meta.key.rsplit("/", 1)[1]
            if tid in self._done or self._etags.get(tid) == meta.etag:
                continue
            try:
                data, etag = run_sync(js.get(meta.key))
                lease = Lease.from_json(data, meta.key)
            except jobspaces.NotFound:
                continue
            self._etags[tid] = etag
            before = self._leases.get(tid)
            self._leases[tid] = lease
            event = self._lease_event(before, lease, now)
            if event is not None:
                events.append(event)
        return events

    def _commit(self, done: Done, now: float) -> list[TaskEvent]:
        """The commit, after the claim of its run when no poll saw that run held (a task claimed and
        decided between two polls), so every run shows its claim before its commit."""
        name, most = self._name(done.task)
        took = f" in {done.finished - done.started:.1f}s" if done.started and done.finished else ""
        detail = done.outcome + took + (f" ({done.error})" if done.error and done.outcome != "succeeded" else "")
        events = []
        if done.holder and self._claimed.get(done.task) != done.attempt:
            tries = counted_attempts(done.attempts, most)
            claimed = f"attempt {tries} of {most}" if most else f"attempt {tries}"
            parked = waits(done.attempts)
            claimed += f", after waiting {parked} time(s) for dependencies" if parked else ""
            events.append(TaskEvent("claim", done.task, name, done.holder, done.attempt, claimed, now))
        events.append(TaskEvent("commit", done.task, name, done.holder, done.attempt, detail, now))
        return events

    def _lease_event(self, before: Lease | None, lease: Lease, now: float) -> TaskEvent | None:
        name, most = self._name(lease.task)
        same_run = before is not None and before.attempt == lease.attempt and before.state is lease.state
        if same_run:
            return None  # a renewal
        if lease.state is LeaseState.HELD:
            lost = bool(lease.history) and lease.history[-1].get("outcome") == "lost"
            kind = "takeover" if lost else "claim"
            tries = counted_attempts(lease.history, most)
            detail = f"attempt {tries} of {most}" if most else f"attempt {tries}"
            parked = waits(lease.history)
            detail += f", after waiting {parked} time(s) for dependencies" if parked else ""
            if lost:
                detail += f", from {lease.history[-1].get('holder')} (it stopped renewing its lease)"
            self._claimed[lease.task] = lease.attempt
            return TaskEvent(kind, lease.task, name, lease.holder, lease.attempt, detail, now)
        if lease.state is LeaseState.PARKED:
            shown = ", ".join(lease.waiting[:5]) + (f" … ({len(lease.waiting)} tasks)" if len(lease.waiting) > 5 else "")
            return TaskEvent("wait", lease.task, name, lease.holder, lease.attempt, f"waits for {shown}", now)
        if lease.state is LeaseState.RELEASED:
            if before is not None and before.state is LeaseState.PARKED:
                return TaskEvent("wake", lease.task, name, "", lease.attempt, "its dependencies are made", now)
            last: dict[str, Any] = lease.history[-1] if lease.history else {}
            why = str(last.get("error") or lease.error or last.get("outcome") or "released")
            retry = f"; retry in {lease.delay:.0f}s" if lease.delay else ""
            return TaskEvent("release", lease.task, name, lease.holder, lease.attempt, why + retry, now)
        return None  # committed: its done record follows

    def _node_events(self, now: float) -> list[TaskEvent]:
        assert self._nodes is not None
        events = []
        for info, age in self.client.nodes():
            state = "stopped" if info.stopped else "draining" if info.draining else "paused" if info.paused else "live"
            if not info.live(age) and state != "stopped":
                continue
            known = self._nodes.get(info.name)
            if known == state or (known is None and state == "stopped"):
                continue
            self._nodes[info.name] = state
            events.append(TaskEvent("node", "", "", info.name, 0, _node_detail(info, state), now))
        return events


def _node_detail(info: NodeInfo, state: str) -> str:
    if state == "live":
        caps = f", capabilities {','.join(info.capabilities)}" if info.capabilities else ""
        return f"live on {info.host}, {info.slots} slot(s){caps}"
    return state


def follow(events: JobEvents, *, poll: float = 0.5, until_finished: bool = True) -> Iterator[TaskEvent]:
    """Yield events as they happen; stop once every task of the job is decided (``until_finished``)."""
    from ._client import Job

    job = Job(events.client, events.job)
    while True:
        finished = until_finished and job.status(rows=0).finished
        yield from events.poll()
        if finished:
            return
        time.sleep(poll)
