"""Talking to the agents of this host: registration, and pause/resume through a control file + SIGUSR1.

``qubits agent pause [--for 1h30m]`` writes ``{state}/{name}.control`` and signals the agent, which
stops (SIGSTOP) its running tasks while it keeps their leases alive, and resumes them (SIGCONT) on
``qubits agent resume`` or when the pause runs out.

With ``qubits agent --pause-when-busy IDLE`` the agent also pauses while the machine is in interactive
use and resumes once it has been idle for IDLE (``BusyWatch``): activity is the latest access time of
the watched paths, by default the terminals (``/dev/pts/*``, ``/dev/tty[0-9]*``), whose access time
the kernel updates when someone types (what ``w`` shows as IDLE). ``--busy-watch GLOB`` watches other
paths (an X server's idle file, a file a desktop tool touches, a file in tests).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import time
from pathlib import Path

from qubits.errors import UsageError

DEFAULT_BUSY_WATCH = ("/dev/pts/[0-9]*", "/dev/tty[0-9]*")
"""Where interactive use shows: terminals' access times change when someone types."""


class BusyWatch:
    """Is the machine in interactive use? Yes while any watched path was accessed within ``idle_after``."""

    def __init__(self, idle_after: float, patterns: tuple[str, ...] | list[str] = DEFAULT_BUSY_WATCH) -> None:
        self.idle_after = idle_after
        self.patterns = list(patterns)

    def idle_for(self) -> float:
        """Seconds since the last activity on any watched path (infinite if none exists)."""
        latest = 0.0
        for pattern in self.patterns:
            for path in glob.glob(pattern):
                with contextlib.suppress(OSError):
                    latest = max(latest, os.stat(path).st_atime)
        return time.time() - latest if latest else float("inf")

    def busy(self) -> bool:
        return self.idle_for() < self.idle_after


class Control:
    """One agent's view of its control file."""

    def __init__(self, state_dir: Path, name: str, busy_watch: BusyWatch | None = None) -> None:
        self.dir = state_dir
        self.name = name
        self.manual = False
        """Paused by `qubits agent pause` (until ``until``, or until resumed)."""
        self.until: float | None = None
        self.busy_watch = busy_watch
        """Pause while the machine is in interactive use (--pause-when-busy)."""
        self.busy = False
        self._next_busy_check = 0.0

    @property
    def paused(self) -> bool:
        return self.manual or self.busy

    @property
    def reason(self) -> str:
        """Why the agent is paused: 'pause' (by hand), 'in use' (--pause-when-busy), or ''."""
        return "pause" if self.manual else ("in use" if self.busy else "")

    @property
    def _file(self) -> Path:
        return self.dir / f"{self.name}.control"

    def register(self, pid: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"{self.name}.json").write_text(json.dumps({"name": self.name, "pid": pid}))

    def unregister(self) -> None:
        for suffix in (".json", ".control"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / f"{self.name}{suffix}").unlink()

    def load(self) -> None:
        try:
            raw = json.loads(self._file.read_text())
        except (FileNotFoundError, ValueError):
            raw = {}
        self.manual = bool(raw.get("paused"))
        self.until = raw.get("until") if self.manual else None
        self.tick()

    def tick(self) -> bool:
        """Resume when a timed pause has run out; follow interactive use; True if ``paused`` changed."""
        before = self.paused
        if self.manual and self.until is not None and time.time() >= self.until:
            self.manual = False
            self.until = None
            with contextlib.suppress(FileNotFoundError):
                self._file.unlink()
        if self.busy_watch is not None and time.monotonic() >= self._next_busy_check:
            self._next_busy_check = time.monotonic() + 1.0
            self.busy = self.busy_watch.busy()
        return self.paused != before


def local_agents(state_dir: Path, name: str | None = None) -> list[dict[str, object]]:
    """The agents registered on this host (whose process is alive)."""
    out = []
    for path in sorted(state_dir.glob("*.json")):
        try:
            info = json.loads(path.read_text())
            os.kill(int(info["pid"]), 0)
        except (ValueError, KeyError, ProcessLookupError, PermissionError, FileNotFoundError):
            continue
        if name is None or info.get("name") == name:
            out.append(info)
    return out


def set_paused(state_dir: Path, paused: bool, *, until: float | None = None, name: str | None = None) -> list[str]:
    """Pause or resume the agents of this host; returns the names reached."""
    reached = []
    for info in local_agents(state_dir, name):
        control = state_dir / f"{info['name']}.control"
        control.write_text(json.dumps({"paused": paused, "until": until}))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(str(info["pid"])), signal.SIGUSR1)
            reached.append(str(info["name"]))
    return reached


def parse_duration(text: str) -> float:
    """'90s', '15m', '1h30m', '2d' or plain seconds → seconds."""
    import re

    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 1h30m, 2d)")
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * scale[u] for n, u in parts)


def refuse_root(allow_root: bool) -> None:
    """Agents do not run as root unless told to (--allow-root): a usage error (exit 2), like a missing flag."""
    if hasattr(os, "geteuid") and os.geteuid() == 0 and not allow_root:
        raise UsageError(
            "refusing to run tasks as root: run the agent as an unprivileged user, or pass --allow-root "
            "(env QUBITS_ALLOW_ROOT=1) if you mean it"
        )

