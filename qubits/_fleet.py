"""Agents on your own machines over ssh: the nodes of a Qfile, started for a run, stopped by `kill`.

Only the OpenSSH client is needed here, and only ssh plus a Python 3.11 on the nodes. Each node gets
one agent with the node's slots, limited to the run's job and started with ``--exit-when-idle``, so
the fleet goes away by itself when the work is done. A node that cannot be reached is reported and
skipped; the others do the work. Where the node lacks qubits (or has another version), a wheel of the
qubits running here is copied with scp and pip-installed there (no package index needed on the node
when its dependencies are present, or with ``wheelhouse``).

Nodes are written in the Qfile (``conf.nodes``, or ``@conf("nodes")`` on a function) as
``"host"``, ``"user@host:port"``, ``("host", slots)`` or a dict with any of ``host name slots user
port python workdir capabilities options config``; ``conf.ssh`` holds defaults for them all (qjam's
QJAM_REMOTE_PYTHON / QJAM_USER are QUBITS_REMOTE_PYTHON / QUBITS_REMOTE_USER here). Every agent started
is recorded at ``fleet/{job}/{node}.json`` (host, pid, process start time, log) for ``qubits kill``.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jobspaces

from . import _layout as layout
from ._hosts import Node
from ._ids import submitter
from ._version import __version__

log = logging.getLogger("qubits.fleet")

_MARK = "@@qubits@@"
PARALLEL = 16
"""ssh sessions at once."""


# -- talking to a node ------------------------------------------------------------------------------
class NodeError(Exception):
    """A node could not be used; the message says why (unreachable, no Python, install failed …)."""


def _ssh(node: Node, command: str, *, stdin: str | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(node.ssh_argv(command), input=stdin, capture_output=True, text=True, timeout=timeout,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise NodeError("the ssh client is not installed here (Debian: apt-get install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise NodeError(f"no answer within {timeout:g}s") from None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def helper(node: Node, request: dict[str, Any], *, timeout: float = 60.0) -> dict[str, Any]:
    """Run an action of ``qubits._remote`` on ``node``; its answer, or NodeError."""
    source = (Path(__file__).parent / "_remote.py").read_text()
    script = f"{source}\n_main(json.loads({json.dumps(json.dumps(request))}))\n"
    proc = _ssh(node, f"{shlex.quote(node.python)} -", stdin=script, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            answer: dict[str, Any] = json.loads(line[len(_MARK):])
            if not answer.get("ok") and "error" in answer:
                raise NodeError(f"on the node: {answer['error']}")
            return answer
    if proc.returncode == 255:
        raise NodeError(f"unreachable: {_last_line(proc.stderr) or 'ssh failed'}")
    if proc.returncode == 127:
        raise NodeError(f"no {node.python} on the node (set python= for the node, or conf.ssh python, or --remote-python)")
    raise NodeError(f"{node.python} failed on the node (exit {proc.returncode}): {_last_line(proc.stderr) or _last_line(proc.stdout)}")


@dataclass
class Started:
    """How starting an agent on one node went."""

    node: Node
    agent: str = ""
    pid: int = 0
    start: int | None = None
    log: str = ""
    installed: str = ""
    """The qubits version installed on the node by this run, if any."""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def record(self, job: str) -> dict[str, Any]:
        """The fleet record (no secrets: ssh coordinates, pid, log path)."""
        return {"job": job, "node": self.node.name, "agent": self.agent, "pid": self.pid, "start": self.start,
                "log": self.log, "ssh": self.node.to_dict(), "started": time.time(), "by": submitter()}


@dataclass
class FleetOptions:
    """How `qubits run` starts agents."""

    ttl: float = 30.0
    idle: float = 120.0
    """--exit-when-idle for the agents: seconds with nothing to do before they leave."""
    stop_timeout: float = 30.0
    install: str = "auto"
    """auto: when qubits is missing or another version; always; never."""
    wheelhouse: Path | None = None
    """Wheels of the dependencies, for nodes with no package index: installed with --no-index."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment for the agents (sent on ssh's stdin, never on a command line)."""
    pip_args: list[str] = field(default_factory=list)
    log_level: str = "INFO"
    extra_args: list[str] = field(default_factory=list)


