"""Verbs for jobs from a laptop: submit, status, wait, logs, cancel, retry, jobs, last, nodes."""

from __future__ import annotations

import argparse
import sys
import time

from rich.live import Live
from rich.table import Table

from qubits import Client, JobStatus, connect
from qubits.errors import UsageError, WaitTimeout

from . import EXIT_FAILED, EXIT_OK, add_jobspace_option
from ._common import add_project_options, confirm, console, print_json, require_jobspace

_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "upstream_failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "released": "magenta",
    "parked": "blue",
    "pending": "dim",
}


def _client(args: argparse.Namespace) -> Client:
    return connect(require_jobspace(args))


def status_table(status: JobStatus) -> Table:
    """A job's summary line as the title, one row per task worth showing."""
    table = Table(title=status.summary(), title_justify="left", expand=False)
    for col in ("task", "state", "attempt", "node", "error"):
        table.add_column(col, overflow="fold")
    for row in status.rows:
        style = _STYLE.get(row.state, "")
        table.add_row(row.name or row.task, f"[{style}]{row.state}[/]" if style else row.state, str(row.attempt or ""), row.holder, (row.error or "")[:120])
    return table


def cmd_submit(args: argparse.Namespace) -> int:
    if not args.commands:
        return _submit_targets(args)
    client = _client(args)
    stream = sys.stdin if args.commands == "-" else open(args.commands, encoding="utf-8")  # noqa: SIM115
    with stream:
        job = client.submit_commands(
            stream,
            name=args.name or ("" if args.commands == "-" else args.commands),
            requires=args.requires,
            resources=_resources(args),
            max_attempts=args.max_attempts,
            timeout=args.timeout,
            priority=args.priority,
            delay=args.delay,
        )
    print(job.id)
    if args.wait:
        status = job.wait()
        console.print(status_table(status))
        return EXIT_OK if status.ok else EXIT_FAILED
    return EXIT_OK


def _submit_targets(args: argparse.Namespace) -> int:
    """`qubits submit [TARGETS]` in a project with a Qfile: to its configured jobspace (or --jobspace)."""
    from qubits.qfile import submit_targets

    try:
        job = submit_targets(args.targets, project=args.directory, profile=args.profile, qfile=args.qfile, jobspace=args.jobspace)
    except UsageError as exc:
        if "no Qfile" in str(exc):
            raise UsageError(f"{exc}; or give --commands FILE (one shell command per line)") from None
        raise
    print(job.id)
    if args.wait:
        status = job.wait()
        console.print(status_table(status))
        return EXIT_OK if status.ok else EXIT_FAILED
    return EXIT_OK


def _resources(args: argparse.Namespace) -> dict[str, float]:
    out = {}
    for name in ("cpus", "memory", "gpus"):
        value = getattr(args, name, None)
        if value:
            out[name] = float(value)
    return out


def _job(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    client = _client(args)
    return client.last() if args.job in (None, "last") else client.job(args.job)


def cmd_status(args: argparse.Namespace) -> int:
    job = _job(args)
    if args.watch and not args.json:
        with Live(status_table(job.status()), console=console, refresh_per_second=2) as live:
            while True:
                status = job.status()
                live.update(status_table(status))
                if status.finished:
                    break
                time.sleep(1.0)
    else:
        status = job.status()
    if args.json:
        print_json(status.to_dict())
    elif not args.watch:
        console.print(status_table(status))
    return EXIT_OK if not status.finished or status.ok else EXIT_FAILED


def cmd_wait(args: argparse.Namespace) -> int:
    job = _job(args)
    try:
        status = job.wait(timeout=args.timeout)
    except WaitTimeout:
        if args.json:
            print_json(job.status().to_dict())  # scripts read where it got to, then the exit code 5
        raise
    if args.json:
        print_json(status.to_dict())
    else:
        console.print(status_table(status))
    return EXIT_OK if status.ok else EXIT_FAILED


def cmd_logs(args: argparse.Namespace) -> int:
    job = _job(args)
    out = sys.stdout.buffer
    if args.follow:
        for part in job.follow(args.task, stream=args.stream):
            out.write(part)
            out.flush()
    else:
        out.write(job.logs(args.task, attempt=args.attempt, stream=args.stream))
    out.flush()
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    if args.job is None:
        last = _client(args).last()
        name = last.spec().name
        if not confirm(f"cancel the last job, {last.id}" + (f" ({name})" if name else "") + "?",
                       otherwise="say which job: qubits cancel JOB [TASK …] (or 'last')"):
            return EXIT_FAILED
        args.job = last.id
    job = _job(args)
    if args.task:
        ended = job.cancel(task=args.task)
        console.print(f"cancelled {ended} of {len(args.task)} task(s) of {job.id}; its other tasks go on")
        return EXIT_OK if ended == len(args.task) else EXIT_FAILED
    decided = job.cancel()
    console.print(f"cancelled {job.id}: {decided} task(s) decided now; running ones stop on their agents")
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    job = _job(args)
    status = job.status(rows=0)
    if not status.finished and not args.force:
        raise UsageError(f"job {job.id} is running ({status.summary()}): cancel it first, or pass --force (cancels, then deletes)")
    if not args.yes and not confirm(f"delete job {job.id} {status.name} and everything it wrote?",
                                    otherwise=f"deleting a job needs --yes when not on a terminal: qubits rm {job.id} --yes"):
        return EXIT_FAILED
    removed = job.remove(force=args.force)
    console.print(f"removed job {job.id}: {removed} objects")
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    job = _job(args)
    new = job.retry(failed=True)
    print(new.id)
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    client = _client(args)
    specs = client.jobs()
    if args.json:
        print_json([s.to_dict() for s in specs])
        return EXIT_OK
    table = Table(title=f"jobs in {client.url}", title_justify="left")
    for col in ("job", "kind", "name", "tasks", "submitted", "by"):
        table.add_column(col)
    for s in specs:
        table.add_row(s.id, s.kind, s.name, str(s.task_count), time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created)), s.submitter)
    console.print(table)
    return EXIT_OK


