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

from . import EXIT_OK, EXIT_USAGE, add_jobspace_option, env_default
from ._common import console, require_jobspace

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
# Credentials and QUBITS_JOBSPACE live here, not in the unit (chmod 600).
EnvironmentFile={env_file}
ExecStart={exe} agent --slots {slots}{caps} --ttl {ttl:g}
# Draining: SIGTERM stops claims; running tasks get the stop timeout, then their leases are released.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec={stop}
Restart=on-failure
RestartSec=5
NoNewPrivileges=yes

[Install]
WantedBy=multi-user.target
"""


def _int_env(name: str) -> int | None:
    value = env_default(name)
    return int(value) if value else None


def _cache() -> Path:
    return Path(os.environ.get("QUBITS_CACHE", "~/.cache/qubits")).expanduser()


def cmd_agent(args: argparse.Namespace) -> int:
    import jobspaces
    from nodeagent import Agent, AgentConfig, refuse_root

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
        from nodeagent._control import DEFAULT_BUSY_WATCH, BusyWatch, parse_duration
        from qubits.errors import UsageError

        try:
            idle = parse_duration(args.pause_when_busy)
        except ValueError as exc:
            raise UsageError(f"--pause-when-busy: {exc}") from None
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


def cmd_pause(args: argparse.Namespace) -> int:
    from nodeagent._control import parse_duration, set_paused

    until = time.time() + parse_duration(args.for_) if args.for_ else None
    reached = set_paused(_cache() / "agents", True, until=until, name=args.name)
    if not reached:
        console.print("no running agent on this host")
        return EXIT_USAGE
    console.print(f"paused {', '.join(reached)}" + (f" until {time.strftime('%H:%M:%S', time.localtime(until))}" if until else ""))
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    from nodeagent._control import set_paused

    reached = set_paused(_cache() / "agents", False, name=args.name)
    if not reached:
        console.print("no running agent on this host")
        return EXIT_USAGE
    console.print(f"resumed {', '.join(reached)}")
    return EXIT_OK


def cmd_systemd(args: argparse.Namespace) -> int:
    exe = shutil.which("qubits") or f"{sys.executable} -m qubits.cli"
    caps = "".join(f" --capability {c}" for c in args.capability)
    unit = _UNIT.format(
        jobspace_desc=args.jobspace or "QUBITS_JOBSPACE from the environment file",
        user=args.user,
        env_file=args.env_file,
        exe=exe,
        slots=args.slots,
        caps=caps,
        ttl=args.ttl,
        stop=int(max(args.stop_timeout, args.ttl) + 30),
    )
    if args.output == "-":
        sys.stdout.write(unit)
    else:
        Path(args.output).write_text(unit)
        console.print(
            f"wrote {args.output}. Install it:\n"
            f"  sudo cp {args.output} /etc/systemd/system/qubits-agent.service\n"
            f"  sudo install -m 600 /dev/null {args.env_file}   # then add QUBITS_JOBSPACE=… and credentials\n"
            "  sudo systemctl daemon-reload && sudo systemctl enable --now qubits-agent\n"
            "  journalctl -u qubits-agent -f"
        )
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("agent", help="run the node agent (and: agent pause | resume | systemd)")
    add_jobspace_option(p)
    p.add_argument("--slots", type=int, default=int(env_default("QUBITS_SLOTS", "1") or 1), help="tasks at once (env QUBITS_SLOTS)")
    p.add_argument("--capability", "-C", action="append", default=[], metavar="NAME", help="a capability this node offers (repeatable)")
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
    p.add_argument("--pause-when-busy", metavar="IDLE", default=env_default("QUBITS_PAUSE_WHEN_BUSY"),
                   help="pause while the machine is in interactive use; resume after IDLE (e.g. 10m) without activity (env QUBITS_PAUSE_WHEN_BUSY)")
    p.add_argument("--busy-watch", action="append", default=[], metavar="GLOB",
                   help="paths whose access time shows activity (repeatable; default the terminals /dev/pts/*, /dev/tty[0-9]*)")
    p.add_argument("--allow-root", action="store_true", default=bool(env_default("QUBITS_ALLOW_ROOT")), help="allow running tasks as root (env QUBITS_ALLOW_ROOT)")
    p.add_argument("--metrics-port", type=int, default=_int_env("QUBITS_METRICS_PORT"), metavar="PORT",
                   help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics (0: any free port, logged; env QUBITS_METRICS_PORT)")
    p.add_argument("--metrics-textfile", default=env_default("QUBITS_METRICS_TEXTFILE"), metavar="PATH",
                   help="write Prometheus metrics to PATH for node_exporter's textfile collector, atomically (env QUBITS_METRICS_TEXTFILE)")
    p.set_defaults(func=cmd_agent)
    verbs = p.add_subparsers(dest="agent_verb", metavar="")
    q = verbs.add_parser("pause", help="stop this host's running tasks (leases stay alive)")
    q.add_argument("--for", dest="for_", metavar="DURATION", help="resume automatically after e.g. 1h30m")
    q.add_argument("--name", help="only this agent")
    q.set_defaults(func=cmd_pause)
    q = verbs.add_parser("resume", help="continue this host's paused tasks")
    q.add_argument("--name", help="only this agent")
    q.set_defaults(func=cmd_resume)
    q = verbs.add_parser("systemd", help="write a systemd unit for the agent")
    add_jobspace_option(q)
    q.add_argument("-o", "--output", default="qubits-agent.service", help="file to write ('-' for stdout)")
    q.add_argument("--user", default=os.environ.get("USER", "qubits"))
    q.add_argument("--env-file", default="/etc/qubits/agent.env")
    q.add_argument("--slots", type=int, default=1)
    q.add_argument("--capability", "-C", action="append", default=[])
    q.add_argument("--ttl", type=float, default=30.0)
    q.add_argument("--stop-timeout", type=float, default=60.0)
    q.set_defaults(func=cmd_systemd)