class _WheelCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._path: Path | None = None

    def get(self) -> Path:
        with self._lock:
            if self._path is None:
                from ._wheel import build_wheel

                cache = Path(os.environ.get("QUBITS_CACHE", "~/.cache/qubits")).expanduser() / "wheels"
                self._path = build_wheel(cache)
            return self._path


def _install(node: Node, probe: dict[str, Any], options: FleetOptions, wheels: _WheelCache) -> str:
    files = [wheels.get()]
    if options.wheelhouse:
        files += sorted(p for p in options.wheelhouse.glob("*.whl") if not p.name.startswith("qubits-"))
    remote_dir = f"{probe['workdir']}/wheels"
    try:
        proc = subprocess.run(node.scp_argv(files, remote_dir), capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise NodeError("copying the wheel took longer than 10 minutes") from None
    if proc.returncode != 0:
        raise NodeError(f"scp of the qubits wheel failed: {_last_line(proc.stderr)}")
    request: dict[str, Any] = {"action": "install", "wheels": [f"{remote_dir}/{files[0].name}"], "pip_args": options.pip_args}
    if options.wheelhouse:
        request["find_links"] = remote_dir
    answer = helper(node, request, timeout=900)
    if not answer.get("ok"):
        hint = ""
        if "externally-managed" in answer.get("output", ""):
            hint = " (the node's Python is managed by its OS: point python= at a venv's python on the node)"
        elif "No module named pip" in answer.get("output", ""):
            hint = " (no pip on the node: install python3-pip, or use a venv's python)"
        raise NodeError(f"installing qubits failed{hint}: {_last_line(answer.get('output', ''))}")
    return __version__


def start_agent(node: Node, job: str, url: str, options: FleetOptions, wheels: _WheelCache | None = None) -> Started:
    """Probe ``node``, install qubits there if needed, and start its agent for ``job``."""
    out = Started(node, agent=f"{node.name}-{job}")
    try:
        probe = helper(node, {"action": "probe", "workdir": node.workdir})
        if not probe.get("python_ok"):
            raise NodeError(f"{node.python} on the node is Python {probe.get('python')}; qubits needs 3.11 or newer")
        have = probe.get("qubits")
        if options.install == "always" or (options.install == "auto" and have != __version__):
            out.installed = _install(node, probe, options, wheels or _WheelCache())
        elif not have:
            raise NodeError("qubits is not installed on the node (and --install never)")
        workdir = probe["workdir"]
        argv = ["-m", "qubits.cli", "--log-level", options.log_level, "agent",
                "--slots", str(node.slots), "--ttl", f"{options.ttl:g}", "--exit-when-idle", f"{options.idle:g}",
                "--stop-timeout", f"{options.stop_timeout:g}", "--name", out.agent, "--job", job, "--allow-root",
                *options.extra_args]
        for cap in node.capabilities:
            argv += ["--capability", cap]
        # The jobspace's whole URL travels in the environment (in the helper's stdin), not in argv.
        env = {**options.env, "QUBITS_CACHE": workdir, "QUBITS_JOBSPACE": url}
        answer = helper(node, {"action": "start", "argv": argv, "env": env, "cwd": workdir,
                               "log": f"{workdir}/fleet/{job}/{node.name}.log"})
        out.pid, out.start, out.log = int(answer["pid"]), answer.get("start"), answer["log"]
        if not answer.get("alive"):
            raise NodeError(f"the agent exited at once (code {answer.get('code')}): {_last_line(answer.get('tail', ''))} (log: {out.log})")
    except NodeError as exc:
        out.error = str(exc)
    return out


def _pool_map(fn: Callable[[Node], Any], nodes: Sequence[Node]) -> list[Any]:
    if not nodes:
        return []
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(nodes))) as pool:
        return list(pool.map(fn, nodes))


