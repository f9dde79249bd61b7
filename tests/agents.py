"""Agents as real processes, for tests: start, SIGTERM, kill -9, freeze (SIGSTOP) and thaw."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TAKEOVER_SLACK = 15.0
"""Seconds allowed beyond ttl + margin + one scan interval for a takeover to show in a test: process
start-up and a loaded 2-core machine (the bound stays far below the 30 s quiet lease scan)."""


class AgentProcess:
    """``qubits agent`` in its own process (and process group)."""

    def __init__(
        self,
        jobspace: str,
        *,
        cache: Path,
        slots: int = 2,
        ttl: float = 2.0,
        name: str | None = None,
        capabilities: tuple[str, ...] = (),
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        log: Path | None = None,
        exit_when_idle: float | None = None,
        preload: str | None = None,
        wrapper: tuple[str, ...] = (),
    ) -> None:
        """``wrapper`` runs the agent through another command (e.g. ``ip netns exec NS``)."""
        args = [*wrapper, sys.executable, "-m", "qubits.cli", "--log-level", "INFO", "agent", "--jobspace", jobspace, "--slots", str(slots), "--ttl", str(ttl), "--allow-root"]
        if name:
            args += ["--name", name]
        for cap in capabilities:
            args += ["--capability", cap]
        if exit_when_idle is not None:
            args += ["--exit-when-idle", str(exit_when_idle)]
        args += list(extra)
        full_env = {**os.environ, "QUBITS_CACHE": str(cache), "PYTHONUNBUFFERED": "1", **(env or {})}
        if preload:
            full_env["LD_PRELOAD"] = preload
        self.log_path = log or cache / f"agent-{name or 'x'}-{time.monotonic_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.name = name

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the agent and everything it started (its tasks are in their own groups)."""
        for pid in _descendants(self.proc.pid):
            _signal(pid, signal.SIGKILL)
        _signal(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def freeze(self) -> None:
        _signal(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        _signal(self.proc.pid, signal.SIGCONT)

    def term(self) -> None:
        _signal(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            self.thaw()
            self.term()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._log.close()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def alive_pid(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out.append(int(child))
        out.extend(_descendants(int(child)))
    return out


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120.0, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``qubits ARGS`` as a process; returns the completed process (text)."""
    return subprocess.run(
        [sys.executable, "-m", "qubits.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )
