"""Where every object lives in a jobspace. Stable and documented: changing a name breaks old jobs.

    jobs/{job}/job.json                    immutable job spec
    jobs/{job}/sealed.json                 written last: chunk and task counts, digests, signature
    jobs/{job}/tasks/{chunk}.json          immutable task specs, TASKS_PER_CHUNK per chunk
    jobs/{job}/tasks/x/{task}.json         a task added while the job runs (dynamic dependencies)
    jobs/{job}/cancel                      exists = the job is cancelled
    jobs/{job}/cancelled/{task}            exists = this task is cancelled (the job's others go on)
    jobs/{job}/waits/{dep}/{task}          task waits for dep (a dynamic dependency edge)
    jobs/{job}/released/{task}.{round}     create-only: who makes a waiting task ready (one writer)
    jobs/{job}/invalid/{task}              create-only: a done target whose output went missing (made again)
    ready/{shard}/{prio}/{job}/{chunk}/{task}@{not_before}   a runnable task (a hint, re-checked on claim)
    leases/{job}/{task}                    the lease: holder, token, attempt, ttl, state, seq
    done/{job}/{task}.json                 the one final record of a task
    runs/{job}/{task}/{attempt}/stdout/{n}  output of one attempt, one part per flush n as it runs (stderr/{n}
                                           likewise; see qubits/_logs.py)
    runs/{job}/{task}/{attempt}/order/{n}   how flush n's stdout and stderr interleave (when it holds both)
    runs/{job}/{task}/{attempt}/out/…      files an attempt produced
    runs/{job}/{task}/{attempt}/result     the return value of a Python task (one of a map or submit job
                                           up to INLINE_RESULT_MAX bytes rides in its done record instead)
    quarantine/{job}/{task}.json           why a task could not be read
    fleet/{job}/{node}.json                an agent `qubits run` started over ssh: host, pid (for `qubits kill`)
    jobs/{job}/gc                          `qubits gc` is removing this finished job (resumed if interrupted)
    jobs/{job}/notified/{event}            create-only: who sends a batch's notification ("batch", "job.{task}")
    archive/{namespace}/{batch}/{job}/…    a batch job's archived result: out/…, stdout.log, stderr.log, result.json
    archive/{namespace}/{batch}/_init/{node}.log   a batch's init step output on each node
    nodes/{node}.json                      agent presence
    targets/{identity}.json                a Qfile target made: the run whose outputs any job may reuse
    targets/last/{task}.json               the identity a target was last made with (for `make --why`)
    targets/jobs/{job}.json                the index entries of the targets one job made (read at once by planning)
    schedules/{name}.json                  a periodic submission: cron or interval, and the commands it submits
    ticks/{name}/{tick}                    create-only, one per tick of a schedule: its writer submits that tick's job
    code/{sha256}.tar.gz                   content-addressed code bundles
    data/{sha256}                          content-addressed dataset chunks and batch input files
    wake                                   rewritten on submit; idle agents watch its ETag
"""

from __future__ import annotations

import zlib

from ._defaults import READY_SHARDS

WAKE = "wake"


def job_spec(job: str) -> str:
    return f"jobs/{job}/job.json"


def seal(job: str) -> str:
    return f"jobs/{job}/sealed.json"


def task_chunk(job: str, chunk: str) -> str:
    if chunk == "x":
        raise ValueError("dynamic tasks live in their own objects")
    return f"jobs/{job}/tasks/{chunk}.json"


def dynamic_task(job: str, task: str) -> str:
    return f"jobs/{job}/tasks/x/{task}.json"


def job_prefix(job: str) -> str:
    """Every object under ``jobs/{job}/``."""
    return f"jobs/{job}/"


def chunks_prefix(job: str) -> str:
    """The job's numbered chunks (their names start with 0; the dynamic tasks' folder is ``x``)."""
    return f"jobs/{job}/tasks/0"


def dynamic_prefix(job: str) -> str:
    """The tasks added while the job runs."""
    return f"jobs/{job}/tasks/x/"


def dynamic_tasks_prefix(job: str) -> str:
    return f"jobs/{job}/tasks/x/"


def cancel(job: str) -> str:
    return f"jobs/{job}/cancel"


def task_cancel(job: str, task: str) -> str:
    return f"jobs/{job}/cancelled/{task}"


def wait_edge(job: str, dep: str, task: str) -> str:
    return f"jobs/{job}/waits/{dep}/{task}"


def waits_prefix(job: str, dep: str) -> str:
    return f"jobs/{job}/waits/{dep}/"


def all_waits(job: str) -> str:
    """The prefix of every dependency edge of a job (keys ``{dep}/{task}`` below it)."""
    return f"jobs/{job}/waits/"


def invalid(job: str, task: str) -> str:
    return f"jobs/{job}/invalid/{task}"