def start_fleet(
    js: jobspaces.Jobspace,
    job: str,
    nodes: Sequence[Node],
    options: FleetOptions,
    on_node: Callable[[Started], None] | None = None,
) -> list[Started]:
    """Start one agent per node in parallel; record each started one in the jobspace."""
    wheels = _WheelCache()
    url = js.handoff()["QUBITS_JOBSPACE"]

    def one(node: Node) -> Started:
        started = start_agent(node, job, url, options, wheels)
        if started.ok:
            body = json.dumps(started.record(job), sort_keys=True).encode()
            jobspaces.run_sync(js.put(layout.fleet(job, node.name), body))
            log.info("agent started", extra={"action": "fleet-start", "job": job, "node": node.name})
        else:
            log.info("node skipped: %s", started.error, extra={"action": "fleet-skip", "job": job, "node": node.name})
        if on_node is not None:
            on_node(started)
        return started

    return _pool_map(one, nodes)


def fleet_records(js: jobspaces.Jobspace, job: str | None = None) -> list[dict[str, Any]]:
    """The fleet records of ``job`` (or of every run)."""
    prefix = layout.fleet_prefix(job)
    out = []
    for meta in jobspaces.run_sync(js.list_all(prefix)):
        try:
            out.append(json.loads(jobspaces.run_sync(js.get(meta.key))[0]))
        except (jobspaces.NotFound, ValueError):
            continue
    return out


@dataclass
class Stopped:
    """How stopping one recorded agent went."""

    record: dict[str, Any]
    state: str
    """stopped, signalled, not running, still running, or unreachable: REASON."""


def kill_fleet(js: jobspaces.Jobspace, records: Sequence[dict[str, Any]], *, signal_name: str = "TERM", wait: float = 0.0) -> list[Stopped]:
    """Signal the agents of ``records`` (checked by pid and start time); mark the records stopped."""

    def one(record: dict[str, Any]) -> Stopped:
        ssh = dict(record.get("ssh") or {})
        fields: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in ssh.items() if k in Node.__dataclass_fields__}
        node = Node(**fields)
        try:
            answer = helper(node, {"action": "signal", "signal": signal_name, "wait": wait,
                                   "agents": [{"pid": record["pid"], "start": record.get("start")}]}, timeout=wait + 60)
            state = answer["agents"][0]["state"]
        except NodeError as exc:
            return Stopped(record, str(exc))
        if state in ("stopped", "not running", "signalled"):
            updated = {**record, "stopped": time.time(), "signal": signal_name}
            key = layout.fleet(record["job"], record["node"])
            jobspaces.run_sync(js.put(key, json.dumps(updated, sort_keys=True).encode()))
        return Stopped(record, state)

    if not records:
        return []
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(records))) as pool:
        return list(pool.map(one, records))


@dataclass
class HostOutput:
    """What a command printed on one node."""

    node: Node
    code: int
    stdout: str
    stderr: str


def pssh(nodes: Sequence[Node], command: str, *, timeout: float = 600.0) -> list[HostOutput]:
    """Run a shell ``command`` on every node in parallel; each node's output and exit code (255: ssh failed)."""

    def one(node: Node) -> HostOutput:
        try:
            proc = _ssh(node, command, timeout=timeout)
        except NodeError as exc:
            return HostOutput(node, 255, "", str(exc))
        return HostOutput(node, proc.returncode, proc.stdout, proc.stderr)

    return _pool_map(one, nodes)


def local_jobspace(url: str) -> bool:
    """Whether ``url`` is a folder on this machine (nodes elsewhere then need it shared, e.g. NFS)."""
    return "://" not in url or url.startswith("file://")