def cmd_last(args: argparse.Namespace) -> int:
    print(_client(args).last().id)
    return EXIT_OK


def cmd_nodes(args: argparse.Namespace) -> int:
    from ._views import node_dict, node_state, nodes_table, skew_note

    client = _client(args)
    nodes = client.nodes()
    if args.json:
        print_json([node_dict(info, age) for info, age in nodes])  # every agent, with its state: scripts filter
        return EXIT_OK
    console.print(nodes_table(nodes, title=f"agents in {client.url.split('?', 1)[0]}", show_all=args.all))
    hidden = sum(1 for info, age in nodes if node_state(info, age) in ("stopped", "lost"))
    if hidden and not args.all:
        console.print(f"[dim]{hidden} stopped or lost agent(s) not shown (--all)[/]")
    note = skew_note(nodes)
    if note:
        console.print(f"[yellow]{note}[/]")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("submit", help="submit a job (--commands FILE: one shell command per line)")
    add_jobspace_option(p, project=False)
    p.add_argument("targets", nargs="*", help="Qfile targets (in a project with a Qfile)")
    p.add_argument("--commands", "-c", metavar="FILE", help="one shell command per line ('-' for stdin)")
    p.add_argument("--name", default="", help="a name for the job")
    p.add_argument("--requires", "-r", action="append", default=[], metavar="CAP", help="a capability each task needs (repeatable)")
    p.add_argument("--cpus", type=float, help="cpus each task takes")
    p.add_argument("--memory", type=float, help="memory (GB) each task takes")
    p.add_argument("--gpus", type=float, help="gpus each task takes")
    p.add_argument("--max-attempts", type=int, help="attempts per task before it ends failed (default 3)")
    p.add_argument("--timeout", type=float, help="seconds a task may run")
    p.add_argument("--priority", type=int, default=0, help="higher runs first")
    p.add_argument("--delay", type=float, default=0.0, metavar="SECONDS", help="start no task before this many seconds from now")
    p.add_argument("--wait", action="store_true", help="wait for the job and exit 1 if a task failed")
    p.add_argument("--profile", "-p", help="Qfile profile")
    p.set_defaults(func=cmd_submit)

    def job_parser(name: str, help_: str, func, task: bool = False) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        q: argparse.ArgumentParser = sub.add_parser(name, help=help_)
        add_jobspace_option(q, project=False)
        q.add_argument("job", nargs="?", default="last", help="job id (default: the last one)")
        if task:
            q.add_argument("task", help="task id or name")
        q.set_defaults(func=func)
        return q

    q = job_parser("status", "a job's summary and table", cmd_status)
    q.add_argument("--json", action="store_true", help="JSON on stdout")
    q.add_argument("--watch", "-w", action="store_true", help="live progress until the job finishes")
    q = job_parser("wait", "wait for a job; exit 1 if a task failed", cmd_wait)
    q.add_argument("--timeout", type=float, help="give up after this many seconds (exit 5)")
    q.add_argument("--json", action="store_true")
    q = job_parser("logs", "a task's output", cmd_logs, task=True)
    q.add_argument("--follow", "-f", action="store_true", help="stream until the task finishes")
    q.add_argument("--attempt", type=int, help="which attempt (default: the last)")
    q.add_argument("--stream", choices=["stdout", "stderr"], default="stdout")
    q = sub.add_parser("cancel", help="cancel a job, or some of its tasks (asks on a terminal when no job is named)")
    add_jobspace_option(q, project=False)
    q.add_argument("job", nargs="?", help="job id, or 'last' (required when not on a terminal)")
    q.add_argument("task", nargs="*", help="only these tasks (ids or names): the job's others go on")
    q.set_defaults(func=cmd_cancel)
    q = sub.add_parser("rm", help="delete a job and everything it wrote (asks on a terminal; --yes otherwise)")
    add_jobspace_option(q, project=False)
    q.add_argument("job", help="job id, or 'last'")
    q.add_argument("--yes", "-y", action="store_true", help="do not ask")
    q.add_argument("--force", action="store_true", help="a running job too: cancel it first, then delete it")
    q.set_defaults(func=cmd_rm)
    q = job_parser("retry", "resubmit a job's failed tasks as a new job", cmd_retry)
    q.add_argument("--failed", action="store_true", help="the tasks that did not succeed (the default, and the only selection)")
    q = sub.add_parser("jobs", help="list jobs")
    add_jobspace_option(q, project=False)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_jobs)
    q = sub.add_parser("last", help="print the last job's id")
    add_jobspace_option(q, project=False)
    q.set_defaults(func=cmd_last)
    q = sub.add_parser("nodes", help="live agents: capabilities, slots, running tasks, paused, version, last seen")
    add_jobspace_option(q, project=False)
    q.add_argument("--all", "-a", action="store_true", help="also agents that stopped or were not seen for minutes (--json lists all)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_nodes)
    for verb in sub.choices.values():
        if "--jobspace" in verb._option_string_actions:
            add_project_options(verb)  # last: -f stays --follow where a verb has it
