"""Holding a task to the CPUs and memory it asked for, and killing its whole process tree with it.

Three ways, the first this node allows:

- ``cgroup2``: a delegated cgroup v2 subtree (the agent's own cgroup, writable, with the memory and cpu
  controllers; the systemd unit ``qubits agent systemd`` writes asks for ``Delegate=yes``). Each task
  gets its own cgroup with ``memory.max`` and ``cpu.max``.
- ``cgroup1``: writable cgroup v1 memory and cpu hierarchies (``memory.limit_in_bytes``,
  ``cpu.cfs_quota_us``), as on hybrid hosts where the agent runs as root.
- ``rss+affinity``: no cgroup to write. Memory is watched: the resident memory of the task's process
  group is summed every ``RSS_WATCH`` seconds and the group is killed past its limit; CPUs by affinity
  (``taskset``) to as many cores as the task asked for, rounded up.

A task enters its cgroups before its command runs (a ``/bin/sh`` prefix writes its pid, then execs),
so nothing it starts escapes them; when it ends, whatever is still in them is killed and they go.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shlex
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RSS_WATCH = 0.25
"""Seconds between two readings of a task's resident memory where no cgroup holds it."""
CFS_PERIOD = 100_000
"""Microseconds of the CPU quota's period (the kernel's default)."""


@dataclass
class Confined:
    """One task's limits, and how they came out."""

    key: str
    memory: int | None
    """Bytes, or None: no memory limit."""
    cpus: float | None
    prefix: list[str] = field(default_factory=list)
    """Run before the task's own command (it execs it)."""
    groups: list[Path] = field(default_factory=list)
    cores: list[int] = field(default_factory=list)
    killed_for_memory: bool = False
    watcher: asyncio.Task[None] | None = None


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, options) of the cgroup file systems."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                found.append((parts[1], parts[2], set(parts[3].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under '' for v2."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                paths[c] = path
    return paths


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:120]


