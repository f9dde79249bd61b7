"""Running a Qfile: code sync, submitting targets as a job, ``make`` on the embedded default, results.

Rerunning ``make`` redoes nothing already done, per target and by content: a target runs only if no
job in the jobspace made its identity (``_fresh``: its code, groups, config and input files read, its
dependencies' output digests; ``_index``: who made which). ``make`` finds on the client what is made
already and submits only the rest (nothing at all when everything is); a node checks again what the
client could not know (dependencies decided at run time), before the recipe runs. A job of the same
code bundle and profile is also reused as a whole: after an interrupted ``make`` it resumes that job,
after a failure it makes only what did not succeed. ``force=True`` (``-B``) makes everything again,
``force_targets`` (``--force``) those targets and what depends on them."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jobspaces

from .._bundle import upload_code
from .._client import Client, Job, JobStatus, connect
from .._events import JobEvents, TaskEvent
from .._local import LOCAL_STOP_TIMEOUT, LocalAgents
from .._records import JobSpec, Outcome
from ..errors import QubitsError, UsageError
from ._graph import Node, plan
from ._index import Verdict, assess, record_job, why
from ._jobview import DepState, JobView
from ._model import Qfile, find_qfile, load_qfile
from ._tasks import root_spec, target_spec

MAX_REUSE = 20
"""Earlier jobs a new job reuses results from (newest first)."""
MAKE_TTL = 5.0
"""Lease ttl of the agents ``make`` starts: a crashed one's task is taken over within seconds."""
MAKE_IDLE_EXIT = 300.0
"""Agents started by ``make`` exit on their own after this long idle, should ``make`` die."""


@dataclass
class TargetOutput:
    """Where a made target's outputs are."""

    target: str
    outcome: str | None
    job: str = ""
    task: str = ""
    attempt: int = 0
    prefix: str = ""
    """The key prefix of its files in the jobspace."""
    files: list[str] = field(default_factory=list)
    """File names under ``prefix``."""
    local: Path | None = None
    """The folder on this machine, when the jobspace is a local directory."""

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "local": str(self.local) if self.local else None}


@dataclass
class MakeResult:
    """How a ``make`` ended."""

    job: Job
    status: JobStatus
    submitted: bool
    """False when everything was made already (nothing ran) or an unfinished job was resumed."""
    outputs: list[TargetOutput]
    elapsed: float = 0.0
    agent_logs: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.outcome == "succeeded" for o in self.outputs)


def project_jobspace(path: Path | str = ".", profile: str | None = None, qfile: str | None = None) -> str:
    """The jobspace URL a project's Qfile configures (the embedded default: ``.qubits/jobspace``)."""
    return str(load_qfile(find_qfile(path, qfile), profile).resolve(profile)["jobspace"])


def _earlier(client: Client, digest: str, profile: str | None) -> list[JobSpec]:
    """Jobs of the same code and profile, newest first."""
    same = [
        s
        for s in client.jobs()
        if s.kind == "qfile" and s.code == digest and s.config.get("profile") == profile
    ]
    return sorted(same, key=lambda s: (s.created, s.id), reverse=True)


def _load(project: Path | str, qfile: str | None, profile: str | None) -> tuple[Qfile, dict[str, Any]]:
    qf = load_qfile(find_qfile(project, qfile), profile)
    return qf, qf.resolve(profile)


def submit_targets(
    targets: Iterable[str] = (),
    *,
    project: Path | str = ".",
    profile: str | None = None,
    qfile: str | None = None,
    jobspace: str | None = None,
    force: bool = False,
    client: Client | None = None,
) -> Job:
    """Submit ``targets`` (default: ``default``) of the project's Qfile as one job; its handle.

    The graph is planned first (a static cycle or a target no rule makes fails here, before anything
    is written); the code is uploaded once by digest; earlier jobs of the same code are reused unless
    ``force``.
    """
    qf, config = _load(project, qfile, profile)
    wanted = qf.targets_default(targets)
    nodes = plan(qf, wanted, profile)
    client = client or connect(jobspace or config["jobspace"])
    digest = upload_code(client, qf.project, config["ignore"])
    earlier = [] if force else _earlier(client, digest, profile)
    fresh = {} if force else _hints(nodes, wanted, assess(qf, config, nodes, jobspaces.SyncJobspace(client.aio)))
    return _submit(client, qf, wanted, profile, digest, earlier, fresh=fresh, force=force)


def forced_closure(nodes: list[Node], force: Iterable[str]) -> set[str]:
    """The targets ``force`` names and those of the planned graph that depend on them."""
    out = set(force)
    for node in nodes:  # dependencies first
        if any(d in out for d in node.deps):
            out.add(node.target)
    return out


