"""Running a Qfile: code sync, submitting targets as a job, ``make`` on the embedded default, results.

Rerunning ``make`` redoes nothing already done. A job records its code digest (the bundle of the
project) and profile; a new job for the same digest and profile *reuses* earlier ones: a dependency that
succeeded in one of them counts as made, and its outputs are read from there. So ``make`` twice in a
row submits nothing the second time; after an interrupted ``make`` it resumes the same job; after a
failure it makes only what did not succeed. A change to any file of the bundle changes the digest and
starts afresh (content, not timestamps: there is no per-target freshness); ``force=True`` (``-B``) too.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jobspaces

from .. import _layout as layout
from .._bundle import pack
from .._client import Client, Job, JobStatus, connect
from .._local import LOCAL_STOP_TIMEOUT, LocalAgents
from .._records import JobSpec
from ..errors import QubitsError, UsageError
from ._graph import plan
from ._jobview import JobView
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


def upload_code(client: Client, root: Path, ignores: Iterable[str] = ()) -> str:
    """Pack ``root`` (minus ignores and .gitignore) and upload it once, by digest; the digest."""
    data, digest = pack(root, ignores)
    key = layout.code_bundle(digest)
    if not jobspaces.run_sync(client.aio.exists(key)):
        try:
            jobspaces.run_sync(client.aio.put(key, data, if_absent=True))
        except jobspaces.PreconditionFailed:
            pass  # uploaded by someone else meanwhile: same bytes
    return digest


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
    plan(qf, wanted, profile)
    client = client or connect(jobspace or config["jobspace"])
    digest = upload_code(client, qf.project, config["ignore"])
    return _submit(client, qf, wanted, profile, digest, [] if force else _earlier(client, digest, profile))


def _submit(client: Client, qf: Qfile, wanted: list[str], profile: str | None, digest: str, earlier: list[JobSpec]) -> Job:
    reuse = [s.id for s in earlier][:MAX_REUSE]
    job_config = {
        "qfile": qf.path.relative_to(qf.project).as_posix(),
        "profile": profile,
        "targets": wanted,
        "reuse": reuse,
        "project": qf.project.name,
    }
    return client.submit([root_spec(wanted)], kind="qfile", name="make " + " ".join(wanted), code=digest, config=job_config, dag=True)


def outputs(job: Job, targets: Iterable[str] | None = None) -> list[TargetOutput]:
    """Where the outputs of ``targets`` (default: the job's own) are: in this job or a reused one."""
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
        st = view.resolve(name)
        if st.outcome is None:
            out.append(TargetOutput(name, None))
            return
        prefix = f"{layout.run_prefix(st.job, st.tid, st.attempt)}out/"
        files = [k[len(prefix) :] for k in view.output_keys(st)] if st.succeeded else []
        if st.succeeded and not files and depth < 3:
            # No files of its own (like ``default``): show what it was made from.
            try:
                made = json.loads(js.get(layout.result(st.job, st.tid, st.attempt))[0])
                deps = [str(d) for d in made.get("deps") or []]
            except (jobspaces.NotFound, ValueError, AttributeError):
                deps = []
            if deps:
                for dep in deps:
                    add(dep, depth + 1)
                return
        local = Path(root) / prefix if isinstance(root, Path) and files else None
        out.append(TargetOutput(name, st.outcome, st.job, st.tid, st.attempt, prefix, files, local))

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
    on_progress: Callable[[JobStatus, float], None] | None = None,
    on_stopping: Callable[[float], None] | None = None,
    poll: float = 0.5,
) -> MakeResult:
    """Make ``targets`` here: submit them to the project's jobspace (the embedded default is a
    directory in the project), start ``agents`` agents as subprocesses, wait, and say where the
    results are. Redoes nothing already done (see the module's docstring).

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
        for node in nodes:
            lacking = set(target_spec(qf, config, node.target).requires) - have
            if lacking:
                raise UsageError(
                    f"target {node.target!r} requires {', '.join(sorted(lacking))}, which the agents started here lack: "
                    f"give them with -c CAP (capabilities=...), or pass --agents 0 if agents elsewhere serve {config['jobspace']}"
                )
    client = connect(config["jobspace"])
    digest = upload_code(client, qf.project, config["ignore"])
    earlier = [] if force else _earlier(client, digest, profile)
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
        job = _submit(client, qf, wanted, profile, digest, earlier)
        submitted = True
    status = job.status(rows=0)
    logs: list[Path] = []
    if not status.finished:
        state = qf.project / ".qubits"
        fleet = (
            LocalAgents(
                client.url, count, cache=state / "cache", logs=state / "logs",
                stem=f"make-{socket.gethostname()}-{os.getpid()}", ttl=MAKE_TTL, idle_exit=MAKE_IDLE_EXIT,
                capabilities=tuple(capabilities),
            )
            if count > 0
            else None
        )
        logs = fleet.logs if fleet else []
        try:
            while True:
                status = job.status(rows=0)
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
    return MakeResult(job, status, submitted, outputs(job, wanted), time.monotonic() - started, logs)
