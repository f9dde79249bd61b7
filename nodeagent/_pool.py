"""A pool of long-lived Python workers, so a Python task does not pay for an interpreter start.

Tasks of kind "python" and "map" run in a pooled worker (``_pyworker.py``) unless the task asks for
isolation (``payload.isolate``; ``qubits.map(..., isolate=True)``) or the agent runs with
``QUBITS_POOL=0``; then they run as their own subprocess like any other task (``_process.py``).

A worker is bound to the code bundle of the first job it serves (modules imported from one code folder
must not leak into another job's tasks); jobs without a bundle share workers. The pool holds at most
``size`` workers (the agent's slots), starts them ahead of need, and replaces one that was killed.

``PooledTask`` has the same surface as ``TaskProcess``: stop, kill and pause signal the worker's
process group, so a timeout or a cancel kills the worker (the pool starts another), and a pause
SIGSTOPs it with the lease kept alive by the agent as for any task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from qubits.protocol import TaskSpec, kinds

from ._process import GroupTask, LogSink, _die_with_agent

log = logging.getLogger("qubits.agent")

MAX_TASKS_PER_WORKER = 10_000
"""A worker is replaced after this many tasks (bounds leaks in user code)."""
START_TIMEOUT = 60.0
"""Seconds a new worker has to say it is ready."""


def pool_enabled() -> bool:
    """Pooled workers unless QUBITS_POOL=0."""
    return os.environ.get("QUBITS_POOL", "1").lower() not in ("0", "false", "no", "off")


class Worker:
    """One ``python -m nodeagent._pyworker`` process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.key: str | None = None
        self.tasks = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.returncode is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)


class WorkerPool:
    """Up to ``size`` workers for one agent."""

    def __init__(self, size: int, cwd: Path) -> None:
        self.size = max(1, size)
        self.cwd = cwd
        self.idle: list[Worker] = []
        self.busy: set[Worker] = set()
        self._starting = 0
        self._spares: set[asyncio.Task[None]] = set()

    @staticmethod
    def serves(spec: TaskSpec) -> bool:
        return kinds.pooled(spec.kind) and not (spec.payload or {}).get("isolate") and pool_enabled()

    def total(self) -> int:
        return len(self.idle) + len(self.busy) + self._starting

    async def _spawn(self) -> Worker:
        self._starting += 1
        try:
            self.cwd.mkdir(parents=True, exist_ok=True)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "nodeagent._pyworker",
                cwd=self.cwd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own group: a stop reaches whatever the task started
                preexec_fn=_die_with_agent if sys.platform == "linux" else None,
            )
            worker = Worker(proc)
            assert proc.stdout is not None
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
            except TimeoutError:
                line = b""
            if not line:
                worker.signal(signal.SIGKILL)
                await proc.wait()
                raise RuntimeError(f"a pooled Python worker did not start (exit status {proc.returncode}); see the agent log")
            log.debug("worker started", extra={"action": "worker", "reason": f"pid {proc.pid}"})
            return worker
        finally:
            self._starting -= 1

    def _spare(self) -> None:
        """Start a worker in the background (ready before the next task asks)."""

        async def start() -> None:
            try:
                worker = await self._spawn()
            except (OSError, RuntimeError) as exc:
                log.warning("could not start a spare worker: %s", exc, extra={"action": "worker"})
                return
            self.idle.append(worker)

        task = asyncio.create_task(start())
        self._spares.add(task)
        task.add_done_callback(self._spares.discard)

    async def acquire(self, key: str) -> Worker:
        """A worker for code bundle ``key`` ("" for none), started if need be."""
        self.idle = [w for w in self.idle if w.alive()]
        worker = next((w for w in self.idle if w.key == key), None) or next((w for w in self.idle if w.key is None), None)
        if worker is None:
            while self.total() >= self.size and self.idle:
                stale = self.idle.pop(0)  # bound to another bundle: make room
                stale.signal(signal.SIGKILL)
            worker = await self._spawn()
            for _ in range(self.size - self.total() - 1):  # -1: the one we are about to hand out
                self._spare()
        else:
            self.idle.remove(worker)
        worker.key = key
        self.busy.add(worker)
        return worker

    def release(self, worker: Worker) -> None:
        """Back to idle after a task that ended normally."""
        self.busy.discard(worker)
        worker.tasks += 1
        if worker.alive() and worker.tasks < MAX_TASKS_PER_WORKER:
            self.idle.append(worker)
        else:
            self.discard(worker)

    def discard(self, worker: Worker) -> None:
        """Forget a worker that was killed or died (and start a replacement)."""
        self.busy.discard(worker)
        worker.signal(signal.SIGKILL)
        if self.total() < self.size:
            self._spare()

    def close(self) -> None:
        for worker in [*self.idle, *self.busy]:
            worker.signal(signal.SIGKILL)
        self.idle.clear()
        self.busy.clear()


class PooledTask(GroupTask):
    """One task in a pooled worker, with the surface of ``TaskProcess``."""

    def __init__(self, pool: WorkerPool, key: str, *, cwd: Path, env: dict[str, str], scratch: Path, sink: LogSink, flush_every: float) -> None:
        self.pool = pool
        self.key = key
        self.cwd = cwd
        self.env = env
        self.scratch = scratch
        self.sink = sink
        self.flush_every = flush_every
        self.worker: Worker | None = None
        self._offsets = {"stdout": 0, "stderr": 0}
        self._flush_lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self.worker.pid if self.worker else None

    async def start(self) -> None:
        self.worker = await self.pool.acquire(self.key)
        request: dict[str, Any] = {"scratch": str(self.scratch), "cwd": str(self.cwd), "env": self.env}
        assert self.worker.proc.stdin is not None
        self.worker.proc.stdin.write(json.dumps(request).encode() + b"\n")
        await self.worker.proc.stdin.drain()
        self._start_flushing()

    async def flush(self) -> None:
        """Upload what the task wrote since the last flush (a failed upload is retried next time)."""
        async with self._flush_lock:
            frames = []  # two files: their order within one flush is not known (stdout first)
            for name in ("stdout", "stderr"):
                path = self.scratch / f"{name}.log"
                try:
                    with open(path, "rb") as fh:
                        fh.seek(self._offsets[name])
                        data = fh.read()
                except FileNotFoundError:
                    continue
                if data:
                    frames.append((name, data))
            if not frames:
                return
            try:
                await self.sink(frames)
            except Exception:  # noqa: BLE001 - logs are best effort while running
                return
            for name, data in frames:
                self._offsets[name] += len(data)

    async def wait(self) -> int:
        worker = self.worker
        assert worker is not None and worker.proc.stdout is not None
        line = await worker.proc.stdout.readline()
        code: int | None = None
        if line:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                code = int(json.loads(line)["code"])
        if code is None:  # the worker died (killed, or crashed under the task)
            code = await worker.proc.wait()
            self.pool.discard(worker)
        else:
            self.pool.release(worker)
        await self._stop_flushing()
        return code

    def _live(self) -> asyncio.subprocess.Process | None:
        """The worker: SIGTERM of its group ends it with its task (it is not given back to the pool)."""
        return self.worker.proc if self.worker is not None and self.worker.alive() else None

    def signal_group(self, sig: int) -> None:
        if self.worker is not None:
            self.worker.signal(sig)
