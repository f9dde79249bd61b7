"""The embedded Python API: connect, submit, and handles on jobs (status, wait, logs, cancel, retry).

Everything the CLI does goes through here. The API blocks; ``Client.aio`` is the async jobspace for
code that runs inside an event loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import jobspaces
from jobspaces import Jobspace, run_sync

from . import _layout as layout
from ._ids import new_job_id, task_id
from ._records import Done, JobSpec, Lease, LeaseState, NodeInfo, Outcome, TaskSpec
from ._specs import Specs
from .errors import CorruptObject, NotFoundError, UsageError, WaitTimeout

if TYPE_CHECKING:
    from ._schedule import Schedule


@dataclass
class TaskState:
    """One row of a job's status."""

    task: str
    name: str
    state: str
    """pending, running, released, parked, or an outcome (succeeded, failed, cancelled, upstream_failed)."""
    attempt: int = 0
    holder: str = ""
    error: str | None = None


@dataclass
class JobStatus:
    """A job's progress: counts by state, and rows for the tasks worth showing."""

    job: str
    name: str
    total: int
    sealed: bool
    counts: dict[str, int] = field(default_factory=dict)
    rows: list[TaskState] = field(default_factory=list)

    @property
    def done(self) -> int:
        return sum(v for k, v in self.counts.items() if k in {o.value for o in Outcome})

    @property
    def finished(self) -> bool:
        return self.sealed and self.done >= self.total

    @property
    def ok(self) -> bool:
        return self.finished and self.counts.get(Outcome.SUCCEEDED.value, 0) == self.total

    def summary(self) -> str:
        parts = [f"{k} {v}" for k, v in sorted(self.counts.items()) if v]
        return f"{self.job} {self.name}: {self.done}/{self.total} done" + (f" ({', '.join(parts)})" if parts else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "name": self.name,
            "total": self.total,
            "done": self.done,
            "finished": self.finished,
            "ok": self.ok,
            "counts": self.counts,
            "tasks": [r.__dict__ for r in self.rows],
        }