def invalid_prefix(job: str) -> str:
    return f"jobs/{job}/invalid/"


def all_waits_prefix(job: str) -> str:
    """Every dependency edge of the job."""
    return f"jobs/{job}/waits/"


def released(job: str, task: str, round_: int) -> str:
    return f"jobs/{job}/released/{task}.{round_}"


def shard_of(job: str, task: str) -> str:
    return f"{zlib.crc32(f'{job}/{task}'.encode()) % READY_SHARDS:x}"


def ready(job: str, chunk: str, task: str, priority: int = 0, not_before: int = 0) -> str:
    # Higher priority sorts first within a shard: the key holds 50 - priority, zero-padded.
    prio = f"{max(0, min(99, 50 - priority)):02d}"
    return f"ready/{shard_of(job, task)}/{prio}/{job}/{chunk}/{task}@{not_before}"


def parse_ready(key: str) -> tuple[int, str, str, str, int]:
    """(priority, job, chunk, task, not_before) of a ready key; ValueError if it is not one."""
    _, _shard, prio, job, chunk, rest = key.split("/", 5)
    task, _, not_before = rest.rpartition("@")
    return 50 - int(prio), job, chunk, task, int(not_before)


def lease(job: str, task: str) -> str:
    return f"leases/{job}/{task}"


def lease_prefix(job: str | None = None) -> str:
    """Every lease of ``job`` (every lease, with no job)."""
    return f"leases/{job}/" if job else "leases/"


def parse_lease(key: str) -> tuple[str, str]:
    _, job, task = key.split("/", 2)
    return job, task


def done(job: str, task: str) -> str:
    return f"done/{job}/{task}.json"


def done_prefix(job: str) -> str:
    return f"done/{job}/"


def run_prefix(job: str, task: str, attempt: int) -> str:
    return f"runs/{job}/{task}/{attempt}/"


def runs_prefix(job: str, task: str | None = None) -> str:
    """Every attempt's objects of the job (or of one task)."""
    return f"runs/{job}/{task}/" if task is not None else f"runs/{job}/"


def task_runs(job: str, task: str) -> str:
    """The prefix of every attempt's output of a task (``{attempt}/{stdout|stderr}/{n}`` below it)."""
    return f"runs/{job}/{task}/"


def log_part(job: str, task: str, attempt: int, stream: str, n: int) -> str:
    """Flush ``n`` of one stream (stdout or stderr) of an attempt's output."""
    return f"runs/{job}/{task}/{attempt}/{stream}/{n:06d}"


def log_order(job: str, task: str, attempt: int, n: int) -> str:
    """How flush ``n``'s two streams interleave."""
    return f"runs/{job}/{task}/{attempt}/order/{n:06d}"


def result(job: str, task: str, attempt: int) -> str:
    return f"runs/{job}/{task}/{attempt}/result"


def quarantine(job: str, task: str) -> str:
    return f"quarantine/{job}/{task}.json"


def fleet(job: str, node: str) -> str:
    return f"fleet/{job}/{node}.json"


def fleet_prefix(job: str | None = None) -> str:
    return f"fleet/{job}/" if job else "fleet/"


def quarantine_prefix(job: str) -> str:
    return f"quarantine/{job}/"


def ready_shard_prefix(shard: int) -> str:
    """One shard of the ready index."""
    return f"ready/{shard:x}/"


ARCHIVE = "archive/"


def archive_prefix(namespace: str, batch: str) -> str:
    """A batch's archived results: ``{job}/…`` per job, and ``_init/{node}.log``."""
    return f"{ARCHIVE}{namespace}/{batch}/"


def archive_init_log(namespace: str, batch: str, node: str) -> str:
    """The output of a batch's init step on one node."""
    return f"{archive_prefix(namespace, batch)}_init/{node}.log"


def gc_mark(job: str) -> str:
    return f"jobs/{job}/gc"


def notified(job: str, event: str) -> str:
    """The create-only object that says who sends the notification of ``event`` ("batch", "job.{task}")."""
    return f"jobs/{job}/notified/{event}"


def schedule(name: str) -> str:
    return f"schedules/{name}.json"


SCHEDULES = "schedules/"


def tick(name: str, stamp: str) -> str:
    return f"ticks/{name}/{stamp}"


def ticks_prefix(name: str) -> str:
    return f"ticks/{name}/"


def node(name: str) -> str:
    return f"nodes/{name}.json"


def target_index(identity: str) -> str:
    return f"targets/{identity}.json"


def target_manifest(job: str) -> str:
    return f"targets/jobs/{job}.json"


TARGET_MANIFESTS = "targets/jobs/"


def target_last(task: str) -> str:
    return f"targets/last/{task}.json"


def code_bundle(digest: str) -> str:
    return f"code/{digest}.tar.gz"


def data_chunk(digest: str) -> str:
    return f"data/{digest}"
