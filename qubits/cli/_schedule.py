"""`qubits schedule add | list | rm`: periodic submission, fired by whichever agent gets there first."""

from __future__ import annotations

import argparse
import sys
import time

from rich.table import Table

from qubits import connect

from . import EXIT_OK, add_jobspace_option
from ._common import console, print_json, require_jobspace


def cmd_add(args: argparse.Namespace) -> int:
    if args.commands:
        with sys.stdin if args.commands == "-" else open(args.commands, encoding="utf-8") as stream:  # noqa: SIM115
            commands = stream.read().splitlines()
    else:
        commands = list(args.command)
    client = connect(require_jobspace(args))
    schedule = client.schedule(args.name, commands, cron=args.cron, every=args.every, job_name=args.job_name,
                               max_attempts=args.max_attempts, replace=args.replace)
    first = schedule.next_tick(time.time()) if schedule.cron else schedule.anchor
    console.print(f"schedule {schedule.name}: {schedule.describe()}, {len(schedule.commands)} command(s); first tick "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(first))}; any agent of {client.url.split('?', 1)[0]} fires it",
                  soft_wrap=True)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    client = connect(require_jobspace(args))
    schedules = client.schedules()
    if args.json:
        print_json([s.to_dict() for s in schedules])
        return EXIT_OK
    table = Table(title=f"schedules in {client.url.split('?', 1)[0]}", title_justify="left")
    for col in ("name", "when", "next", "commands"):
        table.add_column(col, overflow="fold")
    now = time.time()
    for s in schedules:
        table.add_row(s.name, s.describe(), time.strftime("%H:%M:%S", time.localtime(s.next_tick(now))), "; ".join(s.commands))
    console.print(table)
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    connect(require_jobspace(args)).unschedule(args.name)
    console.print(f"removed schedule {args.name}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("schedule", help="submit commands periodically (cron or --every): schedule add | list | rm")
    verbs = p.add_subparsers(dest="schedule_verb", metavar="")
    q = verbs.add_parser("add", help="add a schedule: e.g. qubits schedule add nightly --cron '0 3 * * *' --command 'python sync.py'")
    add_jobspace_option(q)
    q.add_argument("name", help="the schedule's name (letters, digits, . _ -)")
    when = q.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="5 fields (minute hour day month weekday), or 6 with seconds first; in UTC")
    when.add_argument("--every", metavar="INTERVAL", help="an interval from now: 2s, 5m, 1h")
    q.add_argument("--commands", metavar="FILE", help="submit these commands (one a line; '-' for stdin) at each tick")
    q.add_argument("--command", action="append", default=[], metavar="CMD", help="or this command (repeatable: one task each)")
    q.add_argument("--job-name", default="", help="the name of the jobs it submits (default: schedule NAME)")
    q.add_argument("--max-attempts", type=int, help="attempts per task (default 3)")
    q.add_argument("--replace", action="store_true", help="replace a schedule of the same name")
    q.set_defaults(func=cmd_add)
    q = verbs.add_parser("list", help="the schedules and their next ticks")
    add_jobspace_option(q)
    q.add_argument("--json", action="store_true", help="JSON on stdout")
    q.set_defaults(func=cmd_list)
    q = verbs.add_parser("rm", help="remove a schedule: no tick fires after this")
    add_jobspace_option(q)
    q.add_argument("name")
    q.set_defaults(func=cmd_rm)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])
