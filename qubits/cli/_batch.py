"""Verbs for batches: `batch submit|template`, `pull`, `why`, `slurm`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import EXIT_FAILED, EXIT_OK, add_jobspace_option
from ._common import console, print_json, require_jobspace

TEMPLATE = """\
# A qubits batch: `qubits batch submit batch.yaml` (try --dry-run first).
# Relative paths resolve against this file's folder. Unknown keys are errors.
meta:
  namespace: lab               # results go to archive/<namespace>/<batch>/<job>/
  batch: sweep-1               # a plain name: letters, digits, . _ -
  capabilities: [python3]      # every job needs these; agents offer them with --capability
  max_attempts: 2              # a job that exits non-zero is retried, then reported failed
  # notify:
  #   webhook: [https://hooks.example.org/qubits]       # JSON POST
  #   matrix: [{room: "!abcdef:example.org", homeserver: https://matrix.example.org}]
  #   on: [batch, failure]     # batch: the batch ended; job: any job ended; failure: a job failed
  #   # Matrix: agents need QUBITS_MATRIX_TOKEN in their environment (never in this file).

initialize:                    # once per node per batch, before its first job there (cached)
  script: build.sh             # run in its own folder, $QUBITS_INIT for the jobs
  # image: docker://python:3.11-slim   # pulled with apptainer (or docker/podman); $QUBITS_IMAGE
  files: []

jobs:
  - name: job-1
    command: python3 run.py --alpha 0.1   # or script: run.sh
    files:
      - run.py
      - {path: data/input-1.csv, alias: input.csv}
    resources: {cpus: 2, memory: 4}       # memory in GB; agents lend --cpus/--memory/--gpus
  - name: job-2
    command: python3 run.py --alpha 0.2
    files: [run.py, {path: data/input-2.csv, alias: input.csv}]
    capabilities: [gpu]
    after: [job-1]                        # runs when job-1 succeeded
    slurm: {partition: gpu, time: "02:00:00"}   # for `qubits slurm` only

