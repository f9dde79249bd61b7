"""``qubits doctor URL``: is this store safe for leases?

Checks reachability, credentials and the bucket, then create-only writes, compare-and-swap (a stale
ETag and a missing key must be refused), races of concurrent creators and of concurrent CAS on one ETag,
list-after-write and delete. Probe objects live under ``doctor/<random>/`` and are deleted afterwards.
Exit 0 only when every check passed; 3 when the store is unusable or unsafe, with a one-line reason.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from jobspaces import JobspaceError, Timing, open_jobspace, run_sync
from jobspaces._probe import ProbeReport, probe

from . import EXIT_JOBSPACE, EXIT_OK, env_default
from ._common import console, fail, print_json

_TIMING = Timing(request_timeout=30.0, budget=45.0, max_attempts=4)
"""Generous per-request time (SeaweedFS makes contended losers wait on a lock retried every second)."""


def register(sub: Any) -> None:
    """Add the ``doctor`` verb."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "doctor",
        help="check that a store is safe for leases (conditional writes, races, listing, delete)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "url", nargs="?", default=env_default("QUBITS_JOBSPACE"), metavar="URL",
        help="the jobspace to check: a path, file://, s3://bucket/prefix?endpoint=…, gs://, az:// (env QUBITS_JOBSPACE)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--racers", type=int, default=16, help="concurrent writers per race round (default 16)")
    parser.add_argument("--rounds", type=int, default=5, help="race rounds per kind of race (default 5)")
    parser.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    """Probe the store, show the verdict, and return the exit code."""
    if not args.url:
        fail("no jobspace: qubits doctor URL (or set QUBITS_JOBSPACE)")
        return 2
    if args.racers < 2 or args.rounds < 1:
        fail("--racers must be at least 2 and --rounds at least 1")
        return 2
    try:
        jobspace = open_jobspace(args.url, timing=_TIMING)
    except JobspaceError as exc:
        fail(str(exc))
        return EXIT_JOBSPACE

    async def go() -> ProbeReport:
        try:
            return await probe(jobspace, racers=args.racers, rounds=args.rounds)
        finally:
            await jobspace.close()

    report = run_sync(go())
    runtimes = _this_node()
    if args.json:
        print_json({**report.to_json(), "this_node": runtimes})
    else:
        _show(report)
    if report.fatal is not None:
        fail(report.fatal.splitlines()[0])
        return EXIT_JOBSPACE
    if not report.safe:
        failed = [c.name for c in report.checks if not c.ok]
        fail(f"{report.url} is NOT safe for leases: failed {', '.join(failed)}")
        return EXIT_JOBSPACE
    if not args.json:
        console.print(
            f"this machine, as an agent: container runtimes {', '.join(runtimes['runtimes']) or 'none'}; "
            f"limits by {runtimes['enforcement']}", soft_wrap=True,
        )
        console.print(f"[bold green]safe for leases:[/] {report.url}")
    return EXIT_OK


def _show(report: ProbeReport) -> None:
    if not report.checks:
        return
    table = Table(title=f"qubits doctor {report.url}", title_justify="left")
    table.add_column("check")
    table.add_column("verdict")
    table.add_column("ms", justify="right")
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        verdict = "[green]ok[/]" if check.ok else "[bold red]FAIL[/]"
        table.add_row(check.name, verdict, f"{check.ms:.0f}", check.detail)
    console.print(table)


def _this_node() -> dict[str, Any]:
    """What an agent on this machine would offer: container runtimes, and how it would enforce limits."""
    from nodeagent._containers import detect
    from nodeagent._limits import Limits

    return {"runtimes": detect(), "enforcement": Limits("doctor", probe_only=True).kind}