class Limits:
    """This node's way of enforcing limits (``kind``), and the limits of each running task."""

    def __init__(self, agent_name: str, *, root: Path | None = None, probe_only: bool = False) -> None:
        """``root``: look for cgroups there instead of the real mounts (tests). ``probe_only``: only find
        the ``kind``, writing nothing (``qubits doctor``)."""
        self.probe_only = probe_only
        self.scope = f"qubits-{_safe(agent_name)}"
        self.kind = "rss+affinity"
        self.v2: Path | None = None
        self.v1: dict[str, Path] = {}
        self._core_load: dict[int, int] = {c: 0 for c in sorted(os.sched_getaffinity(0))}
        self._taskset = shutil.which("taskset")
        if os.environ.get("QUBITS_LIMITS") == "rss":  # an operator's (and the tests') choice of fallback
            return
        if root is not None:
            self._setup_v2(root)
        else:
            self._find_cgroups()

    # -- which way --------------------------------------------------------------------------------------
    def _find_cgroups(self) -> None:
        own = _own_paths()
        for point, fstype, _opts in _mounts():
            if fstype == "cgroup2" and "" in own and self._setup_v2(Path(point) / own[""].lstrip("/")):
                return
        v1: dict[str, Path] = {}
        for point, fstype, opts in _mounts():
            for controller in ("memory", "cpu"):
                if fstype == "cgroup" and controller in opts and controller in own:
                    base = Path(point) / own[controller].lstrip("/")
                    if _writable_dir(base):
                        v1[controller] = base / self.scope
        if len(v1) == 2:  # the agent's own folder in each is made with its first task's, and goes with its last
            self.v1, self.kind = v1, "cgroup1"

    def _setup_v2(self, own: Path) -> bool:
        """Use a delegated v2 subtree: the agent moves into a leaf of its own (no process may sit in a
        cgroup whose children have controllers), then enables memory and cpu for its tasks' cgroups."""
        try:
            if not _writable_dir(own) or not {"memory", "cpu"} <= set((own / "cgroup.controllers").read_text().split()):
                return False
            if self.probe_only:
                self.kind = "cgroup2"
                return True
            leaf = own / "agent"
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            (own / "cgroup.subtree_control").write_text("+memory +cpu")
            tasks = own / "tasks"
            tasks.mkdir(exist_ok=True)
            (tasks / "cgroup.subtree_control").write_text("+memory +cpu")
        except OSError:
            return False
        self.v2, self.kind = tasks, "cgroup2"
        return True

    # -- one task ---------------------------------------------------------------------------------------
    def confine(self, key: str, cpus: float | None, memory_gb: float | None) -> Confined:
        """Limits for task ``key`` (cpus: cores' worth of CPU time; memory in GB). Raises OSError when
        the cgroups cannot be made (the caller fails the attempt rather than run it unconfined)."""
        memory = int(memory_gb * 2**30) if memory_gb else None
        conf = Confined(key, memory, cpus or None)
        if not memory and not cpus:
            return conf
        name = _safe(key.replace("/", "."))
        if self.v2 is not None:
            group = self.v2 / name
            group.mkdir(exist_ok=True)
            if memory:
                (group / "memory.max").write_text(str(memory))
                with contextlib.suppress(OSError):
                    (group / "memory.swap.max").write_text("0")
                    (group / "memory.oom.group").write_text("1")
            if cpus:
                (group / "cpu.max").write_text(f"{max(1000, int(cpus * CFS_PERIOD))} {CFS_PERIOD}")
            conf.groups = [group]
        elif self.v1:
            if memory:
                group = self.v1["memory"] / name
                group.mkdir(parents=True, exist_ok=True)
                (group / "memory.limit_in_bytes").write_text(str(memory))
                with contextlib.suppress(OSError):  # no swap accounting on this kernel
                    (group / "memory.memsw.limit_in_bytes").write_text(str(memory))
                conf.groups.append(group)
            if cpus:
                group = self.v1["cpu"] / name
                group.mkdir(parents=True, exist_ok=True)
                (group / "cpu.cfs_period_us").write_text(str(CFS_PERIOD))
                (group / "cpu.cfs_quota_us").write_text(str(max(1000, int(cpus * CFS_PERIOD))))
                conf.groups.append(group)
        else:
            if cpus and self._taskset:
                conf.cores = self._take_cores(math.ceil(cpus))
                conf.prefix = [self._taskset, "--cpu-list", ",".join(map(str, conf.cores))]
            return conf
        procs = " ".join(shlex.quote(str(g / "cgroup.procs")) for g in conf.groups)
        conf.prefix = ["/bin/sh", "-c", f'for f in {procs}; do echo $$ > "$f" || exit 126; done; exec "$@"', "qubits-limits"]
        return conf

    def _take_cores(self, n: int) -> list[int]:
        cores = sorted(self._core_load, key=lambda c: (self._core_load[c], c))[: max(1, n)]
        for c in cores:
            self._core_load[c] += 1
        return sorted(cores)

    def started(self, conf: Confined, pgid: int, exited: Callable[[], bool], marker: str, held: Callable[[], bool]) -> None:
        """The task runs as process group ``pgid``; ``exited`` says when its first process has ended;
        ``marker`` (``NAME=value``) is in the environment of every process it starts, and no other's;
        ``held`` says whether something still holds its output pipes open."""
        conf.watcher = asyncio.create_task(self._watch(conf, pgid, exited, marker.encode(), held))

    async def _watch(self, conf: Confined, pgid: int, exited: Callable[[], bool], marker: bytes, held: Callable[[], bool]) -> None:
        """Watch the task's memory where no cgroup does; and once its first process has ended, kill what
        it left behind (a background child, one that left the group with setsid): the task is over, and
        a leftover holding its output pipes would hold the task open. Without a cgroup, a process that
        left the group and still holds the pipes is found by the marker in its environment (a scan of
        /proc, only then: it costs milliseconds)."""
        watch_memory = conf.memory is not None and not conf.groups
        while not exited():
            if watch_memory and conf.memory is not None and _group_rss(pgid) > conf.memory:
                conf.killed_for_memory = True
                _kill_group(pgid)
                return
            await asyncio.sleep(RSS_WATCH)
        _kill_group(pgid)
        if conf.groups:
            pids = [pid for group in conf.groups for pid in _pids(group)]
        else:
            await asyncio.sleep(0.1)  # the group's own ends of the pipes close
            pids = await asyncio.to_thread(_marked, marker) if held() else []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def out_of_memory(self, conf: Confined, code: int) -> bool:
        """Whether the task was killed for going over its memory limit."""
        if conf.killed_for_memory:
            return True
        for group in conf.groups:
            for name in ("memory.events", "memory.oom_control"):  # v2, v1
                with contextlib.suppress(OSError):
                    text = (group / name).read_text()
                    if any(line.split()[0] in ("oom_kill", "oom_group_kill") and int(line.split()[1]) > 0
                           for line in text.splitlines() if len(line.split()) == 2):
                        return True
            with contextlib.suppress(OSError, ValueError):  # v1 kernels without oom_kill in oom_control
                if code == -signal.SIGKILL and int((group / "memory.failcnt").read_text()) > 0:
                    return True
        return False

    async def release(self, conf: Confined) -> None:
        """Kill whatever the task left in its cgroups, and remove them; give back its cores."""
        if conf.watcher is not None:
            conf.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await conf.watcher
        for c in conf.cores:
            self._core_load[c] -= 1
        for group in conf.groups:
            for _ in range(50):
                pids = _pids(group)
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            if self.v1:
                with contextlib.suppress(OSError):  # busy while other tasks of this agent run
                    group.parent.rmdir()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _marked(marker: bytes) -> list[int]:
    """Processes of this user whose environment holds ``marker`` (read from /proc)."""
    found = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != me:
            with contextlib.suppress(OSError):
                if marker in Path(entry.path, "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def _pids(group: Path) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    return []


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in process group ``pgid`` (read from /proc)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:  # state, ppid, pgrp
                continue
            total += int(Path(entry.path, "statm").read_text().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total
