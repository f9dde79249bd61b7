"""A cluster on this machine: a local-directory jobspace and agents as subprocesses.

``qubits.map(fn, items)`` with no jobspace (and no ``QUBITS_JOBSPACE``) uses the *local default*: a
LocalCluster started on first use in a temporary folder, kept for the rest of the process (so
repeated maps reuse its agents and their data cache), and stopped when the process exits or on
``qubits.shutdown()``. Like ``qubits make``, it needs nothing installed or running.

    with qubits.LocalCluster(agents=2) as cluster:
        qubits.map(fn, items, jobspace=cluster.url).results()

The agents run with ``--allow-root`` (they run your own code for you, as ``make`` does), a short lease
ttl, and die with this process (Linux: parent-death signal; elsewhere after ``IDLE_EXIT`` idle).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import QubitsError

LOCAL_STOP_TIMEOUT = 10.0
"""Seconds local agents give running tasks when stopped (a second signal stops them at once)."""
LOCAL_TTL = 5.0
"""Lease ttl of local agents: a crashed one's task is taken over within seconds."""
IDLE_EXIT = 600.0
"""Local agents exit on their own after this long idle, should their parent die unnoticed."""


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec function that asks Linux to SIGTERM the child when we die (resolved before fork)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:  # pragma: no cover - runs in the child
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return preexec


class LocalAgents:
    """Agents as subprocesses of this process: the fleet of ``qubits make`` and of a LocalCluster.

    ``url`` opens the jobspace, whole (``Jobspace.open_url``): it is handed on in ``QUBITS_JOBSPACE``."""

    def __init__(
        self,
        url: str,
        count: int,
        *,
        cache: Path,
        logs: Path,
        stem: str,
        slots: int = 1,
        ttl: float = LOCAL_TTL,
        idle_exit: float = IDLE_EXIT,
        capabilities: tuple[str, ...] = (),
    ) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        logs.mkdir(parents=True, exist_ok=True)
        # The jobspace travels in the environment: its whole URL (an endpoint, and credentials if the URL
        # carried them) reaches the agents, and nothing secret shows on a command line.
        env = {**os.environ, "QUBITS_CACHE": str(cache), "PYTHONUNBUFFERED": "1", "QUBITS_JOBSPACE": url}
        preexec = _parent_death_signal()
        for i in range(count):
            # --allow-root: these agents run the caller's own code for the caller.
            args = [sys.executable, "-m", "qubits.cli", "--log-level", "INFO", "agent",
                    "--slots", str(slots), "--ttl", str(ttl), "--exit-when-idle", str(idle_exit),
                    "--stop-timeout", f"{LOCAL_STOP_TIMEOUT:g}", "--allow-root", "--name", f"{stem}-{i + 1}"]
            for cap in capabilities:
                args += ["--capability", cap]
            path = logs / f"agent-{i + 1}.log"
            with open(path, "ab") as log:
                self.procs.append(subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec))
            self.logs.append(path)

    def alive(self) -> int:
        """Agents still running."""
        return sum(1 for p in self.procs if p.poll() is None)

    def stop(self, timeout: float = LOCAL_STOP_TIMEOUT + 5) -> None:
        """SIGTERM the agents (they finish or release their tasks), SIGKILL stragglers. A KeyboardInterrupt
        meanwhile (a second Ctrl-C) stops everything now (``stop_now``) and is raised again."""
        self._signal(signal.SIGTERM)
        try:
            self._wait(timeout)
        except KeyboardInterrupt:
            self.stop_now()
            raise
        self.procs.clear()

    def stop_now(self, grace: float = 2.0) -> None:
        """Stop the agents and every process they started within about ``grace`` seconds: a second SIGTERM
        makes an agent stop its tasks' process groups and release their leases at once; whatever still
        runs after ``grace`` is SIGKILLed, process groups of the tasks' children included."""
        self._signal(signal.SIGTERM)
        with contextlib.suppress(KeyboardInterrupt):
            self._wait(grace, kill=False)
        for p in self.procs:
            if p.poll() is None:
                for pid in _descendants(p.pid):
                    with contextlib.suppress(OSError):
                        os.killpg(os.getpgid(pid), signal.SIGKILL)
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                p.kill()
        self._wait(5.0)
        self.procs.clear()

    def _signal(self, sig: int) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(sig)

    def _wait(self, timeout: float, *, kill: bool = True) -> None:
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                if kill:
                    p.kill()
                    p.wait(5)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; empty elsewhere)."""
    out: list[int] = []
    try:
        children = [int(c) for t in os.listdir(f"/proc/{pid}/task") for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
    except OSError:
        return out
    for child in children:
        out += [child, *_descendants(child)]
    return out


class LocalCluster:
    """A local-directory jobspace and ``agents`` agents (``slots`` each) on this machine."""

    def __init__(
        self,
        agents: int = 1,
        *,
        slots: int | None = None,
        root: str | Path | None = None,
        cache: str | Path | None = None,
        capabilities: tuple[str, ...] = (),
    ) -> None:
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="qubits-local-"))
        self.url = str(self.root / "jobspace")
        self.cache = Path(cache) if cache else Path(os.environ.get("QUBITS_CACHE") or self.root / "cache")
        self.agents = max(1, agents)
        self.slots = slots or max(1, os.cpu_count() or 1)
        self.capabilities = capabilities
        self.fleet: LocalAgents | None = None

    @property
    def logs(self) -> list[Path]:
        return self.fleet.logs if self.fleet else []

    def start(self) -> LocalCluster:
        """Start the agents (they poll the jobspace; submit before or after)."""
        if self.fleet is None:
            (self.root / "jobspace").mkdir(parents=True, exist_ok=True)
            self.fleet = LocalAgents(
                self.url, self.agents, cache=self.cache, logs=self.root / "logs", stem=f"local-{os.getpid()}",
                slots=self.slots, capabilities=self.capabilities,
            )
        return self

    def alive(self) -> int:
        """Agents still running."""
        return self.fleet.alive() if self.fleet else 0

    def check(self) -> None:
        """Raise if every agent has stopped (work would wait forever)."""
        if self.fleet and self.fleet.procs and self.alive() == 0:
            raise QubitsError(f"the local agents stopped; see their logs in {self.root / 'logs'}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the agents (they finish or release their tasks), SIGKILL stragglers."""
        if self.fleet is not None:
            self.fleet.stop(timeout)
            self.fleet = None

    def remove(self) -> None:
        """Stop, and delete the folder if this cluster made it."""
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()


_default: LocalCluster | None = None
_default_lock = threading.Lock()


def default_cluster() -> LocalCluster:
    """The process's local default, started on first use, stopped at exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = LocalCluster(agents=int(os.environ.get("QUBITS_LOCAL_AGENTS") or 1)).start()
            atexit.register(shutdown)
        return _default


def shutdown() -> None:
    """Stop the local default's agents and delete its folder (a later map starts a new one)."""
    global _default
    with _default_lock:
        cluster, _default = _default, None
    if cluster is not None:
        cluster.remove()