def _hints(nodes: list[Node], wanted: list[str], verdicts: dict[str, Verdict], forced: Set[str] = frozenset()) -> dict[str, list[Any]]:
    """The fresh targets a job needs to know of: those wanted, and the fresh dependencies of the
    targets it makes (the rest of what is fresh is never looked at)."""

    def fresh(t: str) -> bool:
        return t not in forced and verdicts[t].fresh

    names = {t for t in wanted if t in verdicts and fresh(t)}
    for node in nodes:
        if not fresh(node.target):
            names.update(d for d in node.deps if fresh(d))
    out: dict[str, list[Any]] = {}
    for t in sorted(names):
        entry = verdicts[t].entry or {}
        out[t] = [entry["job"], entry["task"], entry["attempt"]]
    return out


def _submit(
    client: Client,
    qf: Qfile,
    wanted: list[str],
    profile: str | None,
    digest: str,
    earlier: list[JobSpec],
    *,
    fresh: dict[str, list[Any]] | None = None,
    force: bool | list[str] = False,
) -> Job:
    reuse = [s.id for s in earlier][:MAX_REUSE]
    job_config: dict[str, Any] = {
        "qfile": qf.path.relative_to(qf.project).as_posix(),
        "profile": profile,
        "targets": wanted,
        "reuse": reuse,
        "project": qf.project.name,
    }
    if fresh:
        job_config["fresh"] = fresh
    if force:
        job_config["force"] = force
    return client.submit([root_spec(wanted)], kind="qfile", name="make " + " ".join(wanted), code=digest, config=job_config, dag=True)


def explain(
    target: str,
    *,
    project: Path | str = ".",
    profile: str | None = None,
    qfile: str | None = None,
    force: bool = False,
    force_targets: Iterable[str] = (),
) -> list[str]:
    """Why ``make`` would run or reuse ``target`` (``make --why``), in lines; nothing is made."""
    qf, config = _load(project, qfile, profile)
    wanted = sorted({target, *force_targets})
    nodes = plan(qf, wanted, profile)
    js = jobspaces.SyncJobspace(connect(config["jobspace"]).aio)
    return why(qf, config, nodes, js, target, force=force, forced=forced_closure(nodes, force_targets))


def outputs(job: Job, targets: Iterable[str] | None = None, fresh: dict[str, list[Any]] | None = None) -> list[TargetOutput]:
    """Where the outputs of ``targets`` (default: the job's own) are: in this job or a reused one
    (``fresh``: targets found made by their identity, which take precedence)."""
    spec = job.spec()
    names = list(targets) if targets is not None else [str(t) for t in spec.config.get("targets") or []]
    js = jobspaces.SyncJobspace(job.client.aio)
    view = JobView(js, spec)
    root = getattr(job.client.aio, "root", None)
    out: list[TargetOutput] = []
    seen: set[str] = set()

    def add(name: str, depth: int) -> None:
        if name in seen:
            return
        seen.add(name)
        hint = (fresh or {}).get(name)
        if hint:
            src = (str(hint[0]), str(hint[1]), int(hint[2]))
            st = DepState(name, src[1], 0, Outcome.SUCCEEDED.value, src[0], src[2], src)
        else:
            st = view.resolve(name)
        if st.outcome is None:
            out.append(TargetOutput(name, None))
            return
        prefix = st.prefix
        files = [k[len(prefix) :] for k in view.output_keys(st)] if st.succeeded else []
        if st.succeeded and not files and depth < 3:
            # No files of its own (like ``default``): show what it was made from.
            deps = [str(d) for d in view.made(st).get("deps") or []]
            if deps:
                for dep in deps:
                    add(dep, depth + 1)
                return
        local = Path(root) / prefix if isinstance(root, Path) and files else None
        out.append(TargetOutput(name, st.outcome, st.run[0], st.run[1], st.run[2], prefix, files, local))

    for name in names:
        add(name, 0)
    return out


