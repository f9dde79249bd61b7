"""Why a task is not being claimed: decided, held, delayed, waiting on dependencies, or no live node fits.

Used by ``qubits why JOB TASK`` and by ``qubits batch submit --dry-run`` ("runnable on 3/5 nodes").
Everything here is read from the jobspace: node presence objects, the lease, the done record, the
task spec and its dependencies' done records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jobspaces
from jobspaces import run_sync

from . import _layout as layout
from ._client import Client
from ._records import Lease, LeaseState, NodeInfo, TaskSpec
from ._status import from_done, from_lease


def live_nodes(client: Client) -> list[NodeInfo]:
    """Agents that are running now (presence recent and not marked stopped)."""
    return [info for info, age in client.nodes() if info.live(age)]


def misfit(info: NodeInfo, spec: TaskSpec) -> list[str]:
    """Why ``info``'s node could never run ``spec`` (empty: it could)."""
    out = [f"capability {cap!r}" for cap in sorted(set(spec.requires) - set(info.capabilities))]
    for name, amount in sorted(spec.resources.items()):
        if amount and amount > info.resources.get(name, 0.0):
            out.append(f"{name} {amount:g} (it lends {info.resources.get(name, 0.0):g})")
    return out


def runnable_on(nodes: list[NodeInfo], spec: TaskSpec) -> list[NodeInfo]:
    """The nodes among ``nodes`` whose capabilities and resources fit ``spec``."""
    return [n for n in nodes if not misfit(n, spec)]


@dataclass
class Explanation:
    """The answer of ``why``: a state, and lines that explain it."""

    state: str
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join([self.state, *("  " + line for line in self.lines)])


def explain(client: Client, job_id: str, task: str) -> Explanation:
    """Why task ``task`` of job ``job_id`` is (not) running; NotFoundError if there is no such task."""
    job = client.job(job_id)
    tid = job._task_id(task)
    _chunk, spec = job.tasks()[tid]
    done = client.done_record(job_id, tid)
    if done is not None:
        extra = [f"error: {done.error}"] if done.error else []
        row = from_done(done, spec.name, spec.max_attempts)
        tried = f"attempt {row.attempt_text()}; run {done.attempt}" if row.tries else "never ran"
        return Explanation(f"decided: {done.outcome} ({tried} on {done.holder or 'no node'})", extra)
    if run_sync(client.aio.exists(layout.cancel(job_id))):
        return Explanation("cancelled: the job was cancelled; the task will be decided as cancelled")
    lease = _lease(client, job_id, tid)
    if lease is not None:
        if lease.state is LeaseState.HELD:
            age = f", lease last written {time.time() - lease.wall:.0f}s ago (ttl {lease.ttl:g}s)" if lease.wall else ""
            row = from_lease(lease, "running", spec.name, spec.max_attempts)
            return Explanation(f"running: held by {lease.holder} (attempt {row.attempt_text()}; run {lease.attempt}{age})")
        if lease.state is LeaseState.PARKED:
            return Explanation("waiting on dependencies found at run time", [f"waits for: {', '.join(lease.waiting) or '?'}"])
        if lease.state is LeaseState.COMMITTED:
            return Explanation(f"decided: {lease.outcome} (its done record is being written)")
        lines = [f"failures so far: {lease.failures} of {spec.max_attempts} attempts"]
        if lease.error:
            lines.append(f"last error: {lease.error}")
        if lease.delay:
            since = time.time() - lease.wall if lease.wall else 0.0
            left = max(0.0, lease.delay - since)
            if left > 0:
                return Explanation(f"delayed: released for a retry, claimable in about {left:.0f}s", lines)
        explanation = _nodes(client, spec, f"released by {lease.holder}, waiting for a node to claim it")
        explanation.lines[:0] = lines
        return explanation
    if spec.deps:
        pending = []
        for dep in spec.deps:
            d = client.done_record(job_id, dep)
            if d is None:
                pending.append(f"{dep} (not decided)")
            elif d.outcome != "succeeded":
                pending.append(f"{dep} ({d.outcome})")
        if pending:
            return Explanation("waiting on dependencies", [f"waits for: {', '.join(pending)}"])
    if spec.not_before and spec.not_before > time.time():
        return Explanation(f"delayed: not before {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(spec.not_before))}")
    return _nodes(client, spec, "ready, waiting for a node to claim it")


def _lease(client: Client, job: str, task: str) -> Lease | None:
    key = layout.lease(job, task)
    try:
        data, _ = run_sync(client.aio.get(key))
    except jobspaces.NotFound:
        return None
    return Lease.from_json(data, key)


def _nodes(client: Client, spec: TaskSpec, state: str) -> Explanation:
    nodes = live_nodes(client)
    needs = ", ".join([*(f"capability {c}" for c in spec.requires), *(f"{k} {v:g}" for k, v in sorted(spec.resources.items()) if v)]) or "nothing special"
    lines = [f"needs: {needs}"]
    if not nodes:
        return Explanation("not claimable: no live node (start `qubits agent` on a machine)", lines)
    fit = runnable_on(nodes, spec)
    if not fit:
        missing: dict[str, int] = {}
        for n in nodes:
            for reason in misfit(n, spec):
                key = reason.split(" (")[0]
                missing[key] = missing.get(key, 0) + 1
        lines.append(f"runnable on 0/{len(nodes)} live nodes")
        for reason, count in sorted(missing.items(), key=lambda kv: -kv[1]):
            lines.append(f"{reason}: not offered by {count} of {len(nodes)} live nodes")
        for n in nodes:
            lines.append(f"  {n.name}: capabilities [{', '.join(n.capabilities)}], resources {_res(n)}")
        return Explanation("not claimable: no live node offers what it needs", lines)
    lines.append(f"runnable on {len(fit)}/{len(nodes)} live nodes")
    for n in fit:
        if n.paused:
            until = f" until {time.strftime('%H:%M:%S', time.localtime(n.paused_until))}" if n.paused_until else ""
            lines.append(f"  {n.name}: paused{until}")
        elif n.draining:
            lines.append(f"  {n.name}: draining (stopping)")
        elif len(n.running) >= n.slots:
            lines.append(f"  {n.name}: busy ({len(n.running)}/{n.slots} slots)")
        else:
            lines.append(f"  {n.name}: free ({len(n.running)}/{n.slots} slots); it should claim it at its next poll")
    if all(n.paused or n.draining or len(n.running) >= n.slots for n in fit):
        return Explanation(f"{state}: every node that fits is paused, draining or busy", lines)
    return Explanation(state, lines)


def _res(n: NodeInfo) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(n.resources.items())) or "none"
