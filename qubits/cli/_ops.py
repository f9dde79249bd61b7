"""Verbs for running on your own machines and operating a jobspace: run, pssh, kill, top, gc.

`qubits run` submits the job, then starts one agent per node of the Qfile over ssh (with
--exit-when-idle, so the fleet leaves when the work is done) and follows the job to the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

import jobspaces
from qubits import Client, Job, __version__, connect
from qubits._fleet import FleetOptions, Started, fleet_records, kill_fleet, local_jobspace, pssh, start_fleet
from qubits._hosts import Node, parse_nodes
from qubits.errors import QubitsError, UsageError

from . import EXIT_FAILED, EXIT_OK, add_jobspace_option, env_default
from ._common import add_project_options, confirm, console, out, print_json

_LOCALHOST = {"localhost", "127.0.0.1", "::1"}


# -- the project: Qfile config, jobspace, nodes ---------------------------------------------------------
def _project(args: argparse.Namespace, *, required: bool) -> tuple[Any, dict[str, Any]]:
    """The Qfile and its resolved config (profile applied), or (None, {}) when there is none and
    ``required`` is false."""
    from qubits.qfile import find_qfile, load_qfile

    try:
        qf = load_qfile(find_qfile(args.directory, args.qfile), args.profile)
    except UsageError as exc:
        if required or args.qfile or args.profile or "no Qfile" not in str(exc):
            raise
        return None, {}
    return qf, qf.resolve(args.profile)


def _jobspace(args: argparse.Namespace, config: dict[str, Any]) -> str:
    url = args.jobspace or config.get("jobspace")
    if not url:
        raise UsageError("no jobspace: pass --jobspace URL, set QUBITS_JOBSPACE, or run in a project with a Qfile")
    return str(url)


def _nodes(args: argparse.Namespace, config: dict[str, Any]) -> list[Node]:
    overrides: dict[str, Any] = {"python": args.remote_python, "user": args.remote_user, "config": args.ssh_config,
                                 "options": list(args.ssh_option or [])}
    nodes = parse_nodes(list(args.node) if args.node else config.get("nodes"), ssh=config.get("ssh"), overrides=overrides)
    if not nodes:
        raise UsageError("no nodes: set conf.nodes in the Qfile (e.g. conf.nodes = [('host1', 4), 'user@host2']) or pass --node HOST")
    return nodes


def _ssh_options(p: argparse.ArgumentParser) -> None:
    add_project_options(p)
    p.add_argument("--node", action="append", default=[], metavar="ADDR",
                   help="a node, as [user@]host[:port] (repeatable; replaces the Qfile's nodes)")
    p.add_argument("--remote-python", default=None, metavar="PY", help="Python on the nodes (default python3; env QUBITS_REMOTE_PYTHON)")
    p.add_argument("--remote-user", default=None, metavar="USER", help="ssh user on the nodes (env QUBITS_REMOTE_USER)")
    p.add_argument("--ssh-config", metavar="FILE", help="an ssh config file (ssh -F)")
    p.add_argument("--ssh-option", action="append", default=[], metavar="OPT", help="an ssh -o option, e.g. IdentityFile=~/.ssh/lab (repeatable)")


# -- run --------------------------------------------------------------------------------------------------
def _submit(args: argparse.Namespace, qf: Any, config: dict[str, Any], url: str) -> Job:
    if args.commands:
        client = connect(url)
        stream = sys.stdin if args.commands == "-" else open(args.commands, encoding="utf-8")  # noqa: SIM115
        with stream:
            return client.submit_commands(stream, name=args.name or Path(args.commands).name)
    from qubits.qfile import submit_targets

    return submit_targets(args.targets, project=qf.project, profile=args.profile, qfile=str(qf.path), jobspace=url, force=args.always)


def _report_node(started: Started) -> None:
    node = started.node
    where = f"{node.address}" + (f":{node.port}" if node.port else "")
    if started.ok:
        extra = f", installed qubits {started.installed}" if started.installed else ""
        console.print(f"  [green]started[/] {node.name} ({where}): agent {started.agent}, pid {started.pid}, {node.slots} slot(s){extra}", soft_wrap=True)
    else:
        console.print(f"  [red]skipped[/] {node.name} ({where}): {started.error}", soft_wrap=True)


def _fleet_gone(client: Client, agents: set[str]) -> bool:
    from ._views import node_state

    seen = {info.name: node_state(info, age) for info, age in client.nodes() if info.name in agents}
    return bool(agents) and all(seen.get(name) in ("stopped", "lost") for name in agents)


def cmd_run(args: argparse.Namespace) -> int:
    qf, config = _project(args, required=not args.commands)
    url = _jobspace(args, config)
    nodes = _nodes(args, config)
    if local_jobspace(url) and any(n.host not in _LOCALHOST for n in nodes):
        console.print(f"[yellow]note:[/] the jobspace {url} is a folder on this machine: nodes elsewhere must see it at the same path (NFS), or use a bucket (-p PROFILE)")
    job = _submit(args, qf, config, url)
    print(job.id, flush=True)
    console.print(f"job {job.id} submitted to {url.split('?', 1)[0]}; starting agents on {len(nodes)} node(s)", soft_wrap=True)
    env = {}
    for name in args.env:
        if name not in os.environ:
            raise UsageError(f"--env {name}: not set here")
        env[name] = os.environ[name]
    options = FleetOptions(ttl=args.ttl, idle=args.idle, stop_timeout=args.stop_timeout, install=args.install,
                           wheelhouse=Path(args.wheelhouse) if args.wheelhouse else None, env=env,
                           log_level=args.agent_log_level)
    fleet = start_fleet(job.client.aio, job.id, nodes, options, on_node=None if args.json else _report_node)
    ok = [s for s in fleet if s.ok]
    skipped = [s for s in fleet if not s.ok]
    report = [{"node": s.node.name, "host": s.node.host, "started": s.ok, "agent": s.agent, "pid": s.pid,
               "error": s.error or None, "log": s.log or None} for s in fleet]
    if not ok:
        if args.json:
            print_json({"job": job.id, "jobspace": url, "ok": False, "nodes": report})
        raise QubitsError(f"no node could start an agent; job {job.id} waits in {url.split('?', 1)[0]} for agents "
                          f"(fix the nodes and run `qubits agent -j URL --job {job.id}` on them)")
    if args.detach:
        if args.json:
            print_json({"job": job.id, "jobspace": url, "nodes": report})
        else:
            console.print(f"agents exit after {args.idle:g}s with nothing to do; follow: qubits status -w {job.id} · stop now: qubits kill {job.id}")
        return EXIT_OK
    status = _follow(job, {s.agent for s in ok}, args.timeout, quiet=args.json, verbose=args.verbose)
    if args.json:
        print_json({"job": job.id, "jobspace": url, "ok": status.ok, "nodes": report, "status": status.to_dict()})
        return EXIT_OK if status.ok else EXIT_FAILED
    colour = "green" if status.ok else "red"
    console.print(f"[{colour}]{status.summary()}[/]")
    for row in status.rows:
        if row.state not in ("succeeded", "pending"):
            console.print(f"  [red]{row.state}[/] {row.name}: {row.error or ''}", soft_wrap=True)
    if job.spec().kind == "qfile":
        from qubits.qfile import outputs

        for o in outputs(job):
            where = str(o.local) if o.local else (f"{url.split('?', 1)[0]}/{o.prefix}" if o.prefix else "")
            console.print(f"  {o.target}\t{o.outcome or 'not made'}\t{where}", soft_wrap=True)
    if skipped:
        console.print(f"[yellow]{len(skipped)} node(s) skipped:[/] " + "; ".join(f"{s.node.name}: {s.error}" for s in skipped), soft_wrap=True)
    return EXIT_OK if status.ok else EXIT_FAILED


def _follow(job: Job, agents: set[str], timeout: float | None, *, quiet: bool, verbose: bool = False) -> Any:
    from qubits._events import JobEvents

    from ._progress import print_event

    started = time.monotonic()
    live = None if quiet else Live(Text("waiting…"), console=console, refresh_per_second=4, transient=True)
    events, show = (JobEvents(job.client, job.id), print_event(started)) if verbose and not quiet else (None, None)
    next_fleet_check = started + 5.0
    if live is not None:
        live.start()
    try:
        while True:
            status = job.status(rows=0)
            if events is not None and show is not None:
                for event in events.poll():
                    show(event)
            if live is not None:
                live.update(Text(f"job {job.id}: {status.summary().split(': ', 1)[-1]}  {time.monotonic() - started:.0f}s"))
            if status.finished:
                return job.status()
            now = time.monotonic()
            if timeout is not None and now - started > timeout:
                from qubits.errors import WaitTimeout

                raise WaitTimeout(f"job {job.id} not finished after {timeout:g}s: {status.summary()}; its agents keep working (qubits kill {job.id})")
            if now >= next_fleet_check:
                next_fleet_check = now + 5.0
                if _fleet_gone(job.client, agents) and not job.status(rows=0).finished:
                    raise QubitsError(f"every agent of this run stopped before job {job.id} finished: "
                                      f"see their logs on the nodes (fleet/{job.id}/ records say where), then `qubits run` again or start agents")
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print(f"stopped following; the agents keep working and leave when idle. Stop them: qubits kill {job.id}")
        raise
    finally:
        if live is not None:
            live.stop()


# -- pssh, kill -------------------------------------------------------------------------------------------
def cmd_pssh(args: argparse.Namespace) -> int:
    _qf, config = _project(args, required=False)
    nodes = _nodes(args, config)
    results = pssh(nodes, " ".join(args.command), timeout=args.timeout)
    if args.json:
        print_json([{"node": r.node.name, "host": r.node.host, "code": r.code, "stdout": r.stdout, "stderr": r.stderr} for r in results])
    else:
        for r in results:
            colour = "green" if r.code == 0 else "red"
            console.print(f"[bold]@ {r.node.name}[/] ({r.node.address}) [{colour}]exit {r.code}[/]")
            if r.stdout:
                sys.stdout.write(r.stdout if r.stdout.endswith("\n") else r.stdout + "\n")
                sys.stdout.flush()
            if r.stderr:
                console.print(Text(r.stderr.rstrip("\n"), style="dim"))
    return EXIT_OK if all(r.code == 0 for r in results) else EXIT_FAILED


def cmd_kill(args: argparse.Namespace) -> int:
    _qf, config = _project(args, required=False)
    client = connect(_jobspace(args, config))
    if args.job is None and not args.all:
        if not confirm(f"stop every agent that `qubits run` started in {client.url.split('?', 1)[0]}?",
                       otherwise="say which agents: qubits kill JOB, 'last', or --all (every run's)"):
            return EXIT_FAILED
        args.job = "all"
    job = None if args.all or args.job == "all" else (client.last().id if args.job == "last" else args.job)
    records = [r for r in fleet_records(client.aio, job) if args.stopped or not r.get("stopped")]
    if not records:
        console.print("no agents recorded" + (f" for job {job}" if job else "") + " (that are not stopped already)")
        return EXIT_OK
    results = kill_fleet(client.aio, records, signal_name=args.signal, wait=args.wait)
    if args.json:
        print_json([{"job": r.record["job"], "node": r.record["node"], "agent": r.record["agent"], "pid": r.record["pid"], "state": r.state} for r in results])
    else:
        for r in results:
            rec = r.record
            colour = "green" if r.state in ("stopped", "signalled", "not running") else "red"
            console.print(f"{rec['job']}  {rec['node']}  pid {rec['pid']}: [{colour}]{r.state}[/]", soft_wrap=True)
    bad = [r for r in results if r.state not in ("stopped", "signalled", "not running")]
    return EXIT_FAILED if bad else EXIT_OK


# -- top, gc ----------------------------------------------------------------------------------------------
def cmd_top(args: argparse.Namespace) -> int:
    from ._views import JobsCache, top_view

    _qf, config = _project(args, required=False)
    client = connect(_jobspace(args, config))
    cache = JobsCache()
    if args.once:
        out.print(top_view(client, cache, jobs=args.jobs, width=out.width))
        return EXIT_OK
    # COLUMNS/LINES are a shell's snapshot of the terminal size; a live view follows the terminal itself.
    term = Console(stderr=True, highlight=False, _environ={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")})
    with Live(top_view(client, cache, jobs=args.jobs, width=term.width), console=term, screen=term.is_terminal, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(args.interval)
                live.update(top_view(client, cache, jobs=args.jobs, width=term.width), refresh=True)
        except KeyboardInterrupt:
            return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    from nodeagent._control import parse_duration
    from qubits._gc import collect

    try:
        older = parse_duration(args.older_than)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    _qf, config = _project(args, required=False)
    client = connect(_jobspace(args, config))
    report = jobspaces.run_sync(collect(client.aio, older, dry_run=args.dry_run))
    if args.json:
        print_json(report.to_dict())
        return EXIT_OK
    verb = "would remove" if args.dry_run else "removed"
    for j in report.removed:
        console.print(f"{verb} job {j.job} {j.name}: {j.objects} objects")
    for j in report.kept:
        if args.verbose or j.reason.startswith(("running", "reused", "not sealed")):
            console.print(f"[dim]kept {j.job} {j.name}: {j.reason}[/]")
    console.print(f"{verb} {len(report.removed)} job(s), {len(report.bundles)} code bundle(s), {len(report.nodes)} old agent record(s): "
                  f"{report.objects} objects" + (" (dry run: nothing deleted)" if args.dry_run else ""))
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="submit TARGETS, start agents on the Qfile's nodes over ssh, follow the job to the end")
    add_jobspace_option(p)
    _ssh_options(p)
    p.add_argument("targets", nargs="*", help="Qfile targets (default: default)")
    p.add_argument("--commands", "-c", metavar="FILE", help="run these shell commands (one a line) instead of Qfile targets")
    p.add_argument("--name", default="", help="a name for a --commands job")
    p.add_argument("-B", "--always", action="store_true", help="make everything again: reuse no earlier job")
    p.add_argument("--ttl", type=float, default=30.0, help="lease ttl of the agents (seconds)")
    p.add_argument("--idle", type=float, default=float(env_default("QUBITS_FLEET_IDLE", "120") or 120),
                   help="agents exit after this long with nothing to do (seconds; env QUBITS_FLEET_IDLE)")
    p.add_argument("--stop-timeout", type=float, default=30.0, help="seconds running tasks get when an agent is stopped")
    p.add_argument("--install", choices=["auto", "always", "never"], default="auto",
                   help=f"install qubits on a node: auto (when missing or not {__version__}), always, never")
    p.add_argument("--wheelhouse", metavar="DIR", help="wheels of the dependencies, for nodes with no package index")
    p.add_argument("--env", action="append", default=[], metavar="NAME", help="pass this environment variable to the agents (repeatable; sent over ssh's stdin)")
    p.add_argument("--agent-log-level", default="INFO", help="log level of the agents (their logs stay on the nodes)")
    p.add_argument("--detach", "-d", action="store_true", help="return once the agents started")
    p.add_argument("--verbose", "-v", action="store_true", help="slow motion: each claim, wait, release, commit and agent as it happens (on stderr)")
    p.add_argument("--timeout", type=float, help="stop following after this many seconds (exit 5)")
    p.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("pssh", help="run a shell command on every node, in parallel; output per node")
    add_jobspace_option(p)
    _ssh_options(p)
    p.add_argument("command", nargs="+", help="the command (quote it, or put it after --)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per node")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pssh)

    p = sub.add_parser("kill", help="stop the agents `qubits run` started (of JOB, or of every run: all)")
    add_jobspace_option(p)
    add_project_options(p)
    p.add_argument("job", nargs="?", help="job id, 'last', or 'all' (no default: asks on a terminal)")
    p.add_argument("--signal", choices=["TERM", "INT", "KILL"], default="TERM",
                   help="TERM (default): stop claiming, let running tasks finish within the stop timeout; KILL: at once, tasks too")
    p.add_argument("--wait", type=float, default=0.0, help="wait up to this many seconds for the agents to exit")
    p.add_argument("--all", action="store_true", help="the agents of every run (the same as JOB 'all')")
    p.add_argument("--stopped", action="store_true", help="also agents already marked stopped")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_kill)

    p = sub.add_parser("top", help="a live view of jobs and agents")
    add_jobspace_option(p)
    add_project_options(p)
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    p.add_argument("--jobs", type=int, default=10, help="how many recent jobs to show")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    p.set_defaults(func=cmd_top)

    p = sub.add_parser("gc", help="remove finished jobs older than a cutoff, with all their objects (never a running job)")
    add_jobspace_option(p)
    add_project_options(p)
    p.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 30d, 12h, 90m (since the job's last task finished)")
    p.add_argument("--dry-run", "-n", action="store_true", help="say what would go; delete nothing")
    p.add_argument("--verbose", "-v", action="store_true", help="also list the jobs kept for being too recent")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gc)

