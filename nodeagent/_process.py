"""One task as a subprocess in its own process group: output streamed in parts, stop, pause, kill."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from qubits.protocol import Frame

LogSink = Callable[[list[Frame]], Awaitable[None]]
"""Receives what a task wrote since the last flush: (stream, bytes) frames in the order they were read."""

_PR_SET_PDEATHSIG = 1


_SETPRIV = shutil.which("setpriv") if sys.platform == "linux" else None
"""util-linux's setpriv, when installed: it sets PR_SET_PDEATHSIG and execs the task."""


def _die_with_agent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL the task if its agent dies, so a dead agent leaves no orphan working on."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class GroupTask:
    """What a running task can be told, in terms of a signal to its process group: pause (SIGSTOP),
    resume, stop (SIGTERM, then SIGKILL after a grace) and kill; and its output flushed every
    ``flush_every`` seconds while it runs. Subclasses say how to signal, what to wait on, and flush."""

    flush_every: float
    paused: bool = False
    _flusher: asyncio.Task[None] | None = None

    def signal_group(self, sig: int) -> None:
        raise NotImplementedError

    def _live(self) -> asyncio.subprocess.Process | None:
        """The process whose exit ends the task, while it runs."""
        raise NotImplementedError

    async def flush(self) -> None:
        raise NotImplementedError

    def _start_flushing(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            await self.flush()

    async def _stop_flushing(self) -> None:
        """Stop the periodic flush and send the rest."""
        if self._flusher:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    def pause(self) -> None:
        self.signal_group(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal_group(signal.SIGCONT)
        self.paused = False

    async def stop(self, grace: float = 3.0) -> None:
        """SIGTERM the group, then SIGKILL after ``grace`` seconds."""
        proc = self._live()
        if proc is None:
            return
        if self.paused:
            self.resume()
        self.signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
        except TimeoutError:
            self.kill()

    def kill(self) -> None:
        self.signal_group(signal.SIGCONT)
        self.signal_group(signal.SIGKILL)


class TaskProcess(GroupTask):
    """A running command. ``wait()`` returns its exit code (negative: killed by that signal)."""

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        sink: LogSink,
        flush_every: float,
    ) -> None:
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.sink = sink
        self.flush_every = flush_every
        self.proc: asyncio.subprocess.Process | None = None
        self._frames: list[tuple[str, bytearray]] = []
        """What the task wrote since the last flush, in the order it was read from its two pipes."""
        self._readers: list[asyncio.Task[None]] = []
        self._flush_lock = asyncio.Lock()

    async def start(self) -> None:
        # setpriv sets the parent-death signal and execs the task: Python then spawns without running
        # code in the forked child (a preexec_fn), which blocks the agent's loop for milliseconds.
        argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *self.argv] if _SETPRIV else self.argv
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: signals reach its children too
            preexec_fn=_die_with_agent if sys.platform == "linux" and not _SETPRIV else None,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read("stdout", self.proc.stdout)),
            asyncio.create_task(self._read("stderr", self.proc.stderr)),
        ]
        self._start_flushing()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def _read(self, name: str, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            if self._frames and self._frames[-1][0] == name:
                self._frames[-1][1].extend(chunk)
            else:
                self._frames.append((name, bytearray(chunk)))

    async def flush(self) -> None:
        """Send what was written since the last flush (a failed upload keeps the bytes for the next)."""
        async with self._flush_lock:
            frames, self._frames = self._frames, []
            if not frames:
                return
            try:
                await self.sink([(name, bytes(data)) for name, data in frames])
            except Exception:  # noqa: BLE001 - logs are best effort while running
                self._frames = frames + self._frames

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        # A background child that kept the pipes open must not hold the task forever.
        _, pending = await asyncio.wait(self._readers, timeout=2.0)
        for reader in pending:
            reader.cancel()
        await self._stop_flushing()
        return code

    def _live(self) -> asyncio.subprocess.Process | None:
        return self.proc if self.proc is not None and self.proc.returncode is None else None

    def signal_group(self, sig: int) -> None:
        if self._live() is None:
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
