"""The embedded Python API: connect, submit, and handles on jobs (status, wait, logs, cancel, retry).

Everything the CLI does goes through here. The API blocks; ``Client.aio`` is the async jobspace for
code that runs inside an event loop.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jobspaces
from jobspaces import Jobspace, run_sync

from . import _kinds as kinds
from . import _layout as layout
from ._after import After, parse_after
from ._array import parse_array
from ._bundle import upload_code
from ._ids import new_job_id
from ._job import Job as Job  # re-exported: qubits.Job
from ._local import LocalCluster
from ._records import Done, JobSpec, NodeInfo, TaskSpec
from ._specs import Specs
from ._status import JOB_STATES, parse_states
from ._status import JobStatus as JobStatus  # re-exported: qubits.JobStatus
from ._status import TaskState as TaskState
from .errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from ._schedule import Schedule


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
        image: str | None = None,
        array: str | Iterable[int] | None = None,
        after: str | Job | None = None,
        code: str | os.PathLike[str] | None = None,
    ) -> Job:
        """Submit one task per shell command line (blank lines and # comments skipped), like a job array.

        ``delay``: no task starts before this many seconds from now (a scheduling hint: agents compare
        it with their own wall clocks). ``image``: each command runs inside this container image, on
        agents with a container runtime (they offer the capability ``container``). ``array`` (SLURM's syntax, ``"1-100"``, ``"1,3,5"``, ``"0-99:2"``,
        or integers): each command runs once per index, with ``QUBITS_ARRAY_INDEX`` set. ``after``
        (``"JOB"``, ``"JOB:ok"``, ``"JOB:any"`` or a Job): no task is ready before that job finished
        (``ok``: every task succeeded, else these end upstream-failed; ``any``: in any way).
        ``code``: a folder (``"."``) shipped to the nodes as the job's code bundle (minus .gitignore'd
        files; uploaded once by content); the commands run in it. Without it they run in an empty
        folder of their own. A UsageError, with nothing written, when there is no command."""
        not_before = time.time() + delay if delay else 0.0
        if image:
            requires = sorted({*requires, "container"})
        indices: list[int | None] = list(parse_array(array)) if array is not None else [None]
        gate = self._after(after) if after is not None else None
        lines = (ln.strip() for ln in commands)
        lines = (ln for ln in lines if ln and not ln.startswith("#"))
        first = next(lines, None)
        if first is None:
            raise UsageError("no commands to submit (blank lines and # comments are skipped)")

        specs = command_specs(itertools.chain([first], lines), requires=requires, resources=resources,
                              max_attempts=max_attempts, timeout=timeout, priority=priority, env=env,
                              not_before=not_before, image=image, indices=indices,
                              deps=[gate.gate] if gate is not None else ())

        def tasks() -> Iterator[TaskSpec]:
            if gate is not None:
                yield TaskSpec(id=gate.gate, kind="after", payload={"job": gate.job, "mode": gate.mode}, max_attempts=1,
                               name=f"after {gate.job}:{gate.mode}", priority=priority)
            yield from specs

        config: dict[str, Any] = {"after": {"job": gate.job, "mode": gate.mode}} if gate is not None else {}
        digest = self._upload_code(code) if code is not None else None
        return self.submit(tasks(), kind="commands", name=name, code=digest, config=config, dag=gate is not None)

    def _upload_code(self, code: str | os.PathLike[str]) -> str:
        root = Path(code).resolve()
        if not root.is_dir():
            raise UsageError(f"code={os.fspath(code)!r} is not a folder: name the folder whose files the commands need")
        return upload_code(self, root)

    def _after(self, after: str | Job) -> After:
        """The job to wait for, which must exist (NotFoundError, exit 4, otherwise)."""
        parsed = After(after.id) if isinstance(after, Job) else parse_after(after)
        self.job(parsed.job)
        return parsed

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
        submit_targets = kinds.submitter("target")  # the Qfile front end's, found by kind: no import up
        job: Job = submit_targets(targets, project=project, profile=profile, force=force, client=self)
        return job

    # -- periodic submission ------------------------------------------------------------------------------
    def schedule(self, name: str, commands: Iterable[str], *, cron: str | None = None, every: str | float | None = None,
                 job_name: str = "", max_attempts: int | None = None, replace: bool = False) -> Schedule:
        """Submit ``commands`` as a job at every tick of ``cron`` (5 fields, or 6 with seconds first) or
        ``every`` (seconds, or '2s', '5m' …): fired by any agent of the jobspace, once per tick."""
        from ._schedule import add_schedule, make_schedule

        schedule = make_schedule(name, list(commands), cron=cron, every=every, job_name=job_name, max_attempts=max_attempts)
        run_sync(add_schedule(self.aio, schedule, replace=replace))
        run_sync(self.specs.wake(force=True))  # idle agents read the schedules again now, not within the hour
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

    def jobs(self, *, user: str | None = None, since: float | None = None) -> list[JobSpec]:
        """Every job in the jobspace, oldest first; ``user`` (a user name, or user@host) and ``since``
        (a wall-clock time) keep those submitted by that user, at or after that time."""
        out = []
        for meta in self.aio_list("jobs/"):
            if meta.key.endswith("/job.json") and meta.key.count("/") == 2:
                spec = run_sync(self.specs.job(meta.key.split("/")[1]))
                if user and user not in (spec.submitter, spec.submitter.split("@", 1)[0]):
                    continue
                if since is not None and spec.created < since:
                    continue
                out.append(spec)
        return out

    def job_statuses(self, *, state: str | Iterable[str] | None = None, user: str | None = None,
                     since: float | None = None) -> list[JobStatus]:
        """The status of every job (like ``squeue``/``sacct``: state, counts, elapsed, user, name), oldest
        first, without task rows; filtered by job ``state`` ('running', 'failed,cancelled' or a list of
        JOB_STATES), ``user`` and ``since`` as in ``jobs``."""
        try:
            wanted = parse_states(state, JOB_STATES)
        except ValueError as exc:
            raise UsageError(f"--state: {exc}") from None
        out = []
        for spec in self.jobs(user=user, since=since):
            status = Job(self, spec.id).status(rows=0)
            if wanted is None or status.state in wanted:
                out.append(status)
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
    image: str | None = None,
    indices: Sequence[int | None] = (None,),
    deps: Sequence[str] = (),
) -> Iterator[TaskSpec]:
    """One shell task per command line (blank lines and # comments skipped) and array index (``None``: no
    array; else ``QUBITS_ARRAY_INDEX`` is set), ids t000001, t000002 …"""
    extra: dict[str, Any] = {} if max_attempts is None else {"max_attempts": max_attempts}
    n = 0
    for line in commands:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for index in indices:
            n += 1
            task_env = dict(env or {})
            if index is not None:
                task_env["QUBITS_ARRAY_INDEX"] = str(index)
            yield TaskSpec(
                id=f"t{n:06d}",
                kind="shell",
                command=line,
                deps=list(deps),
                requires=sorted(requires),
                resources=dict(resources or {}),
                timeout=timeout,
                priority=priority,
                env=task_env,
                name=line[:200] if index is None else f"{line[:190]} [{index}]",
                not_before=not_before,
                image=image or None,
                **extra,
            )


def connect(jobspace: str | os.PathLike[str] | Jobspace | LocalCluster | None = None) -> Client:
    """Open a jobspace: a path, file://, memory://, s3://bucket/prefix?endpoint=…, gs://, az://.

    With no argument, the default ``map`` uses too: ``$QUBITS_JOBSPACE`` if set, else the local default
    (a folder and agents started on this machine, stopped when the process exits). A ``LocalCluster`` is
    started and its jobspace opened. Anything else is a ``UsageError`` here, not a failure at submit."""
    if jobspace is None:
        from ._local import default_cluster

        jobspace = os.environ.get("QUBITS_JOBSPACE") or default_cluster().url
    if isinstance(jobspace, LocalCluster):
        jobspace = jobspace.start().url
    if isinstance(jobspace, os.PathLike):
        jobspace = os.fspath(jobspace)
    if not isinstance(jobspace, (str, Jobspace)):
        raise UsageError(
            f"connect() takes a jobspace URL, a path, a Jobspace or a LocalCluster, not {type(jobspace).__name__}"
        )
    return Client(jobspace)
