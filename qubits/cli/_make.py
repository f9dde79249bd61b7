"""Verbs for Qfile projects: conf, qubits (the graph), make (here, on the embedded default), timeline."""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from pathlib import Path

from rich.live import Live
from rich.text import Text

from qubits import Job, JobStatus, connect
from qubits.qfile import explain, find_qfile, load_qfile, make, plan, project_jobspace, timeline_html
from qubits.qfile._dagview import LivePage, Picture, dag_html, dot_text

from . import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, add_jobspace_option
from ._common import add_project_options, console, fail, print_json, require_jobspace


def _jsonable(value: object) -> object:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def cmd_conf(args: argparse.Namespace) -> int:
    qf = load_qfile(find_qfile(args.directory, args.qfile), args.profile)
    resolved = qf.resolve(args.profile)
    out = {"qfile": str(qf.path), "project": str(qf.project), **{k: _jsonable(v) for k, v in sorted(resolved.items())}}
    out["profiles"] = sorted(qf.conf.profiles)
    out["rules"] = [r.pattern for r in qf.rules]
    if args.json:
        print_json(out)
        return EXIT_OK
    for key, value in out.items():
        print(f"{key}\t{value if isinstance(value, str) else json.dumps(value, default=repr)}")
    return EXIT_OK


def _job_of(args: argparse.Namespace, url: str | None = None) -> Job:
    """The job ``args.job`` names (``last``: the newest) in ``url`` or the project's jobspace."""
    client = connect(url or require_jobspace(args))
    return client.last() if args.job in (None, "last") else client.job(args.job)


def cmd_qubits(args: argparse.Namespace) -> int:
    qf = load_qfile(find_qfile(args.directory, args.qfile), args.profile)
    nodes = plan(qf, args.targets, args.profile)
    if args.dot or args.html:
        picture = Picture()
        picture.add_plan(nodes)
        if args.job:
            picture.add_job(_job_of(args))
        if args.dot:
            sys.stdout.write(dot_text(picture))
        if args.html:
            Path(args.html).write_text(dag_html(picture), encoding="utf-8")
            console.print(f"wrote {args.html} ({len(picture.states)} targets)")
        return EXIT_OK
    if args.json:
        print_json([n.to_dict() for n in nodes])
        return EXIT_OK
    for n in nodes:
        deps = " ".join([*n.deps, "+ (decided on the node at run time)"] if n.dynamic else n.deps)
        print(f"{n.rule}\t{n.target}\t{deps}".rstrip())
    return EXIT_OK


def _progress_line(status: JobStatus, elapsed: float) -> Text:
    counts = {k: v for k, v in status.counts.items() if v}
    shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    line = Text(f"job {status.job}: {status.done}/{status.total} tasks done")
    if shown:
        line.append(f" ({shown})", style="dim")
    line.append(f"  {elapsed:.1f}s")
    return line


