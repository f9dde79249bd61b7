"""Verbs for jobs from a laptop: submit, status, wait, logs, cancel, retry, jobs, last, nodes."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.live import Live
from rich.table import Table
from rich.text import Text

from qubits import Client, JobStatus, connect
from qubits._defaults import MAX_ATTEMPTS
from qubits._status import JOB_STATES, TASK_STATES
from qubits.errors import NotFoundError, UsageError, WaitTimeout

from . import EXIT_FAILED, EXIT_OK, add_jobspace_option
from ._common import add_project_options, confirm, console, out, print_json, require_jobspace

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


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when)) if when else ""


def status_table(status: JobStatus, width: int | None = None) -> Table:
    """A job's summary line as the title, one row per task worth showing: its id and name, state,
    attempt n of m, node, start, end, duration and exit code."""
    from ._views import elapsed, fitted_table

    rows: list[list[str | Text]] = []
    for row in status.rows:
        style = _STYLE.get(row.state, "")
        duration = row.duration
        rows.append([row.task, Text(row.name), f"[{style}]{row.state}[/]" if style else row.state, row.attempt_text(),
                     row.holder, _clock(row.started), _clock(row.finished), "" if duration is None else elapsed(duration),
                     "" if row.exit_code is None else str(row.exit_code), Text((row.error or "")[:200])])
    headers = ["task", "name", "state", "attempt", "node", "start", "end", "time", "exit", "error"]
    return fitted_table(status.summary(), headers, rows, width=width or out.width)


def _read_commands(path: str) -> list[str]:
    """The lines of a commands file ('-': stdin), or a usage error naming what is wrong with it."""
    if path == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file; --commands takes a file with one shell command per line") from None
        except IsADirectoryError:
            raise UsageError(f"{path} is a folder; --commands takes a file with one shell command per line") from None
        except OSError as exc:
            raise UsageError(f"{path}: cannot read it ({exc.strerror})") from None
    where = "stdin" if path == "-" else path
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{where} is not a text file; --commands takes one shell command per line (UTF-8)") from None
    if "\x00" in text:
        raise UsageError(f"{where} is not a text file (it holds NUL bytes); --commands takes one shell command per line")
    return text.splitlines()


def cmd_submit(args: argparse.Namespace) -> int:
    if args.wrap is not None and args.commands:
        raise UsageError("give either --wrap CMD or --commands FILE, not both")
    if args.wrap is None and not args.commands:
        if args.array or args.after:
            raise UsageError("--array and --after need the commands: --wrap CMD or --commands FILE")
        return _submit_targets(args)
    if args.wrap is not None:
        lines, source = [args.wrap], ""
    else:
        lines, source = _read_commands(args.commands), ("" if args.commands == "-" else args.commands)
    if not any(ln.strip() and not ln.strip().startswith("#") for ln in lines):
        raise UsageError(f"{source or 'the input'} has no commands (blank lines and # comments are skipped)")
    client = _client(args)
    job = client.submit_commands(
        lines,
        name=args.name or source,
        requires=args.requires,
        resources=_resources(args),
        max_attempts=args.max_attempts,
        timeout=args.timeout,
        priority=args.priority,
        image=args.image,
        delay=args.delay,
        array=args.array,
        after=args.after,
        code=args.code,
    )
    print(job.id)
    if args.wait:
        status = job.wait()
        out.print(status_table(status))
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
        out.print(status_table(status))
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
        with Live(status_table(job.status(state=args.state)), console=out, refresh_per_second=2) as live:
            while True:
                status = job.status(state=args.state)
                live.update(status_table(status))
                if status.finished:
                    break
                time.sleep(1.0)
    else:
        status = job.status(state=args.state)
    if args.json:
        print_json(status.to_dict())
    elif not args.watch:
        out.print(status_table(status))
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
        out.print(status_table(status))
    return EXIT_OK if status.ok else EXIT_FAILED


def _logs_target(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """(job, task or None) of `qubits logs [JOB] [TASK]`: one word is a job if there is one by that
    id, else a task of the last job (as before whole-job logs existed)."""
    client = _client(args)
    if args.task is not None or args.job in (None, "last"):
        return _job(args), args.task
    try:
        return client.job(args.job), None
    except NotFoundError:
        last = client.last()
        last._task_id(args.job)  # NotFoundError: neither a job nor a task of the last job
        return last, args.job


def cmd_logs(args: argparse.Namespace) -> int:
    job, task = _logs_target(args)
    stream = args.stream
    out_ = sys.stdout.buffer
    if args.follow:
        if task is None:
            raise UsageError("--follow needs a task: qubits logs JOB TASK -f")
        for part in job.follow(task, stream=stream):
            out_.write(part)
            out_.flush()
        return EXIT_OK
    data = job.logs(task, attempt=args.attempt, stream=stream)
    out_.write(data)
    out_.flush()
    if not data:
        which = "" if stream == "both" else f" on {stream}"
        what = f"task {task} wrote nothing" if task else f"no task of job {job.id} wrote anything"
        console.print(f"[dim]{what}{which} (yet)[/]")
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


def since_time(text: str | None) -> float | None:
    """--since: an age (30m, 12h, 7d) or a date (2026-12-04, 2026-12-04T15:30), as a wall-clock time."""
    if not text:
        return None
    from datetime import datetime

    from nodeagent._control import parse_duration

    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(f"--since {text!r}: give an age (30m, 12h, 7d) or a date (2026-12-04, 2026-12-04T15:30)") from None


def cmd_jobs(args: argparse.Namespace) -> int:
    if args.shares:
        from ._shares import show_shares

        return show_shares(_client(args), as_json=args.json)
    from ._views import jobs_table

    client = _client(args)
    statuses = client.job_statuses(state=args.state, user=args.user, since=since_time(args.since))
    if args.json:
        print_json([{"id": st.job, **{k: v for k, v in st.to_dict().items() if k != "tasks"}} for st in statuses])
        return EXIT_OK
    out.print(jobs_table(statuses, width=out.width, title=f"jobs in {client.url.split('?', 1)[0]}", bar=out.is_terminal and out.width >= 100))
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
    out.print(nodes_table(nodes, title=f"agents in {client.url.split('?', 1)[0]}", show_all=args.all, width=out.width))
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
    p.add_argument("--code", metavar="DIR", help="ship this folder (e.g. .) to the nodes; the commands run in it (default: an empty folder)")
    p.add_argument("--wrap", metavar="CMD", help="one shell command, given here (like sbatch --wrap)")
    p.add_argument("--array", metavar="SPEC", help="run each command once per index, with $QUBITS_ARRAY_INDEX set: 1-100, 1,3,5, 0-99:2 (SLURM's syntax)")
    p.add_argument("--after", metavar="JOB[:ok|any]", help="no task starts before JOB finished: ok (default) every task succeeded, else these end upstream-failed; any: in any way")
    p.add_argument("--name", default="", help="a name for the job")
    p.add_argument("--requires", "-r", action="append", default=[], metavar="CAP", help="a capability each task needs (repeatable)")
    p.add_argument("--cpus", type=float, help="cpus each task takes")
    p.add_argument("--memory", type=float, help="memory (GB) each task takes")
    p.add_argument("--gpus", type=float, help="gpus each task takes")
    p.add_argument("--max-attempts", type=int, metavar="N",
                   help=f"attempts per task, the first run included, before it ends failed (default {MAX_ATTEMPTS}: "
                        "a failing command runs 3 times; `status` shows 'attempt n of m')")
    p.add_argument("--timeout", type=float, help="seconds a task may run")
    p.add_argument("--priority", type=int, default=0, help="higher runs first")
    p.add_argument("--image", help="run each command inside this container image (docker://…, a reference, or a .sif file)")
    p.add_argument("--delay", type=float, default=0.0, metavar="SECONDS", help="start no task before this many seconds from now")
    p.add_argument("--wait", action="store_true", help="wait for the job and exit 1 if a task failed")
    p.add_argument("--profile", "-p", help="Qfile profile")
    p.set_defaults(func=cmd_submit)

    def job_parser(name: str, help_: str, func, task: bool = False) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        q: argparse.ArgumentParser = sub.add_parser(name, help=help_)
        add_jobspace_option(q, project=False)
        q.add_argument("job", nargs="?", default="last", help="job id (default: the last one)")
        if task:
            q.add_argument("task", nargs="?", help="task id or name (default: every task of the job, each under a line with its id)")
        q.set_defaults(func=func)
        return q

    q = job_parser("status", "a job's summary and table: per task its id and name, state, attempt n of m, node, start, end, duration, exit code", cmd_status)
    q.add_argument("--json", action="store_true", help="JSON on stdout")
    q.add_argument("--state", "-s", metavar="STATE[,STATE]", help=f"only tasks in these states ({', '.join(TASK_STATES)})")
    q.add_argument("--watch", "-w", action="store_true", help="live progress until the job finishes")
    q = job_parser("wait", "wait for a job; exit 1 if a task failed", cmd_wait)
    q.add_argument("--timeout", type=float, help="give up after this many seconds (exit 5)")
    q.add_argument("--json", action="store_true")
    q = job_parser("logs", "a task's output, stdout and stderr interleaved as written (or a whole job's)", cmd_logs, task=True)
    q.add_argument("--follow", "-F", action="store_true", help="stream until the task finishes")
    q.add_argument("--attempt", type=int, help="which run of the task (status's --json 'run'; default: the last)")
    one = q.add_mutually_exclusive_group()
    one.add_argument("--stdout", dest="stream", action="store_const", const="stdout", help="stdout only")
    one.add_argument("--stderr", dest="stream", action="store_const", const="stderr", help="stderr only")
    one.add_argument("--stream", choices=["both", "stdout", "stderr"], help="both (default: interleaved as written), stdout or stderr")
    q.set_defaults(stream="both")
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
    q = sub.add_parser("jobs", help="list jobs, like squeue/sacct: state, progress, counts, elapsed time, user, name")
    add_jobspace_option(q, project=False)
    q.add_argument("--state", "-s", metavar="STATE[,STATE]", help=f"only jobs in these states ({', '.join(JOB_STATES)})")
    q.add_argument("--user", "-u", metavar="USER", help="only jobs submitted by USER (a name, or user@host)")
    q.add_argument("--since", "-S", metavar="AGE|DATE", help="only jobs submitted since: an age (30m, 12h, 7d) or a date (2026-12-04)")
    q.add_argument("--json", action="store_true")
    q.add_argument("--shares", action="store_true", help="each user's running tasks and share of what runs (fair share)")
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