# Jobs write results to $QUBITS_OUTPUT; stdout and stderr are archived too.
# slurm: {account: mylab}      # batch-level SLURM defaults for `qubits slurm`
"""


def cmd_batch_submit(args: argparse.Namespace) -> int:
    import qubits
    from qubits.batch import dry_run, load_batch, submit

    batch = load_batch(args.file)
    if args.dry_run:
        client = qubits.connect(args.jobspace) if args.jobspace else None
        report = dry_run(client, batch)
        if args.json:
            print_json(report)
            return EXIT_OK
        _print_dry_run(report, client is not None)
        return EXIT_OK
    client = qubits.connect(require_jobspace(args))
    job = submit(client, batch)
    print(job.id)
    console.print(f"submitted {batch.namespace}/{batch.name}: {len(batch.jobs)} job(s) as {job.id}", soft_wrap=True)
    from qubits._why import live_nodes, runnable_on

    nodes = live_nodes(client)
    if not nodes:
        console.print("[yellow]warning:[/] no live agent in this jobspace yet; jobs wait until one starts", soft_wrap=True)
    for tid, (_chunk, t) in job.tasks().items():
        if nodes and not runnable_on(nodes, t):
            console.print(f"[yellow]warning:[/] {tid} is runnable on 0/{len(nodes)} live nodes: `qubits why {job.id} {tid}`", soft_wrap=True)
    if args.wait:
        from ._jobs import status_table

        status = job.wait()
        console.print(status_table(status))
        return EXIT_OK if status.ok else EXIT_FAILED
    return EXIT_OK


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _print_dry_run(report: dict, with_nodes: bool) -> None:  # type: ignore[type-arg]
    out = console.print
    out(f"dry run: batch {report['job']} — nothing is written", soft_wrap=True)
    new = [u for u in report["uploads"] if not u["stored"]]
    out(f"files: {len(report['uploads'])} distinct, {len(new)} to upload ({_size(report['upload_bytes'])})", soft_wrap=True)
    for u in report["uploads"]:
        state = "stored already" if u["stored"] else "upload"
        out(f"  {u['path']}  {_size(u['size'])}  {state}  sha256 {u['sha256'][:12]}  for {', '.join(u['used_by'])}", soft_wrap=True, markup=False)
    init = report["init"]
    if init:
        what = " and ".join(x for x in (f"image {init['image']}" if init["image"] else "", f"script {init['script']}" if init["script"] else "") if x)
        out(f"init: {what}, once per node (digest {init['digest'][:12]})", soft_wrap=True, markup=False)
    for n in report["notify"]:
        out(f"notify: {n['kind']} {n.get('url') or n.get('room')}", soft_wrap=True, markup=False)
    out(f"jobs: {len(report['jobs'])}", soft_wrap=True)
    for j in report["jobs"]:
        needs = ",".join(j["requires"]) or "-"
        res = " ".join(f"{k}={v:g}" for k, v in sorted(j["resources"].items())) or "-"
        line = f"  {j['name']}  requires {needs}  resources {res}"
        if j["after"]:
            line += f"  after {','.join(j['after'])}"
        if with_nodes:
            line += f"  runnable on {len(j['runnable'])}/{j['live_nodes']} nodes"
            if not j["runnable"]:
                line += " (no live node offers what it needs: see `qubits why` after submitting)"
        out(line, soft_wrap=True, markup=False)
    if not with_nodes:
        out("(give --jobspace to see which stored files are reused and how many live nodes can run each job)", soft_wrap=True)


def cmd_batch_template(args: argparse.Namespace) -> int:
    if args.output in (None, "-"):
        sys.stdout.write(TEMPLATE)
        return EXIT_OK
    path = Path(args.output)
    if path.exists() and not args.force:
        console.print(f"{path} exists; pass --force to overwrite it")
        return EXIT_FAILED
    path.write_text(TEMPLATE)
    console.print(f"wrote {path}; edit it, then `qubits batch submit {path} --dry-run`")
    return EXIT_OK


def cmd_pull(args: argparse.Namespace) -> int:
    import qubits
    from qubits.batch import pull

    client = qubits.connect(require_jobspace(args))
    report = pull(client, args.source, args.dest, include=args.include, exclude=args.exclude, dry_run=args.dry_run)
    if args.json:
        print_json(report.__dict__)
        return EXIT_OK
    verb = "would fetch" if args.dry_run else "fetched"
    for rel in report.fetched:
        console.print(f"{verb} {rel}", soft_wrap=True, markup=False)
    if args.dry_run:
        for rel in report.filtered:
            console.print(f"filtered {rel}", soft_wrap=True, markup=False)
    console.print(
        f"{verb} {len(report.fetched)} file(s) ({_size(report.bytes)}), skipped {len(report.skipped)} already present, "
        f"filtered {len(report.filtered)}", soft_wrap=True,
    )
    return EXIT_OK


def cmd_why(args: argparse.Namespace) -> int:
    import qubits
    from qubits._why import explain

    client = qubits.connect(require_jobspace(args))
    job = client.last().id if args.job == "last" else args.job
    explanation = explain(client, job, args.task)
    if args.json:
        print_json(explanation.__dict__)
    else:
        sys.stdout.write(explanation.text() + "\n")
    return EXIT_OK


def cmd_slurm(args: argparse.Namespace) -> int:
    from qubits.batch import load_batch, to_slurm
    from qubits.errors import UsageError

    if args.file == "agents" and not Path(args.file).is_file():
        return _slurm_agents(args)
    if args.count is not None or not args.output:
        raise UsageError("qubits slurm FILE -o DIR writes a batch as SLURM scripts; qubits slurm agents N submits pilots")
    batch = load_batch(args.file)
    written = to_slurm(batch, args.output)
    console.print(f"wrote {len(written)} script(s) to {args.output}; copy the folder to the cluster and run {Path(args.output) / 'submit.sh'}", soft_wrap=True)
    return EXIT_OK


def _slurm_agents(args: argparse.Namespace) -> int:
    from qubits.batch._pilots import Pilots, submit_pilots
    from qubits.errors import UsageError

    if args.count is None:
        raise UsageError("qubits slurm agents N: say how many pilots, e.g. qubits slurm agents 4 --time 02:00:00")
    pilots = Pilots(
        args.count, require_jobspace(args), time=args.time, partition=args.partition, account=args.account, lead=args.lead,
        idle=args.idle, slots=args.slots, cpus=args.cpus, memory=args.mem, gpus=args.gpus, capabilities=list(args.capability),
        ttl=args.ttl, log_dir=Path(args.log_dir),
    )
    if args.dry_run:
        pilots.check()
        sys.stdout.write(pilots.script())
        return EXIT_OK
    job_id, script = submit_pilots(pilots)
    console.print(f"submitted {args.count} pilot(s) as SLURM job {job_id} ({script}); they show in qubits nodes as slurm-{job_id}-N", soft_wrap=True)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("batch", help="batches from a YAML file: batch submit FILE | batch template")
    verbs = p.add_subparsers(dest="batch_verb", metavar="")
    q = verbs.add_parser("submit", help="check a batch file, upload its files and submit it as one job")
    add_jobspace_option(q)
    q.add_argument("file", help="the batch file (YAML)")
    q.add_argument("--dry-run", "-n", action="store_true", help="check and show what would be uploaded and where each job can run; write nothing")
    q.add_argument("--json", action="store_true", help="the dry run as JSON on stdout")
    q.add_argument("--wait", action="store_true", help="wait for the batch; exit 1 if a job failed")
    q.set_defaults(func=cmd_batch_submit)
    q = verbs.add_parser("template", help="write a commented batch file to start from")
    q.add_argument("-o", "--output", help="file to write (default: stdout)")
    q.add_argument("--force", action="store_true", help="overwrite an existing file")
    q.set_defaults(func=cmd_batch_template)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])

    q = sub.add_parser("pull", help="download a job's outputs and logs (a batch's archive): pull [JOB|namespace/batch] DEST")
    add_jobspace_option(q)
    q.add_argument("source", nargs="?", default="last",
                   help="a job id (any kind), namespace/batch, or the batch file itself (qubits' or distribute's; default: the last job)")
    q.add_argument("dest", help="local folder; files land in DEST/namespace/batch/job/ (a batch) or DEST/JOB/TASK/ (out/…, stdout.log, stderr.log)")
    q.add_argument("--include", "-i", action="append", default=[], metavar="RE", help="only paths matching this regex (repeatable)")
    q.add_argument("--exclude", "-e", action="append", default=[], metavar="RE", help="leave out paths matching this regex (repeatable)")
    q.add_argument("--dry-run", "-n", action="store_true", help="list what would be fetched and filtered")
    q.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    q.set_defaults(func=cmd_pull)

    q = sub.add_parser("why", help="why a task is not running: capabilities, resources, dependencies, delays, holders")
    add_jobspace_option(q)
    q.add_argument("job", help="job id ('last' for the last one)")
    q.add_argument("task", help="task id or name (a batch job's name)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_why)

    q = sub.add_parser("slurm", help="write a batch as SLURM scripts (slurm FILE -o DIR), or lend SLURM nodes as agents (slurm agents N)")
    q.add_argument("file", help="the batch file (YAML); or the word agents, then N: submit N pilot jobs running qubits agent")
    q.add_argument("count", nargs="?", type=int, metavar="N", help="with agents: how many pilots")
    q.add_argument("-o", "--output", metavar="DIR", help="folder to write (for a batch file)")
    add_jobspace_option(q)
    q.add_argument("--time", default="01:00:00", help="agents: each pilot's SLURM time limit (default 01:00:00)")
    q.add_argument("--partition", help="agents: SLURM partition")
    q.add_argument("--account", help="agents: SLURM account")
    q.add_argument("--lead", type=int, default=120, metavar="SECONDS",
                   help="agents: SIGTERM this long before the time limit, so pilots drain before SLURM's kill (default 120)")
    q.add_argument("--idle", type=float, default=300.0, metavar="SECONDS", help="agents: exit after this long with nothing to do (default 300)")
    q.add_argument("--slots", type=int, default=1, help="agents: tasks at once per pilot")
    q.add_argument("--cpus", type=int, help="agents: cpus per pilot (--cpus-per-task, lent to tasks)")
    q.add_argument("--mem", help="agents: memory per pilot, as SLURM's --mem (e.g. 8G)")
    q.add_argument("--gpus", type=int, help="agents: GPUs per pilot (--gres=gpu:N)")
    q.add_argument("--capability", action="append", default=[], metavar="NAME", help="agents: a capability the pilots offer (repeatable; slurm always)")
    q.add_argument("--ttl", type=float, help="agents: lease ttl in seconds")
    q.add_argument("--log-dir", default="qubits-pilots", help="agents: where the script and the pilots' logs go (default ./qubits-pilots)")
    q.add_argument("--dry-run", "-n", action="store_true", help="agents: print the sbatch script, submit nothing")
    q.set_defaults(func=cmd_slurm)