def cmd_make(args: argparse.Namespace) -> int:
    from ._progress import print_event

    started = time.monotonic()
    if args.why:
        for line in explain(args.why, project=args.directory, profile=args.profile, qfile=args.qfile,
                            force=args.always, force_targets=args.force):
            print(line)
        return EXIT_OK
    live = Live(Text("starting…"), console=console, refresh_per_second=4, transient=True) if not args.json else None
    graph = LivePage(Path(args.graph), project_jobspace(args.directory, args.profile, args.qfile)) if args.graph else None

    def progress(status: JobStatus, elapsed: float) -> None:
        if live is not None:
            live.update(_progress_line(status, elapsed))
        if graph is not None:
            graph.update(status.job, status.finished)

    def stopping(seconds: float) -> None:
        if live is not None:
            live.stop()
        console.print(f"stopping: waiting up to {seconds:g} s for running tasks; Ctrl-C again to stop now", soft_wrap=True)

    if live is not None:
        live.start()
    try:
        result = make(
            args.targets,
            project=args.directory,
            profile=args.profile,
            qfile=args.qfile,
            agents=args.agents,
            capabilities=args.capability,
            force=args.always,
            force_targets=args.force,
            on_progress=progress,
            on_event=print_event(started) if args.verbose and not args.json else None,
            on_stopping=stopping,
        )
    except KeyboardInterrupt as exc:
        if live is not None:
            live.stop()
        fail(f"interrupted; {exc}" if str(exc) else "interrupted")
        return EXIT_INTERRUPTED
    finally:
        if live is not None:
            live.stop()
    url = result.job.client.url
    if graph is not None:
        graph.update(result.job.id, True)
    if args.json:
        print_json({"job": result.job.id, "jobspace": url, "ok": result.ok, "submitted": result.submitted,
                    "elapsed": round(result.elapsed, 3), "status": result.status.to_dict(),
                    "outputs": [o.to_dict() for o in result.outputs]})
        return EXIT_OK if result.ok else EXIT_FAILED
    status = result.status
    if not result.submitted and status.finished and result.ok:
        console.print(f"[green]nothing to do[/]: made already in job {result.job.id}")
    else:
        colour = "green" if result.ok else "red"
        console.print(f"[{colour}]{status.summary()}[/] in {result.elapsed:.1f}s", soft_wrap=True)
        failed = [r for r in status.rows if r.state not in ("succeeded", "pending")]
        for row in failed:
            console.print(f"  [red]{row.state}[/] {row.name}: {row.error or ''}", soft_wrap=True)
        first = next((r for r in failed if r.state == "failed"), None)
        if first is not None:
            console.print(f"  its output: qubits logs {result.job.id} {first.task} -j {url}", soft_wrap=True)
    print("results:")
    for o in result.outputs:
        if o.outcome != "succeeded":
            print(f"  {o.target}\t{o.outcome or 'not made'}")
            continue
        where = str(o.local) if o.local else f"{url.split('?', 1)[0]}/{o.prefix}"
        if o.local and 0 < len(o.files) <= 3:
            for name in o.files:
                print(f"  {o.target}\t{o.local / name}")
            continue
        files = ", ".join(o.files[:6]) + (f" … ({len(o.files)} files)" if len(o.files) > 6 else "")
        print(f"  {o.target}\t{where}" + (f"\t{files}" if files else ""))
    here = "" if Path(args.directory).resolve() == Path.cwd() else f" -C {args.directory}"
    profile = f" -p {args.profile}" if args.profile else ""
    console.print(
        f"[dim]more: qubits status {result.job.id} -j {url} · qubits timeline {result.job.id}{here}{profile} -o timeline.html[/]",
        soft_wrap=True,
    )
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_timeline(args: argparse.Namespace) -> int:
    job = _job_of(args, args.jobspace)
    if args.output == "-":
        sys.stdout.write(timeline_html(job))
        return EXIT_OK
    out = Path(args.output)
    graph = ""
    if job.spec().kind == "qfile":  # its graph, next to it, linked from it
        picture = Picture()
        picture.add_job(job)
        dag = out.with_name(out.stem + ".graph.html")
        dag.write_text(dag_html(picture, links=f'<a href="{html.escape(out.name)}">its timeline</a>'), encoding="utf-8")
        graph = dag.name
    out.write_text(timeline_html(job, graph=graph), encoding="utf-8")
    console.print(f"wrote {args.output} (job {job.id})" + (f" and its graph {out.with_name(graph)}" if graph else ""))
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("conf", help="the Qfile's config, resolved (profile applied, functions called)")
    add_project_options(p)
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(func=cmd_conf)

    p = sub.add_parser("qubits", help="the graph of TARGETS as far as it is known before running (rule, target, deps)")
    add_project_options(p)
    p.add_argument("targets", nargs="*", help="targets (default: default)")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.add_argument("--dot", action="store_true", help="the graph as Graphviz DOT on stdout")
    p.add_argument("--html", metavar="FILE.html", help="draw the graph in a self-contained page")
    p.add_argument("--job", metavar="JOB", help="with --dot/--html: grow the graph with what JOB (or 'last') found as it ran, coloured by state")
    p.set_defaults(func=cmd_qubits)

    p = sub.add_parser("make", help="make TARGETS here: a jobspace in the project, agents started for you")
    add_project_options(p)
    p.add_argument("targets", nargs="*", help="targets (default: default)")
    p.add_argument("--agents", "-N", type=int, help="agents to start here (default: conf.agents, or 2-4 by CPUs; 0: use running agents)")
    p.add_argument("--capability", action="append", default=[], metavar="CAP", help="a capability of the agents started here (repeatable)")
    p.add_argument("-B", "--always", action="store_true", help="make everything again: reuse no earlier job")
    p.add_argument("--verbose", "-v", action="store_true", help="slow motion: each claim, wait, release, commit and agent as it happens (on stderr)")
    p.add_argument("--force", action="append", default=[], metavar="TARGET",
                   help="make TARGET again, and what depends on it (repeatable)")
    p.add_argument("--graph", metavar="FILE.html",
                   help="keep a picture of the job's graph in FILE.html while it runs (it grows as dependencies are found; the page reloads itself)")
    p.add_argument("--why", metavar="TARGET", help="say why TARGET would run or be reused (by its identity), and make nothing")
    p.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    p.set_defaults(func=cmd_make)

    p = sub.add_parser("timeline", help="a self-contained HTML picture of a job: rows per node and per task, a bar per attempt")
    add_jobspace_option(p)
    add_project_options(p)
    p.add_argument("job", nargs="?", default="last", help="job id (default: the last one)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.html", help="where to write the page ('-' for stdout)")
    p.set_defaults(func=cmd_timeline)
