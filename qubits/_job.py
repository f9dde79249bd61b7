"""A handle on one job: status, wait, logs, events, cancel, remove, retry, results and outputs.

``Client.job`` and ``Client.submit…`` return these; a Job holds its client and the job's id, nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import jobspaces
from jobspaces import run_sync

from . import _kinds as kinds
from . import _layout as layout
from ._ids import task_id
from ._logs import BOTH, STREAMS, flushes, header, in_order, read_attempt, render, wanted_keys
from ._records import Done, JobSpec, Lease, LeaseState, Outcome, TaskSpec
from ._status import TASK_STATES, JobStatus, TaskState, from_done, from_lease, parse_states
from .errors import CorruptObject, NotFoundError, UsageError, WaitTimeout

if TYPE_CHECKING:
    from ._client import Client
    from ._events import TaskEvent


class Job:
    """A handle on one job."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"<Job {self.id}>"

    def spec(self) -> JobSpec:
        return run_sync(self.client.specs.job(self.id))

    def tasks(self) -> dict[str, tuple[str, TaskSpec]]:
        return run_sync(self.client.specs.all_tasks(self.id))

    def status(self, *, rows: int = 200, state: str | Iterable[str] | None = None) -> JobStatus:
        """Counts by state; a row per task when the job has at most ``rows`` tasks, else the
        unfinished and unsuccessful ones (``rows=0``: counts only, no task specs read). ``state`` ('failed', 'failed,running' or a list) keeps only
        the rows of tasks in those states, however many tasks the job has (counts stay whole)."""
        try:
            wanted = parse_states(state, TASK_STATES)
        except ValueError as exc:
            raise UsageError(f"--state: {exc}") from None
        c = self.client
        spec = self.spec()
        sealed = run_sync(c.specs.seal(self.id)) is not None
        done_keys = [m.key for m in c.aio_list(layout.done_prefix(self.id))]
        lease_metas = c.aio_list(layout.lease_prefix(self.id))
        counts: dict[str, int] = {}
        found: dict[str, tuple[str, Done | Lease]] = {}
        small = spec.task_count <= rows
        ended = 0.0
        decided: set[str] = set()
        for key in done_keys:
            tid = key.rsplit("/", 1)[1].removesuffix(".json")
            done = c.done_record(self.id, tid)
            if done is None:
                continue
            decided.add(tid)
            counts[done.outcome] = counts.get(done.outcome, 0) + 1
            ended = max(ended, done.finished)
            if wanted is not None or small or done.outcome != Outcome.SUCCEEDED.value:
                found[tid] = (done.outcome, done)
        for meta in lease_metas:
            tid = meta.key.rsplit("/", 1)[1]
            if tid in decided:
                continue  # a committed lease lingers until its done record is written: count it once
            try:
                data, _ = run_sync(c.aio.get(meta.key))
                lease = Lease.from_json(data, meta.key)
            except jobspaces.NotFound:
                continue
            label = "running" if lease.state is LeaseState.HELD else lease.state.value
            if lease.state is LeaseState.COMMITTED:
                # Decided, but its done record is not written yet: not finished (wait() promises the
                # done records), and it is written within moments by its committer or any agent.
                label = "committing"
            counts[label] = counts.get(label, 0) + 1
            found[tid] = (label, lease)
        total = spec.task_count
        specs: dict[str, TaskSpec] = {}
        if sealed:
            known = sum(counts.values())
            total += len(c.aio_list(layout.dynamic_prefix(self.id)))
            counts["pending"] = max(0, total - known)
            if small or (found and rows > 0) or wanted:
                try:
                    specs = {tid: t for tid, (_chunk, t) in self.tasks().items()}
                except CorruptObject:
                    specs = {}  # a corrupt chunk: its tasks are quarantined and decided failed, with the reason
        states: list[TaskState] = []
        for tid, (label, record) in found.items() if rows > 0 or wanted is not None else ():
            t = specs.get(tid)
            name, most = (t.name or _name(tid), t.max_attempts) if t is not None else (_name(tid), 0)
            row = from_done(record, name, most) if isinstance(record, Done) else from_lease(record, label, name, most)
            states.append(row)
        if small or (wanted and "pending" in wanted):
            for tid, t in specs.items():
                if tid not in found:
                    states.append(TaskState(tid, t.name or _name(tid), "pending", max_attempts=t.max_attempts))
        if wanted is not None:
            states = [r for r in states if r.state in wanted]
        cancelled = run_sync(c.aio.exists(layout.cancel(self.id)))
        return JobStatus(self.id, spec.name, total, sealed, counts, sorted(states, key=lambda r: r.task),
                         submitter=spec.submitter, created=spec.created, ended=ended, cancelled=cancelled, kind=spec.kind)

    def wait(self, timeout: float | None = None, *, poll: float = 0.2, max_poll: float = 2.0) -> JobStatus:
        """Block until every task has its done record; WaitTimeout after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll
        while True:
            status = self.status(rows=0)
            if status.finished:
                return self.status()
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {self.id} not finished after {timeout:g}s: {status.summary()}")
            time.sleep(interval)
            interval = min(max_poll, interval * 1.5)

    def logs(self, task: str | None = None, *, attempt: int | None = None, stream: str = BOTH) -> bytes:
        """The output of one attempt of a task (the last attempt by default): stdout and stderr
        interleaved as the task wrote them, or ``stream`` 'stdout' or 'stderr' alone. With no ``task``,
        the logs of the whole job: each task that ran, in id order, its block headed by its id."""
        _check_stream(stream)
        if task is None:
            return b"".join(self._job_logs(stream))
        tid = self._task_id(task)
        if attempt is None:
            attempt = self._last_attempt(tid)
        return run_sync(read_attempt(self.client.aio, layout.run_prefix(self.id, tid, attempt), stream))

    def _job_logs(self, stream: str) -> Iterator[bytes]:
        by_task: dict[str, dict[int, list[str]]] = {}
        for meta in self.client.aio_list(layout.runs_prefix(self.id)):
            _runs, _job, tid, number, _rest = meta.key.split("/", 4)
            if number.isdigit():
                by_task.setdefault(tid, {}).setdefault(int(number), []).append(meta.key)
        names = {tid: t.name for tid, (_chunk, t) in self.tasks().items()} if by_task else {}
        for tid in sorted(by_task):
            done = self.client.done_record(self.id, tid)
            attempt = done.attempt if done is not None and done.attempt in by_task[tid] else max(by_task[tid])
            prefix = layout.run_prefix(self.id, tid, attempt)
            body = run_sync(read_attempt(self.client.aio, prefix, stream, keys=by_task[tid][attempt]))
            yield header(tid, names.get(tid, ""), attempt) + body + (b"" if not body or body.endswith(b"\n") else b"\n")

    def follow(self, task: str, *, stream: str = BOTH, poll: float = 0.5) -> Iterator[bytes]:
        """Yield output as it arrives, across attempts, until the task is decided (both streams
        interleaved as written, or ``stream`` alone)."""
        _check_stream(stream)
        tid = self._task_id(task)
        position: dict[int, int] = {}
        while True:
            finished = self.client.done_record(self.id, tid) is not None
            by_attempt: dict[int, list[str]] = {}
            for meta in self.client.aio_list(layout.runs_prefix(self.id, tid)):
                number = meta.key.split("/")[3]
                if number.isdigit():
                    by_attempt.setdefault(int(number), []).append(meta.key)
            for attempt in sorted(by_attempt):
                prefix = layout.run_prefix(self.id, tid, attempt)
                found = flushes(by_attempt[attempt], prefix)
                ended = finished or attempt < max(by_attempt)
                for n, flush in in_order(found, position.get(attempt, 0), final=ended):
                    keys = wanted_keys(flush, stream)
                    data = render(flush, stream, {k: run_sync(self.client.aio.get(k))[0] for k in keys})
                    position[attempt] = n + 1
                    if data:
                        yield data
            if finished:
                return
            time.sleep(poll)

    def events(self, *, poll: float = 0.5, until_finished: bool = True) -> Iterator[TaskEvent]:
        """The job in slow motion: claims, takeovers, waits, wakes, releases, commits and agents, as
        they happen (read from the jobspace: see ``qubits._events``), until every task is decided."""
        from ._events import JobEvents, follow

        return follow(JobEvents(self.client, self.id), poll=poll, until_finished=until_finished)

    def _task_id(self, task: str) -> str:
        tasks = self.tasks()
        if task in tasks:
            return task
        tid = task_id(task)
        if tid in tasks:
            return tid
        for t, (_chunk, spec) in tasks.items():
            if spec.name == task:
                return t
        raise NotFoundError(f"no task {task!r} in job {self.id}")

    def _last_attempt(self, tid: str) -> int:
        done = self.client.done_record(self.id, tid)
        if done is not None and done.attempt:
            return done.attempt
        attempts = {int(m.key.split("/")[3]) for m in self.client.aio_list(layout.runs_prefix(self.id, tid))}
        if not attempts:
            return 1
        return max(attempts)

    def cancel(self, task: str | Iterable[str] | None = None) -> int:
        """Cancel the job, or only ``task`` (an id or name, or several): running tasks are stopped by
        their agents; every task not yet decided is decided as cancelled; the job's other tasks go on when
        ``task`` is given. Returns how many tasks this call decided; for ``task``, how many of those named
        are cancelled now (waiting up to CANCEL_WAIT seconds for the agents that hold them)."""
        from ._cancel import cancel_job, cancel_tasks

        if task is None:
            return run_sync(cancel_job(self.client, self.id))
        names = [task] if isinstance(task, str) else list(task)
        tids = [self._task_id(name) for name in names]
        ended = run_sync(cancel_tasks(self.client, self.id, tids))
        return sum(1 for done in ended.values() if done is not None and done.outcome == Outcome.CANCELLED.value)

    def remove(self, *, force: bool = False) -> int:
        """Delete the job and every object it wrote (specs, leases, done records, logs, outputs); returns
        how many objects. A job still running is refused (UsageError) unless ``force``: then it is
        cancelled first, and deleted once every task is decided (WaitTimeout if that takes over CANCEL_WAIT)."""
        from ._defaults import CANCEL_WAIT
        from ._gc import remove_job

        status = self.status(rows=0)
        if not status.finished:
            if not force:
                raise UsageError(f"job {self.id} is running ({status.summary()}): cancel it first, or force (--force)")
            self.cancel()
            self.wait(timeout=CANCEL_WAIT)
        removed = run_sync(remove_job(self.client.aio, self.id))
        self.client._done_cache = {k: v for k, v in self.client._done_cache.items() if k[0] != self.id}
        return removed

    def retry(self, *, failed: bool = True) -> Job:
        """Submit a new job with the tasks that did not succeed (and their dependents).

        NotFoundError, and nothing submitted, when every task succeeded."""
        spec = self.spec()
        redo: dict[str, TaskSpec] = {}
        for tid, (_chunk, t) in self.tasks().items():
            done = self.client.done_record(self.id, tid)
            if done is None or done.outcome != Outcome.SUCCEEDED.value:
                redo[tid] = t
        if not redo:
            raise NotFoundError(f"job {self.id} has no failed task: nothing to retry")
        tasks = [replace(t, deps=[d for d in t.deps if d in redo]) for t in redo.values()]
        config = {**spec.config, "retry_of": self.id}
        return self.client.submit(tasks, kind=spec.kind, name=spec.name, code=spec.code, config=config, dag=any(t.deps for t in tasks))

    def results(self) -> dict[str, Done]:
        """The done record of every decided task."""
        out = {}
        for meta in self.client.aio_list(layout.done_prefix(self.id)):
            tid = meta.key.rsplit("/", 1)[1].removesuffix(".json")
            done = self.client.done_record(self.id, tid)
            if done is not None:
                out[tid] = done
        return out

    def outputs(self, task: str) -> dict[str, bytes]:
        """The files a decided task's winning attempt wrote to $QUBITS_OUTPUT, by path (empty while it
        is not decided). With ``results()`` (outcome, exit code per task) and ``logs()``, all of what a
        commands job produced; ``pull()`` writes it to a folder instead."""
        tid = self._task_id(task)
        done = self.client.done_record(self.id, tid)
        if done is None or not done.attempt:
            return {}
        out = f"{layout.run_prefix(self.id, tid, done.attempt)}out/"
        return {m.key[len(out):]: run_sync(self.client.aio.get(m.key))[0] for m in self.client.aio_list(out)}

    def pull(self, dest: str, *, include: Iterable[str] = (), exclude: Iterable[str] = (), dry_run: bool = False) -> Any:
        """Download every decided task's outputs and logs into ``dest/{job}/{task}/`` (a batch: its
        archive into ``dest/namespace/batch/job/``), filtered by regexes; a ``PullReport``."""
        pull = kinds.puller()  # the batch front end's, found by name: no import up
        return pull(self.client, self.id, dest, include=include, exclude=exclude, dry_run=dry_run)

    def result_bytes(self, task: str) -> bytes | None:
        """The stored return value of a Python task, if it has one."""
        tid = self._task_id(task)
        done = self.client.done_record(self.id, tid)
        if done is None or not done.has_result:
            return None
        inline = done.inline_result()
        if inline is not None:
            return inline
        return run_sync(self.client.aio.get(layout.result(self.id, tid, done.attempt)))[0]


def _check_stream(stream: str) -> None:
    if stream not in (*STREAMS, BOTH):
        raise UsageError(f"stream {stream!r}: use 'stdout', 'stderr' or 'both' (interleaved as written)")


def _name(tid: str) -> str:
    from ._ids import task_name

    try:
        return task_name(tid)
    except (ValueError, UnicodeDecodeError):
        return tid