def make(
    targets: Iterable[str] = (),
    *,
    project: Path | str = ".",
    profile: str | None = None,
    qfile: str | None = None,
    agents: int | None = None,
    capabilities: Iterable[str] = (),
    force: bool = False,
    force_targets: Iterable[str] = (),
    on_progress: Callable[[JobStatus, float], None] | None = None,
    on_stopping: Callable[[float], None] | None = None,
    poll: float = 0.5,
    on_event: Callable[[TaskEvent], None] | None = None,
) -> MakeResult:
    """Make ``targets`` here: submit them to the project's jobspace (the embedded default is a
    directory in the project), start ``agents`` agents as subprocesses, wait, and say where the
    results are. Redoes nothing already done (see the module's docstring); ``force``: everything
    again; ``force_targets``: those targets again, and what depends on them. ``on_event`` is called with
    each claim, wait, release, commit and agent as it happens (``make -v``; see ``Job.events``).

    On KeyboardInterrupt the agents get LOCAL_STOP_TIMEOUT seconds for their running tasks
    (``on_stopping(seconds)`` is called first, to say so); a second KeyboardInterrupt meanwhile stops
    them and their tasks at once. The job is kept either way: make again to resume it."""
    started = time.monotonic()
    qf, config = _load(project, qfile, profile)
    wanted = qf.targets_default(targets)
    nodes = plan(qf, wanted, profile)
    count = agents if agents is not None else int(config.get("agents") or max(2, min(4, os.cpu_count() or 2)))
    if count > 0:
        have = set(capabilities)
        one_per_rule = {id(n.match.rule) if n.match else n.target: n for n in reversed(nodes)}  # requires are per rule
        for node in reversed(one_per_rule.values()):
            lacking = set(target_spec(qf, config, node.target).requires) - have
            if lacking:
                raise UsageError(
                    f"target {node.target!r} requires {', '.join(sorted(lacking))}, which the agents started here lack: "
                    f"give them with -c CAP (capabilities=...), or pass --agents 0 if agents elsewhere serve {config['jobspace']}"
                )
    client = connect(config["jobspace"])
    js = jobspaces.SyncJobspace(client.aio)
    digest = upload_code(client, qf.project, config["ignore"])
    forced = sorted(forced_closure(nodes, force_targets))
    if force_targets:
        unknown = sorted(set(force_targets) - {n.target for n in nodes})
        if unknown:
            raise UsageError(f"--force {unknown[0]}: not a target of this make (see `qubits qubits {' '.join(wanted)}`)")
    earlier = [] if force or forced else _earlier(client, digest, profile)
    job: Job | None = None
    submitted = False
    for spec in earlier:
        if list(spec.config.get("targets") or []) == wanted:
            candidate = Job(client, spec.id)
            status = candidate.status(rows=0)
            if not status.finished or all(o.outcome == "succeeded" for o in outputs(candidate, wanted)):
                job = candidate  # resume it, or nothing to do
            break
    if job is None:
        fresh: dict[str, list[Any]] = {}
        if not force:
            fresh = _hints(nodes, wanted, assess(qf, config, nodes, js), set(forced))
            if all(t in fresh for t in wanted):
                # Every target asked for is made already (by identity): nothing to submit.
                first = Job(client, fresh[wanted[0]][0])
                return MakeResult(first, first.status(rows=0), False, outputs(first, wanted, fresh), time.monotonic() - started)
        job = _submit(client, qf, wanted, profile, digest, earlier, fresh=fresh, force=True if force else forced)
        submitted = True
    status = job.status(rows=0)
    logs: list[Path] = []
    if not status.finished:
        state = qf.project / ".qubits"
        fleet = (
            LocalAgents(
                client.aio.handoff()["QUBITS_JOBSPACE"], count, cache=state / "cache", logs=state / "logs",
                stem=f"make-{socket.gethostname()}-{os.getpid()}", ttl=MAKE_TTL, idle_exit=MAKE_IDLE_EXIT,
                capabilities=tuple(capabilities),
            )
            if count > 0
            else None
        )
        logs = fleet.logs if fleet else []
        watcher = JobEvents(client, job.id) if on_event is not None else None
        try:
            while True:
                status = job.status(rows=0)
                if watcher is not None and on_event is not None:
                    for event in watcher.poll():
                        on_event(event)
                if on_progress is not None:
                    on_progress(status, time.monotonic() - started)
                if status.finished:
                    break
                if fleet is not None and fleet.alive() == 0:
                    raise QubitsError(f"the agents of this make stopped before job {job.id} finished; see {logs[0].parent}")
                time.sleep(poll)
        except KeyboardInterrupt:
            if fleet is not None:
                if on_stopping is not None:
                    on_stopping(LOCAL_STOP_TIMEOUT)
                try:
                    fleet.stop()
                except KeyboardInterrupt:
                    raise KeyboardInterrupt(f"stopped its agents and their tasks now; job {job.id} is kept: make again to resume it") from None
                finally:
                    fleet = None
            raise KeyboardInterrupt(f"job {job.id} is kept: make again to resume it") from None
        finally:
            if fleet is not None:
                fleet.stop()
        status = job.status()
        record_job(js, job.id)  # what succeeded is reusable, even where a dependent failed
    return MakeResult(job, status, submitted, outputs(job, wanted), time.monotonic() - started, logs)
