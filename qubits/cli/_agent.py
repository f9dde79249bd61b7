"""`qubits agent`: run the node agent; pause/resume it; write its systemd unit."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from qubits._defaults import HINT_LISTEN
from qubits.errors import UsageError

from . import EXIT_NOT_FOUND, EXIT_OK, add_jobspace_option, env_default
from ._common import above, at_least, console, require_jobspace

if TYPE_CHECKING:
    import jobspaces

_UNIT = """\
[Unit]
Description=qubits node agent ({jobspace_desc})
Documentation=https://pypi.org/project/qubits/
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={user}
# QUBITS_JOBSPACE and credentials live here, not in the unit (root's, mode 0600).
EnvironmentFile={env_file}
Environment=QUBITS_CACHE=/var/cache/qubits
CacheDirectory=qubits
ExecStart={exe} agent --slots {slots}{caps} --ttl {ttl:g} --stop-timeout {stop_timeout:g}
# Draining: SIGTERM stops claims; running tasks get the stop timeout, then their leases are released.
KillSignal=SIGTERM
KillMode=mixed
# The agent puts each task in a cgroup of its own below its own (memory and CPU limits, the whole tree killed).
Delegate=yes
TimeoutStopSec={stop}
Restart=on-failure
RestartSec=5
NoNewPrivileges=yes

[Install]
WantedBy=multi-user.target
"""

_ENV = """\
# The environment of the qubits agent (systemd EnvironmentFile): install it owned by root, mode 0600.
QUBITS_JOBSPACE={jobspace}
{extra}# Credentials for the store, if the node has no instance role or ~/.aws, e.g.:
# AWS_ACCESS_KEY_ID=...
# AWS_SECRET_ACCESS_KEY=...
"""


def _int_env(name: str) -> int | None:
    value = env_default(name)
    return int(value) if value else None


def _cache() -> Path:
    return Path(os.environ.get("QUBITS_CACHE", "~/.cache/qubits")).expanduser()


def cmd_agent(args: argparse.Namespace) -> int:
    import jobspaces
    from nodeagent import Agent, AgentConfig, refuse_root

    _check_agent_options(args)
    url = require_jobspace(args)
    refuse_root(args.allow_root)
    resources = {k: float(v) for k, v in (("cpus", args.cpus), ("memory", args.memory), ("gpus", args.gpus)) if v is not None}
    ttl = float(args.ttl)
    timing = jobspaces.Timing(request_timeout=min(5.0, max(0.5, ttl / 6)), budget=max(0.5, ttl / 3))
    js = jobspaces.open_jobspace(url, timing=timing)
    faults = os.environ.get("QUBITS_FAULTS")
    if faults:
        js = _inject_faults(js, faults)
    counts_path = os.environ.get("QUBITS_COUNT_REQUESTS")
    if counts_path:
        # A measuring hook (the benchmark uses it): count requests by kind; written to this file at exit.
        js = jobspaces.CountingJobspace(js)
    config = AgentConfig(
        jobspace=url,
        slots=args.slots,
        capabilities=list(args.capability),
        resources=resources,
        ttl=ttl,
        exit_when_idle=args.exit_when_idle,
        stop_timeout=args.stop_timeout,
        max_idle_poll=args.max_idle_poll,
        jobs=list(args.job),
        share_weights=_share_weights(args.share_weight),
        notify=args.notify != "off",
        hint_listen=None if args.hint_listen in ("", "off") else args.hint_listen,
    )
    if args.name:
        config.name = args.name
    if config.hint_listen:
        from nodeagent._wake import parse_listen
        from qubits.errors import UsageError

        try:
            parse_listen(config.hint_listen)
        except ValueError as exc:
            raise UsageError(f"--hint-listen {config.hint_listen!r} is not an address ({exc}): give HOST[:PORT], e.g. 10.0.0.5:7999, or off") from None
    agent = Agent(config, js)
    if args.pause_when_busy:
        from nodeagent._control import DEFAULT_BUSY_WATCH, BusyWatch

        idle = _duration("--pause-when-busy", args.pause_when_busy)
        agent.control.busy_watch = BusyWatch(idle, args.busy_watch or DEFAULT_BUSY_WATCH)
    try:
        if args.metrics_port is not None or args.metrics_textfile:
            from nodeagent._metrics import run_with_metrics

            textfile = Path(args.metrics_textfile) if args.metrics_textfile else None
            return asyncio.run(run_with_metrics(agent, args.metrics_port, textfile))
        return asyncio.run(agent.run())
    finally:
        if counts_path and isinstance(js, jobspaces.CountingJobspace):
            js.dump(counts_path, {"agent": agent.counters, "node": config.name})


def _share_weights(items: list[str]) -> dict[str, float]:
    from nodeagent._fairshare import parse_weights
    from qubits.errors import UsageError

    try:
        return parse_weights(items)
    except ValueError as exc:
        raise UsageError(f"--share-weight: {exc}") from None


def _inject_faults(js: jobspaces.Jobspace, spec: str) -> jobspaces.Jobspace:
    """The chaos tests' hook, never on by default: QUBITS_FAULTS='{"error_5xx": 0.02, ...}' wraps the
    jobspace in a FaultyJobspace (fields of jobspaces.Faults; "latency": [lo, hi]). An extra "report":
    PATH writes the injected faults by kind there as JSON every second, so a SIGKILL loses at most one."""
    import json
    import threading

    import jobspaces
    from qubits.errors import UsageError

    try:
        raw = json.loads(spec)
        report = raw.pop("report", None)
        if "latency" in raw:
            raw["latency"] = tuple(raw["latency"])
        faults = jobspaces.Faults(**raw)
    except (ValueError, TypeError, AttributeError) as exc:
        raise UsageError(f'QUBITS_FAULTS is not valid ({exc}); e.g. {{"error_5xx": 0.02, "latency": [0, 0.05]}}') from None
    console.print(f"[yellow]QUBITS_FAULTS is set: injecting store faults {spec}[/]")
    if report:
        stop = threading.Event()

        def dump() -> None:
            while True:
                with contextlib.suppress(RuntimeError, OSError):  # counter changed while copied; disk full
                    tmp = f"{report}.tmp"
                    Path(tmp).write_text(json.dumps(dict(faults.injected)))
                    os.replace(tmp, report)
                stop.wait(1.0)  # not time.sleep: under libfaketime (skewed-clock tests) it fails with EINVAL

        threading.Thread(target=dump, name="fault-report", daemon=True).start()
    return jobspaces.FaultyJobspace(js, faults)


def _check_agent_options(args: argparse.Namespace) -> None:
    """Refuse nonsense before anything starts: one sentence, exit 2 (``nodes`` once showed ``-2 0/-2``)."""
    at_least(1, slots=args.slots)
    above(0, ttl=args.ttl, max_idle_poll=args.max_idle_poll)
    at_least(0, cpus=args.cpus, memory=args.memory, gpus=args.gpus, stop_timeout=args.stop_timeout,
             exit_when_idle=args.exit_when_idle)


def _duration(option: str, text: str) -> float:
    from nodeagent._control import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def cmd_pause(args: argparse.Namespace) -> int:
    from nodeagent._control import set_paused

    until = time.time() + _duration("--for", args.for_) if args.for_ else None
    reached = set_paused(_cache() / "agents", True, until=until, name=args.name)
    if not reached:
        console.print("no running agent on this host")
        return EXIT_NOT_FOUND
    console.print(f"paused {', '.join(reached)}" + (f" until {time.strftime('%H:%M:%S', time.localtime(until))}" if until else ""))
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    from nodeagent._control import set_paused

    reached = set_paused(_cache() / "agents", False, name=args.name)
    if not reached:
        console.print("no running agent on this host")
        return EXIT_NOT_FOUND
    console.print(f"resumed {', '.join(reached)}")
    return EXIT_OK


def cmd_systemd(args: argparse.Namespace) -> int:
    from qubits.errors import UsageError

    exe = shutil.which("qubits") or f"{sys.executable} -m qubits.cli"
    url = args.jobspace or ""
    unit = _UNIT.format(
        jobspace_desc=url.split("?", 1)[0] or "QUBITS_JOBSPACE from the environment file",  # a query may hold secrets
        user=args.user,
        env_file=args.env_file,
        exe=exe,
        slots=args.slots,
        caps="".join(f" --capability {c}" for c in args.capability),
        ttl=args.ttl,
        stop_timeout=args.stop_timeout,
        stop=int(max(args.stop_timeout, args.ttl) + 30),
    )
    if args.output == "-":
        sys.stdout.write(unit)
        return EXIT_OK
    extra = ""
    for name in args.env:
        if name not in os.environ:
            raise UsageError(f"--env {name}: not set here")
        extra += f"{name}={os.environ[name]}\n"
    unit_path = Path(args.output)
    env_path = unit_path.with_suffix(".env")
    unit_path.write_text(unit)
    env_path.touch(mode=0o600, exist_ok=True)
    env_path.chmod(0o600)  # before the secrets go in
    env_path.write_text(_ENV.format(jobspace=url or "s3://bucket/prefix?endpoint=...", extra=extra))
    console.print(f"wrote {unit_path} and {env_path} (mode 0600){'' if url else ': set QUBITS_JOBSPACE in it'}.", soft_wrap=True)
    console.print("Copy both to the node; there, as root (sudo -i), in their folder:", soft_wrap=True)
    for step in install_steps(unit_path.name, env_path.name, args.env_file, args.user, args.root):
        console.print(step, soft_wrap=True, markup=False, highlight=False)  # long lines stay whole when pasted
    return EXIT_OK


def install_steps(unit: str, env: str, env_file: str, user: str, root: str | None = None) -> list[str]:
    """Shell lines that install the unit on a Debian-like host: the system user, /etc/qubits, the
    environment file (mode 0600), the unit, enable and start. ``root`` puts every path under a folder
    instead of / (for a test, or an image being built): nothing is started then. Each fits 80 columns
    (with its continuation) for a default ``root``."""
    r = (root or "").rstrip("/")
    unit_dir = f"{r}/etc/systemd/system"
    env_dir = f"{r}{os.path.dirname(env_file)}"
    who = f"grep -qs '^{user}:' {r}/etc/passwd" if r else f"id -u {user} >/dev/null 2>&1"
    add = f"useradd --prefix {r} " if r else "useradd "
    steps = [
        f"install -d -m 755 {env_dir} {unit_dir}",
        f"{who} || \\\n  {add}--system --user-group --no-create-home -s /usr/sbin/nologin {user}",
        f"install -m 600 {env} {r}{env_file}",
        f"install -m 644 {unit} {unit_dir}/qubits-agent.service",
    ]
    if r:
        steps.append(f"systemctl --root={r} enable qubits-agent")
    else:
        steps += ["systemctl daemon-reload", "systemctl enable --now qubits-agent", "journalctl -u qubits-agent -f"]
    return steps


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("agent", help="run the node agent (and: agent pause | resume | systemd)")
    add_jobspace_option(p, project=False)
    p.add_argument("--slots", type=int, default=int(env_default("QUBITS_SLOTS", "1") or 1), help="tasks at once (env QUBITS_SLOTS)")
    p.add_argument("--capability", action="append", default=[], metavar="NAME", help="a capability this node offers (repeatable)")
    p.add_argument("--cpus", type=float, help="cpus this node lends to tasks")
    p.add_argument("--memory", type=float, help="memory (GB) this node lends to tasks")
    p.add_argument("--gpus", type=float, help="gpus this node lends to tasks")
    p.add_argument("--ttl", type=float, default=float(env_default("QUBITS_TTL", "30") or 30), help="lease ttl in seconds (env QUBITS_TTL)")
    p.add_argument("--exit-when-idle", type=float, metavar="SECONDS", help="exit after this long with nothing to do")
    p.add_argument("--stop-timeout", type=float, default=60.0, help="seconds running tasks get after SIGTERM before their leases are released")
    p.add_argument("--max-idle-poll", type=float, help="longest pause between polls when idle (seconds)")
    p.add_argument("--notify", choices=("auto", "off"), default=env_default("QUBITS_NOTIFY", "auto") or "auto",
                   help="on a local directory, wait on kernel file notifications (auto; polls where they cannot work, "
                        "e.g. NFS) or only poll (off) (env QUBITS_NOTIFY)")
    p.add_argument("--hint-listen", metavar="HOST[:PORT]", default=env_default("QUBITS_HINT_LISTEN", HINT_LISTEN),
                   help=f"listen for wake hints from submitters on this UDP address, published in the agent's presence "
                        f"(default {HINT_LISTEN}, this host only; e.g. 10.0.0.5:7999 for a fleet; 'off': none; env QUBITS_HINT_LISTEN)")
    p.add_argument("--name", default=env_default("QUBITS_NODE"), help="agent name (default host-pid; env QUBITS_NODE)")
    p.add_argument("--job", action="append", default=[], help="only run tasks of this job (repeatable)")
    p.add_argument("--share-weight", action="append", default=[], metavar="USER=WEIGHT",
                   help="this user's weight in the fair share of slots between submitters (repeatable; default 1 each)")
    p.add_argument("--pause-when-busy", metavar="IDLE", default=env_default("QUBITS_PAUSE_WHEN_BUSY"),
                   help="pause while the machine is in interactive use; resume after IDLE (e.g. 10m) without activity (env QUBITS_PAUSE_WHEN_BUSY)")
    p.add_argument("--busy-watch", action="append", default=[], metavar="GLOB",
                   help="paths whose access time shows activity (repeatable; default the terminals /dev/pts/*, /dev/tty[0-9]*)")
    p.add_argument("--allow-root", action="store_true", default=bool(env_default("QUBITS_ALLOW_ROOT")), help="allow running tasks as root (env QUBITS_ALLOW_ROOT)")
    p.add_argument("--metrics-port", type=int, default=_int_env("QUBITS_METRICS_PORT"), metavar="PORT",
                   help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics (0: any free port, logged; env QUBITS_METRICS_PORT)")
    p.add_argument("--metrics-textfile", default=env_default("QUBITS_METRICS_TEXTFILE"), metavar="PATH",
                   help="write Prometheus metrics to PATH for node_exporter's textfile collector, atomically (env QUBITS_METRICS_TEXTFILE)")
    p.set_defaults(func=cmd_agent, verb_log_level="INFO")
    verbs = p.add_subparsers(dest="agent_verb", metavar="")
    q = verbs.add_parser("pause", help="stop this host's running tasks (leases stay alive)")
    q.add_argument("--for", dest="for_", metavar="DURATION", help="resume automatically after e.g. 1h30m")
    q.add_argument("--name", help="only this agent")
    q.set_defaults(func=cmd_pause, verb_log_level=None)
    q = verbs.add_parser("resume", help="continue this host's paused tasks")
    q.add_argument("--name", help="only this agent")
    q.set_defaults(func=cmd_resume, verb_log_level=None)
    q = verbs.add_parser("systemd", help="write a systemd unit for the agent")
    add_jobspace_option(q, project=False)
    q.add_argument("-o", "--output", default="qubits-agent.service",
                   help="the unit to write, and its environment file beside it (.env); '-' for the unit on stdout")
    q.add_argument("--user", default="qubits", help="the system user the agent runs as (created by the install steps)")
    q.add_argument("--env-file", default="/etc/qubits/agent.env", help="where the environment file goes on the node")
    q.add_argument("--env", action="append", default=[], metavar="NAME",
                   help="copy this variable from here into the environment file, e.g. AWS_SECRET_ACCESS_KEY (repeatable)")
    q.add_argument("--root", metavar="DIR", help="print install steps that put every path under DIR instead of / (an image, a test)")
    q.add_argument("--slots", type=int, default=1)
    q.add_argument("--capability", action="append", default=[])
    q.add_argument("--ttl", type=float, default=30.0)
    q.add_argument("--stop-timeout", type=float, default=60.0)
    q.set_defaults(func=cmd_systemd, verb_log_level=None)
