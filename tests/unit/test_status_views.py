"""What `status`, `jobs` and `why` say about tasks and jobs (issue 19: defects 10, 11, 21 and SLURM's habits),
from Python and through the CLI's tables, on a memory jobspace with leases written by the real protocol."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator

import pytest
from rich.console import Console

import jobspaces
import qubits
from qubits._dag import Dag
from qubits._protocol import Protocol
from qubits._records import JobSpec, Outcome, TaskSpec
from qubits._why import explain
from qubits.cli import build_parser, run


def _claim(client: qubits.Client, job: str, task: str, holder: str = "node-a") -> tuple[Protocol, object]:
    proto = Protocol(client.aio, holder, ttl=30)
    chunk, spec = client.job(job).tasks()[task]
    claim = jobspaces.run_sync(proto.claim(job, chunk, spec))
    assert claim is not None
    return proto, claim


@contextlib.contextmanager
def _stdout() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield buf


def _cli(*args: str) -> tuple[int, str]:
    """Run the CLI in this process (memory jobspaces are per process); its stdout."""
    with _stdout() as buf:
        code = run(list(args))
    return code, buf.getvalue()


def test_status_names_every_task_by_id_and_name_whatever_its_state(memory_url: str) -> None:
    """Defect 11: a pending task showed its command, a running one its id; --json's name changed too."""
    client = qubits.connect(memory_url)
    job = client.submit_commands(["echo one", "echo two", "echo three"])
    proto, claim = _claim(client, job.id, "t000002")
    _p, done = _claim(client, job.id, "t000003")
    jobspaces.run_sync(_p.commit(done, Outcome.SUCCEEDED, exit_code=0))  # type: ignore[arg-type]
    rows = {r.task: r for r in job.status().rows}
    assert {t: (r.state, r.name) for t, r in rows.items()} == {
        "t000001": ("pending", "echo one"), "t000002": ("running", "echo two"), "t000003": ("succeeded", "echo three")}
    code, out = _cli("status", job.id, "--json", "-j", memory_url)
    tasks = {t["id"]: t for t in json.loads(out)["tasks"]}
    assert code == 0 and {t: (v["task"], v["name"]) for t, v in tasks.items()} == {
        "t000001": ("t000001", "echo one"), "t000002": ("t000002", "echo two"), "t000003": ("t000003", "echo three")}
    code, out = _cli("status", job.id, "-j", memory_url)
    for tid, name in (("t000001", "echo one"), ("t000002", "echo two"), ("t000003", "echo three")):
        line = next(line for line in out.splitlines() if line.startswith(tid))
        assert name in line, out