class Client:
    """A connection to one jobspace."""

    def __init__(self, jobspace: str | Jobspace) -> None:
        self.aio: Jobspace = jobspaces.open_jobspace(jobspace) if isinstance(jobspace, str) else jobspace
        self.specs = Specs(self.aio)
        self.url = self.aio.url
        self._done_cache: dict[tuple[str, str], Done] = {}

    # -- submitting -----------------------------------------------------------------------------------
    def submit_commands(
        self,
        commands: Iterable[str],
        *,
        name: str = "",
        requires: Iterable[str] = (),
        resources: dict[str, float] | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        priority: int = 0,
        env: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> Job:
        """Submit one task per shell command line (blank lines and # comments skipped), like a job array.

        ``delay``: no task starts before this many seconds from now (a scheduling hint: agents compare
        it with their own wall clocks)."""
        not_before = time.time() + delay if delay else 0.0
        tasks = command_specs(commands, requires=requires, resources=resources, max_attempts=max_attempts,
                              timeout=timeout, priority=priority, env=env, not_before=not_before)
        return self.submit(tasks, kind="commands", name=name)

    def submit(
        self,
        tasks: Iterable[TaskSpec],
        *,
        kind: str = "commands",
        name: str = "",
        code: str | None = None,
        config: dict[str, Any] | None = None,
        dag: bool = False,
        job_id: str | None = None,
    ) -> Job:
        """Submit ``tasks`` as one job (streamed: specs are written a chunk at a time)."""
        spec = JobSpec(id=job_id or new_job_id(), kind=kind, name=name, code=code, config=dict(config or {}))
        run_sync(self.specs.submit(spec, tasks, dag=dag))
        return Job(self, spec.id)

    def submit_targets(self, targets: Iterable[str] = (), *, project: str = ".", profile: str | None = None, force: bool = False) -> Job:
        """Submit targets of the Qfile in ``project`` to this jobspace (see ``qubits.qfile.submit_targets``)."""
        from .qfile import submit_targets

        return submit_targets(targets, project=project, profile=profile, force=force, client=self)

    # -- periodic submission ------------------------------------------------------------------------------
    def schedule(self, name: str, commands: Iterable[str], *, cron: str | None = None, every: str | float | None = None,
                 job_name: str = "", max_attempts: int | None = None, replace: bool = False) -> Schedule:
        """Submit ``commands`` as a job at every tick of ``cron`` (5 fields, or 6 with seconds first) or
        ``every`` (seconds, or '2s', '5m' …): fired by any agent of the jobspace, once per tick."""
        from ._schedule import add_schedule, make_schedule

        schedule = make_schedule(name, list(commands), cron=cron, every=every, job_name=job_name, max_attempts=max_attempts)
        run_sync(add_schedule(self.aio, schedule, replace=replace))
        return schedule

    def schedules(self) -> list[Schedule]:
        """Every schedule of the jobspace."""
        from ._schedule import list_schedules

        return run_sync(list_schedules(self.aio))

    def unschedule(self, name: str) -> None:
        """Remove a schedule (no tick fires after this); NotFoundError if there is none."""
        from ._schedule import remove_schedule

        if not run_sync(remove_schedule(self.aio, name)):
            raise NotFoundError(f"no schedule {name!r} in {self.url}")

    # -- finding jobs -----------------------------------------------------------------------------------
    def job(self, job_id: str) -> Job:
        """A handle on an existing job; NotFoundError if there is none."""
        run_sync(self.specs.job(job_id))
        return Job(self, job_id)

    def jobs(self) -> list[JobSpec]:
        """Every job in the jobspace, oldest first."""
        out = []
        for meta in self.aio_list("jobs/"):
            if meta.key.endswith("/job.json") and meta.key.count("/") == 2:
                out.append(run_sync(self.specs.job(meta.key.split("/")[1])))
        return out

    def last(self) -> Job:
        """The most recently submitted job."""
        ids = sorted({m.key.split("/")[1] for m in self.aio_list("jobs/") if m.key.endswith("/job.json")})
        if not ids:
            raise NotFoundError(f"no jobs in {self.url}")
        return Job(self, ids[-1])

    def nodes(self) -> list[tuple[NodeInfo, float]]:
        """Agents that published their presence, with seconds since each was last seen."""
        out = []
        for meta in self.aio_list("nodes/"):
            try:
                data, _ = run_sync(self.aio.get(meta.key))
                info = NodeInfo.from_json(data, meta.key)
            except (jobspaces.NotFound, Exception):  # noqa: BLE001 - a bad presence object is not fatal
                continue
            out.append((info, max(0.0, time.time() - meta.mtime)))
        return out

    def aio_list(self, prefix: str) -> list[jobspaces.ObjectMeta]:
        return run_sync(self.aio.list_all(prefix))

    def done_record(self, job: str, task: str) -> Done | None:
        cached = self._done_cache.get((job, task))
        if cached is not None:
            return cached
        try:
            data, _ = run_sync(self.aio.get(layout.done(job, task)))
        except jobspaces.NotFound:
            return None
        done = Done.from_json(data, layout.done(job, task))
        self._done_cache[(job, task)] = done
        return done

    def close(self) -> None:
        run_sync(self.aio.close())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def command_specs(
    commands: Iterable[str],
    *,
    requires: Iterable[str] = (),
    resources: dict[str, float] | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    priority: int = 0,
    env: dict[str, str] | None = None,
    not_before: float = 0.0,
) -> Iterator[TaskSpec]:
    """One shell task per command line (blank lines and # comments skipped), ids t000001, t000002 …"""
    n = 0
    for line in commands:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        n += 1
        extra: dict[str, Any] = {}
        if max_attempts is not None:
            extra["max_attempts"] = max_attempts
        yield TaskSpec(
            id=f"t{n:06d}",
            kind="shell",
            command=line,
            requires=sorted(requires),
            resources=dict(resources or {}),
            timeout=timeout,
            priority=priority,
            env=dict(env or {}),
            name=line[:200],
            not_before=not_before,
            **extra,
        )


def connect(jobspace: str | Jobspace) -> Client:
    """Open a jobspace: a path, file://, memory://, s3://bucket/prefix?endpoint=…, gs://, az://."""
    return Client(jobspace)


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

    def status(self, *, rows: int = 200) -> JobStatus:
        """Counts by state; a row per task when the job has at most ``rows`` tasks, else the
        unfinished and unsuccessful ones."""
        c = self.client
        spec = self.spec()
        sealed = run_sync(c.specs.seal(self.id)) is not None
        done_keys = [m.key for m in c.aio_list(layout.done_prefix(self.id))]
        lease_metas = c.aio_list(f"leases/{self.id}/")
        counts: dict[str, int] = {}
        states: dict[str, TaskState] = {}
        small = spec.task_count <= rows
        decided: set[str] = set()
        for key in done_keys:
            tid = key.rsplit("/", 1)[1].removesuffix(".json")
            done = c.done_record(self.id, tid)
            if done is None:
                continue
            decided.add(tid)
            counts[done.outcome] = counts.get(done.outcome, 0) + 1
            if small or done.outcome != Outcome.SUCCEEDED.value:
                states[tid] = TaskState(tid, _name(tid), done.outcome, done.attempt, done.holder, done.error)
        for meta in lease_metas:
            tid = meta.key.rsplit("/", 1)[1]
            if tid in states or tid in decided:
                continue  # a committed lease lingers until its done record is written: count it once
            try:
                data, _ = run_sync(c.aio.get(meta.key))
                lease = Lease.from_json(data, meta.key)
            except jobspaces.NotFound:
                continue
            state = "running" if lease.state is LeaseState.HELD else lease.state.value
            if lease.state is LeaseState.COMMITTED:
                # Decided, but its done record is not written yet: not finished (wait() promises the
                # done records), and it is written within moments by its committer or any agent.
                state = "committing"
            counts[state] = counts.get(state, 0) + 1
            states[tid] = TaskState(tid, _name(tid), state, lease.attempt, lease.holder, lease.error)
        total = spec.task_count
        if sealed:
            known = sum(counts.values())
            dynamic = len(c.aio_list(f"jobs/{self.id}/tasks/x/"))
            total += dynamic
            counts["pending"] = max(0, total - known)
            if small:
                try:
                    tasks = self.tasks()
                except CorruptObject:
                    tasks = {}  # a corrupt chunk: its tasks are quarantined and decided failed, with the reason
                for tid, (_chunk, t) in tasks.items():
                    states.setdefault(tid, TaskState(tid, t.name or _name(tid), "pending"))
        return JobStatus(self.id, spec.name, total, sealed, counts, sorted(states.values(), key=lambda r: r.task))

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

    def logs(self, task: str, *, attempt: int | None = None, stream: str = "stdout") -> bytes:
        """The output of one attempt of a task (the last attempt by default)."""
        tid = self._task_id(task)
        if attempt is None:
            attempt = self._last_attempt(tid)
        prefix = f"{layout.run_prefix(self.id, tid, attempt)}{stream}/"
        return b"".join(run_sync(self.client.aio.get(m.key))[0] for m in self.client.aio_list(prefix))

    def follow(self, task: str, *, stream: str = "stdout", poll: float = 0.5) -> Iterator[bytes]:
        """Yield output as it arrives, across attempts, until the task is decided."""
        tid = self._task_id(task)
        seen: set[str] = set()
        while True:
            finished = self.client.done_record(self.id, tid) is not None
            for meta in self.client.aio_list(f"runs/{self.id}/{tid}/"):
                if f"/{stream}/" in meta.key and meta.key not in seen:
                    seen.add(meta.key)
                    yield run_sync(self.client.aio.get(meta.key))[0]
            if finished:
                return
            time.sleep(poll)

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
        attempts = {int(m.key.split("/")[3]) for m in self.client.aio_list(f"runs/{self.id}/{tid}/")}
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
        from .batch import pull

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


def _name(tid: str) -> str:
    from ._ids import task_name

    try:
        return task_name(tid)
    except (ValueError, UnicodeDecodeError):
        return tid
