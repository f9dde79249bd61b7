"""Running one claimed task: its folder, its command, its output, and how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jobspaces
from qubits.protocol import (
    CONTROL_EXIT,
    INLINE_RESULT_MAX,
    LOG_FLUSH,
    XREF,
    AttemptEnd,
    Claim,
    Dag,
    Frame,
    JobSpec,
    Lease,
    Outcome,
    ReadyEntry,
    extract,
    kinds,
    layout,
    split,
)

from . import _containers as containers
from ._confine import Bound, Confinement
from ._fairshare import FairShare
from ._leases import supervise
from ._locality import DataLocality
from ._pool import PooledTask, WorkerPool
from ._process import TaskProcess

if TYPE_CHECKING:
    from ._agent import Agent
log = logging.getLogger("qubits.agent")


class Executor:
    """Runs tasks for one agent."""

    def __init__(self, agent: Agent, cache_dir: Path) -> None:
        self.agent = agent
        self.cache = cache_dir
        self.procs: dict[str, TaskProcess | PooledTask] = {}
        self._interrupts: dict[str, asyncio.Event] = {}
        self.dag = Dag(agent.proto, agent.specs)
        self.data = DataLocality(agent, cache_dir)
        self.pool = WorkerPool(agent.config.slots, cache_dir / "work")
        self.confinement = Confinement(agent.config)
        self.fairshare = FairShare(agent.specs, agent.config.share_weights)

    # -- hooks used by the agent ---------------------------------------------------------------------
    def order_ready(self, entries: list[ReadyEntry], start: int = 0, *, fresh: bool = True) -> None:
        """Order ready entries: by fair share between submitters, then priority, then data locality
        (see ``DataLocality.order`` and ``FairShare.order``)."""
        self.data.order(entries, start, fresh=fresh)
        self.fairshare.order(entries, start, fresh=fresh)

    def set_paused(self, claim: Claim, paused: bool) -> None:
        proc = self.procs.get(f"{claim.job}/{claim.task}")
        if proc is not None:
            proc.pause() if paused else proc.resume()

    def interrupt(self, claim: Claim, release: bool = True) -> None:
        event = self._interrupts.get(f"{claim.job}/{claim.task}")
        if event is not None:
            event.set()

    async def after_commit(self, claim: Claim, outcome: Outcome) -> None:
        """A hook after this agent decided a task (dependents are released by the protocol's
        finalize, through Dag.on_decided), then the job kind's own (``qubits._kinds``: a batch archives
        the result and notifies). Never raises: the outcome stands whatever happens here, and the agent
        must not treat the task as crashed."""
        node = self.agent.config.name
        try:
            job = await self.agent.specs.job(claim.job)
            hook = kinds.after_commit(job.kind)
            if hook is not None:
                await hook(self.agent.js, job, claim, outcome, node)
        except Exception:  # noqa: BLE001 - logged; the archive or a message is what failed, not the task
            log.exception("archiving or notifying failed", extra={"action": "archive", "job": claim.job, "task": claim.task, "node": node})

    async def check_parked(self, key: str, lease: Lease, etag: str, silent: float) -> None:
        await self.dag.check_parked(key, lease, etag, silent)

    # -- running ------------------------------------------------------------------------------------
    async def prepare(self, job: JobSpec) -> Path:
        """The folder a job's tasks run in: its code bundle, fetched once and cached by digest."""
        if not job.code:
            path = self.cache / "work" / job.id
            path.mkdir(parents=True, exist_ok=True)
            return path
        dest = self.cache / "code" / job.code
        if not dest.is_dir():
            data, _ = await self.agent.js.get(layout.code_bundle(job.code))
            await asyncio.to_thread(extract, data, job.code, dest)
        return dest

    def command(self, claim: Claim, job: JobSpec) -> list[str]:
        spec = claim.spec
        if spec.kind == "shell":
            if job.kind == "batch":  # files and the per-node init step first (see _batchrun)
                return [sys.executable, "-m", "nodeagent._batchrun", str(spec.command)]
            return ["/bin/sh", "-c", str(spec.command)]
        if spec.kind == "argv":
            return [str(a) for a in (spec.command or [])]
        if kinds.runs_in_python(spec.kind):
            return [sys.executable, "-m", "nodeagent._pyexec"]
        raise ValueError(f"unknown task kind {spec.kind!r}")

    async def run(self, claim: Claim) -> AttemptEnd:
        if claim.spec.kind == "after":  # a gate on another job: no process (see qubits._after)
            return await self.dag.gate(claim)
        agent = self.agent
        others = [d for d in claim.spec.deps if d.startswith(XREF)]
        if others:  # tasks of other jobs: run once they succeeded (parked until then)
            waited = await self.dag.await_others(claim, others)
            if waited is not None:
                return waited
        job = await agent.specs.job(claim.job)
        await agent.specs.verify(job)
        cwd = await self.prepare(job)
        scratch = self.cache / "runs" / claim.job / claim.task / str(claim.attempt)
        shutil.rmtree(scratch, ignore_errors=True)
        (scratch / "out").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(claim.spec.env)
        env.update(
            QUBITS_JOB=claim.job,
            QUBITS_TASK=claim.task,
            QUBITS_ATTEMPT=str(claim.attempt),
            QUBITS_NODE=agent.config.name,
            QUBITS_JOBSPACE=agent.config.jobspace,
            QUBITS_OUTPUT=str(scratch / "out"),
            QUBITS_SCRATCH=str(scratch),
            QUBITS_CODE=str(cwd),
            QUBITS_CACHE=str(self.cache),
        )
        if kinds.runs_in_python(claim.spec.kind) or job.kind == "batch":
            (scratch / "spec.json").write_text(json.dumps({"task": claim.spec.to_dict(), "job": job.to_dict()}))
            await self.data.prefetch(claim.spec, job)
        flushed = [0]

        async def sink(frames: list[Frame]) -> None:
            """Flush n: the order of its two streams first (a reader that sees it waits for both),
            then each stream's part. A failed flush is sent again, whole, under the same n."""
            parts, order = split(frames)
            n = flushed[0]
            if order is not None:
                await agent.js.put(layout.log_order(claim.job, claim.task, claim.attempt, n), order)
            for stream, data in parts.items():
                await agent.js.put(layout.log_part(claim.job, claim.task, claim.attempt, stream, n), data)
            flushed[0] += 1

        key = f"{claim.job}/{claim.task}"
        try:
            bound = self.confinement.bind(key, claim.spec)
        except (OSError, RuntimeError) as exc:
            return AttemptEnd(Outcome.FAILED, f"could not set this task's limits on {agent.config.name}: {exc}")
        env.update(bound.env)
        env["QUBITS_CONTAINER_RUNTIMES"] = ",".join(self.confinement.runtimes)  # a batch runner needs no probe
        proc: TaskProcess | PooledTask
        if self.pool.serves(claim.spec) and not bound.own_process and not claim.spec.image:
            proc = PooledTask(self.pool, job.code or "", cwd=cwd, env=env, scratch=scratch, sink=sink, flush_every=LOG_FLUSH)
        else:
            argv = self.command(claim, job)
            if claim.spec.image and job.kind != "batch":  # a batch job enters its image in _batchrun
                try:
                    argv = self.confinement.in_image(bound, claim.spec, argv, binds=[cwd, scratch], workdir=cwd, env=env,
                                                     name=containers.container_name(key, claim.attempt))
                except RuntimeError as exc:
                    await self.confinement.release(bound)
                    return AttemptEnd(Outcome.FAILED, str(exc))
            proc = TaskProcess(bound.wrap(argv), cwd=cwd, env=env, sink=sink, flush_every=LOG_FLUSH)
        interrupt = asyncio.Event()
        self.procs[key] = proc
        self._interrupts[key] = interrupt
        self.fairshare.started(job.submitter)
        try:
            await proc.start()
            if isinstance(proc, TaskProcess) and proc.proc is not None:
                self.confinement.limits.started(bound.limits, proc.proc.pid, _exited(proc.proc), f"QUBITS_SCRATCH={scratch}", _pipes_held(proc.proc))
            if agent.control.paused:
                proc.pause()
            waiter = asyncio.ensure_future(proc.wait())
            stopper = asyncio.ensure_future(interrupt.wait())
            supervisor = asyncio.ensure_future(supervise(agent, claim, waiter))
            finished, _ = await asyncio.wait({supervisor, stopper}, return_when=asyncio.FIRST_COMPLETED)
            why = supervisor.result() if supervisor in finished else "interrupted"
            if why == "interrupted":
                supervisor.cancel()
            stopper.cancel()
            if why != "exited":
                if why == "lost":
                    proc.kill()
                else:
                    await proc.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
            code = waiter.result() if waiter.done() and not waiter.cancelled() else -9
            return await self._ended(claim, job, why, code, scratch, bound)
        finally:
            self.fairshare.ended(job.submitter)
            await self.confinement.release(bound)
            self.procs.pop(key, None)
            self._interrupts.pop(key, None)
            if not why_keep_scratch():
                shutil.rmtree(scratch, ignore_errors=True)

    async def _ended(self, claim: Claim, job: JobSpec, why: str, code: int, scratch: Path, bound: Bound) -> AttemptEnd:
        if why == "exited" and (oom := self.confinement.out_of_memory(bound, code)):
            return AttemptEnd(Outcome.FAILED, oom, code, final=True)  # the same limit would be hit again
        if why == "lost":
            return AttemptEnd(None, "lease lost")
        if why == "cancelled":
            return AttemptEnd(Outcome.CANCELLED, "the job was cancelled", code, final=True)
        if why == "task-cancelled":
            return AttemptEnd(Outcome.CANCELLED, "the task was cancelled", code, final=True)
        if why == "interrupted":
            return AttemptEnd(Outcome.FAILED, "the agent was stopped", code, interrupted=True)
        if why == "timeout":
            return AttemptEnd(Outcome.FAILED, f"timed out after {claim.spec.timeout:g}s", code)
        if code == CONTROL_EXIT and (scratch / "control.json").is_file():
            control = json.loads((scratch / "control.json").read_text())
            return await self.dag.on_control(claim, control, self.agent)
        inline = bool(((job.config or {}).get("map") or {}).get("inline"))
        has_result, value = await self._upload_outputs(claim, scratch, inline)
        if code == 0:
            return AttemptEnd(Outcome.SUCCEEDED, None, 0, has_result=has_result, value=value)
        error = _error_text(scratch, code)
        return AttemptEnd(Outcome.FAILED, error, code, has_result=has_result, value=value, final=not _retryable(scratch))

    async def _upload_outputs(self, claim: Claim, scratch: Path, inline: bool) -> tuple[bool, bytes | None]:
        """Files in QUBITS_OUTPUT go under the attempt's own prefix; a Python result likewise, or, when
        the job asked for it and it is small, back to the caller to travel in the done record.
        Whether there is a result, and its bytes when they travel inline."""
        js = self.agent.js
        prefix = layout.run_prefix(claim.job, claim.task, claim.attempt)
        out = scratch / "out"
        for path in sorted(out.rglob("*")):
            if path.is_file() and not path.is_symlink():
                rel = path.relative_to(out).as_posix()
                with contextlib.suppress(jobspaces.InvalidKey):
                    await js.put(f"{prefix}out/{rel}", path.read_bytes())
        result = scratch / "result"
        if not result.is_file():
            return False, None
        data = result.read_bytes()
        if inline and len(data) <= INLINE_RESULT_MAX:
            return True, data
        await js.put(layout.result(claim.job, claim.task, claim.attempt), data)
        return True, None


def _exited(proc: asyncio.subprocess.Process) -> Callable[[], bool]:
    return lambda: proc.returncode is not None


def _pipes_held(proc: asyncio.subprocess.Process) -> Callable[[], bool]:
    """Whether a process still holds the task's output pipes open (their reader has not seen the end)."""
    return lambda: not all(stream is None or stream.at_eof() for stream in (proc.stdout, proc.stderr))


def why_keep_scratch() -> bool:
    """Keep attempt folders for debugging when QUBITS_KEEP_SCRATCH is set."""
    return bool(os.environ.get("QUBITS_KEEP_SCRATCH"))


def _retryable(scratch: Path) -> bool:
    """A runner's error.json may say a retry cannot help (a Python exception, by default)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return bool(json.loads((scratch / "error.json").read_text()).get("retry", True))
    return True


def _error_text(scratch: Path, code: int) -> str:
    err = scratch / "error.json"
    if err.is_file():
        with contextlib.suppress(ValueError):
            raw: dict[str, Any] = json.loads(err.read_text())
            return str(raw.get("error") or f"exit status {code}")
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit status {code}"