def test_tables_go_to_stdout_and_ids_are_never_cut_at_80_columns(memory_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 10: jobs, status and nodes printed their tables on stderr, and cut job ids at 80 columns."""
    monkeypatch.setenv("COLUMNS", "80")
    client = qubits.connect(memory_url)
    long_name = "a job name long enough to need folding " * 3
    jobs = [client.submit_commands([f"echo {i} " + "x" * 60], name=long_name) for i in range(2)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code, out = _cli("jobs", "-j", memory_url)
    assert code == 0 and err.getvalue() == ""
    for job in jobs:
        line = next(line for line in out.splitlines() if line.startswith(job.id))  # whole, at the start of its row
        assert "pending" in line and "0/1" in line, out
    assert max(len(line) for line in out.splitlines()) <= 80
    code, out = _cli("status", jobs[0].id, "-j", memory_url)
    assert any(line.startswith("t000001 ") for line in out.splitlines()), out
    info = qubits.NodeInfo("gpu-node-with-a-rather-long-name-0042", "host.example.org", 1, qubits.__version__, ["gpu", "cuda12", "a100"] * 4,
                           slots=8, wall=time.time())
    jobspaces.run_sync(client.aio.put("nodes/n1.json", info.to_json()))
    code, out = _cli("nodes", "-j", memory_url)
    assert any(line.startswith(info.name + " ") for line in out.splitlines()), out


def test_jobs_lists_like_squeue_with_state_user_and_since_filters(memory_url: str) -> None:
    """SLURM's habit: state, counts, elapsed, user and name, with --state, --user and --since."""
    client = qubits.connect(memory_url)
    now = time.time()
    old = jobspaces.run_sync(client.specs.submit(JobSpec(id="20260101-000000-aaaaaa", name="old", submitter="alice@lab", created=now - 7200),
                                                 [TaskSpec("t1", command="true", name="true")]))
    done = client.submit_commands(["true"], name="finished")
    proto, claim = _claim(client, done.id, "t000001")
    jobspaces.run_sync(proto.commit(claim, Outcome.SUCCEEDED))  # type: ignore[arg-type]
    running = client.submit_commands(["sleep 100", "true"], name="busy")
    _claim(client, running.id, "t000001")
    cancelled = client.submit_commands(["true"], name="stopped")
    cancelled.cancel()
    states = {s.job: s.state for s in client.job_statuses()}
    assert states == {old.id: "pending", done.id: "succeeded", running.id: "running", cancelled.id: "cancelled"}
    assert {s.job for s in client.job_statuses(state="running,cancelled")} == {running.id, cancelled.id}
    assert [s.job for s in client.job_statuses(user="alice")] == [old.id]
    assert {s.job for s in client.job_statuses(since=now - 60)} == {done.id, running.id, cancelled.id}
    busy = next(s for s in client.job_statuses() if s.job == running.id)
    assert (busy.counts["running"], busy.counts["pending"], busy.name, busy.user) == (1, 1, "busy", busy.submitter.split("@")[0])
    assert 0 <= busy.elapsed < 60
    code, out = _cli("jobs", "--state", "running", "-j", memory_url)
    assert code == 0 and running.id in out and "running" in out and done.id not in out
    code, out = _cli("jobs", "--user", "alice", "--since", "3h", "--json", "-j", memory_url)
    (row,) = json.loads(out)
    assert (row["id"], row["state"], row["user"], row["name"]) == (old.id, "pending", "alice", "old")
    code, out = _cli("jobs", "--since", "1h", "-j", memory_url)
    assert old.id not in out and done.id in out
    assert _cli("jobs", "--state", "bogus", "-j", memory_url)[0] == 2
    assert _cli("jobs", "--since", "yesterday-ish", "-j", memory_url)[0] == 2


def test_status_filters_by_state_and_shows_start_end_duration_exit_and_node(memory_url: str) -> None:
    """SLURM's habits: `status JOB --state failed`; per task start, end, duration, exit code and node."""
    client = qubits.connect(memory_url)
    job = client.submit_commands(["true", "false", "true"], max_attempts=1)
    for tid, outcome, code in (("t000001", Outcome.SUCCEEDED, 0), ("t000002", Outcome.FAILED, 1)):
        proto, claim = _claim(client, job.id, tid, holder="gpu-7")
        jobspaces.run_sync(proto.commit(claim, outcome, exit_code=code, error=None if code == 0 else "exit status 1"))  # type: ignore[arg-type]
    (failed,) = job.status(state="failed").rows
    assert (failed.task, failed.name, failed.node, failed.exit_code) == ("t000002", "false", "gpu-7", 1)
    assert failed.started and failed.finished >= failed.started and failed.duration is not None
    assert [r.task for r in job.status(state=["pending", "succeeded"]).rows] == ["t000001", "t000003"]
    code, out = _cli("status", job.id, "--state", "failed", "--json", "-j", memory_url)
    (row,) = json.loads(out)["tasks"]
    assert (row["id"], row["node"], row["exit_code"], row["error"]) == ("t000002", "gpu-7", 1, "exit status 1")
    assert row["started"] and row["finished"] and row["duration"] is not None
    code, out = _cli("status", job.id, "--state", "failed", "-j", memory_url)
    (line,) = [line for line in out.splitlines() if line.startswith("t000")]
    assert line.startswith("t000002") and "gpu-7" in line and time.strftime("%H:", time.localtime(failed.started)) in line
    assert _cli("status", job.id, "--state", "bogus", "-j", memory_url)[0] == 2


def test_retries_say_attempt_n_of_m_and_count_waits_apart(memory_url: str) -> None:
    """Defect 21: `submit --help` names the default of 3 attempts; status says 'attempt n of m'; a Qfile
    target that parked twice for its dependencies is on attempt 1, not 3."""
    sub = build_parser()._subparsers._group_actions[0].choices["submit"]  # type: ignore[union-attr]
    assert "default 3" in " ".join(sub.format_help().split()) and "runs 3 times" in " ".join(sub.format_help().split())
    client = qubits.connect(memory_url)
    job = client.submit_commands(["false"])
    proto, claim = _claim(client, job.id, "t000001")
    jobspaces.run_sync(proto.release(claim, failed=True, error="exit status 1", exit_code=1))  # type: ignore[arg-type]
    (row,) = job.status().rows
    assert (row.state, row.tries, row.max_attempts, row.attempt_text()) == ("released", 2, 3, "2 of 3")
    # A target that waits for dependencies found at run time, twice, then succeeds.
    spec = JobSpec(id="20260101-000000-bbbbbb", kind="qfile", config={"dag": True})
    dep = TaskSpec("dep", kind="target", name="dep")
    target = TaskSpec("all", kind="target", name="all")
    jobspaces.run_sync(client.specs.submit(spec, [dep, target], dag=True))
    node = Protocol(client.aio, "node-b", ttl=30)
    dag = Dag(node, client.specs)
    chunk, t = client.job(spec.id).tasks()["all"]
    first = jobspaces.run_sync(node.claim(spec.id, chunk, t))
    assert first is not None and jobspaces.run_sync(dag.park(first, ["dep"]))
    lease_key = f"leases/{spec.id}/all"  # woken by hand, as Dag._wake_parked does
    data, etag = jobspaces.run_sync(client.aio.get(lease_key))
    raw = {**json.loads(data), "state": "released", "waiting": [], "seq": json.loads(data)["seq"] + 1}
    jobspaces.run_sync(client.aio.put(lease_key, json.dumps(raw).encode(), if_match=etag))
    second = jobspaces.run_sync(node.claim(spec.id, chunk, t))
    assert second is not None and second.attempt == 2 and jobspaces.run_sync(dag.park(second, ["dep"]))
    dep_claim = jobspaces.run_sync(node.claim(spec.id, chunk, client.job(spec.id).tasks()["dep"][1]))
    assert dep_claim is not None
    jobspaces.run_sync(node.commit(dep_claim, Outcome.SUCCEEDED))  # wakes the parked target
    chunk, t = client.job(spec.id).tasks()["all"]
    final = jobspaces.run_sync(node.claim(spec.id, chunk, t))
    assert final is not None and final.attempt == 3
    (running,) = client.job(spec.id).status(state="running").rows
    assert (running.tries, running.waits, running.attempt, running.attempt_text()) == (1, 2, 3, "1 of 3, waited 2")
    jobspaces.run_sync(node.commit(final, Outcome.SUCCEEDED))
    row = {r.task: r for r in client.job(spec.id).status(state="succeeded").rows}["all"]
    assert (row.task, row.tries, row.waits, row.attempt) == ("all", 1, 2, 3)
    assert "attempt 1 of 3" in explain(client, spec.id, "all").state and "waited 2" in explain(client, spec.id, "all").state
    console = Console(file=io.StringIO(), width=120)
    from qubits.cli._jobs import status_table

    console.print(status_table(client.job(spec.id).status(), width=120))
    line = next(line for line in console.file.getvalue().splitlines() if line.startswith("all "))  # type: ignore[attr-defined]
    assert "1 of 3, waited 2" in line
