"""Batches with agents as real processes: capability classes, the init step once per node, the archive
and `pull`, retries of a failing job, notifications to real HTTP servers, `why`, and pausing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import jobspaces
import qubits
from qubits import _layout as layout
from qubits._records import Lease, LeaseState
from qubits.batch import Batch, submit
from tests.agents import AgentProcess, run_cli
from tests.recorder import recording_server


@pytest.fixture(params=["local", "s3"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("local_url" if request.param == "local" else "s3_url"))


@pytest.fixture
def fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    agents: list[AgentProcess] = []

    def start(jobspace: str, name: str, **kw):  # type: ignore[no-untyped-def]
        kw.setdefault("cache", tmp_path / f"cache-{name}")
        a = AgentProcess(jobspace, name=name, **kw)
        agents.append(a)
        return a

    yield start
    for a in agents:
        a.stop()


def _wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _archived(client: qubits.Client, job: qubits.Job, prefix: str) -> None:
    """The committer archives right after its commit: wait for every job's result.json."""
    names = list(job.tasks())
    _wait_for(lambda: all(client.done_record(job.id, n) is None or client.done_record(job.id, n).outcome == "upstream_failed"
                          or jobspaces.SyncJobspace(client.aio).exists(f"{prefix}{n}/result.json") for n in names), what="the archive")


def _live(client: qubits.Client, n: int) -> None:
    _wait_for(lambda: len([i for i, _ in client.nodes() if not i.stopped]) >= n, what=f"{n} agents present")


JOB = (
    'echo "$QUBITS_NODE" > "$QUBITS_OUTPUT/node.txt"; cat input.txt >> "$QUBITS_OUTPUT/node.txt"; '
    'test -f "$QUBITS_INIT/built.txt" || exit 9; echo "out $QUBITS_BATCH_JOB"; echo "err $QUBITS_BATCH_JOB" >&2'
)


def test_capability_classes_init_once_archive_pull_and_notifications(local_url: str, fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = tmp_path / "project"
    project.mkdir()
    inits = tmp_path / "inits.log"
    (project / "build.sh").write_text(f'#!/bin/sh\nsleep 0.3\necho "$QUBITS_NODE" >> {inits}\necho built > built.txt\necho building\n')
    (project / "build.sh").chmod(0o755)
    for cls in ("cpu", "gpu", "big"):
        (project / f"{cls}.txt").write_text(f"input for {cls}\n")
    client = qubits.connect(local_url)
    with recording_server() as hook, recording_server() as matrix:
        b = Batch("lab", "classes", capabilities=["lab"], base=project)
        b.notify.webhooks.append(hook.url + "/hooks/secret-path")
        b.notify.matrix.append(qubits.batch.MatrixRoom("!room:example.org", matrix.url))
        b.initialize(script="build.sh")
        for cls, n in (("cpu", 3), ("gpu", 2), ("big", 1)):
            b.sweep(cls + "-{i}", {"i": range(n)}, command=JOB, files=[(f"{cls}.txt", "input.txt")], capabilities=[cls])
        env = {"QUBITS_MATRIX_TOKEN": "sekret"}
        fleet(local_url, "cpu-node", capabilities=("lab", "cpu"), slots=3, env=env)
        fleet(local_url, "gpu-node", capabilities=("lab", "gpu"), env=env)
        fleet(local_url, "big-node", capabilities=("lab", "big"), env=env)
        _live(client, 3)
        (project / "batch.yaml").write_text(__import__("yaml").safe_dump(b.to_dict(project)))
        dry = run_cli("batch", "submit", str(project / "batch.yaml"), "--dry-run", "--jobspace", local_url)
        assert dry.returncode == 0, dry.stderr
        assert "cpu-0  requires cpu,lab  resources -  runnable on 1/3 nodes" in dry.stderr
        assert not client.aio_list("jobs/"), "the dry run wrote nothing"
        job = submit(client, b)
        status = job.wait(timeout=90)
        assert status.ok, status.summary()
        for tid, done in job.results().items():
            assert done.holder == f"{tid.split('-')[0]}-node", f"{tid} ran on {done.holder}"
        _archived(client, job, "archive/lab/classes/")
        ran = inits.read_text().split()
        assert sorted(ran) == ["big-node", "cpu-node", "gpu-node"], f"init once per node: {ran}"

        keys = {m.key for m in client.aio_list("archive/lab/classes/")}
        for tid in job.results():
            for f in ("out/node.txt", "stdout.log", "stderr.log", "result.json"):
                assert f"archive/lab/classes/{tid}/{f}" in keys
        assert {f"archive/lab/classes/_init/{n}.log" for n in ("cpu-node", "gpu-node", "big-node")} <= keys
        js = jobspaces.SyncJobspace(client.aio)
        result = json.loads(js.get("archive/lab/classes/gpu-1/result.json")[0])
        assert result["outcome"] == "succeeded" and result["node"] == "gpu-node" and result["exit_code"] == 0
        assert js.get("archive/lab/classes/gpu-1/stdout.log")[0] == b"out gpu-1\n"
        assert js.get("archive/lab/classes/gpu-1/out/node.txt")[0] == b"gpu-node\ninput for gpu\n"
        assert b"building" in js.get("archive/lab/classes/_init/gpu-node.log")[0]

        dest = tmp_path / "results"
        got = run_cli("pull", job.id, str(dest), "--include", "^lab/classes/cpu-", "--exclude", "stderr", "--jobspace", local_url)
        assert got.returncode == 0, got.stderr
        files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
        assert files == sorted(f"lab/classes/cpu-{i}/{f}" for i in range(3) for f in ("out/node.txt", "result.json", "stdout.log"))
        again = run_cli("pull", "lab/classes", str(dest), "--include", "classes/cpu-", "--exclude", "stderr", "--jobspace", local_url)
        assert "fetched 0 file(s)" in again.stderr and "skipped 9 already present" in again.stderr, again.stderr
        (dest / "lab/classes/cpu-0/stdout.log").write_text("tampered\n")
        third = run_cli("pull", "lab/classes", str(dest), "-i", "cpu-0/stdout", "--jobspace", local_url)
        assert "fetched 1 file(s)" in third.stderr and (dest / "lab/classes/cpu-0/stdout.log").read_text() == "out cpu-0\n"
        dry_pull = run_cli("pull", "lab/classes", str(tmp_path / "none"), "--dry-run", "--jobspace", local_url)
        assert "would fetch" in dry_pull.stderr and not (tmp_path / "none").exists()
        for meta in js.list("archive/lab/classes/cpu-1/"):  # as if its committer died before archiving
            js.delete(meta.key)
        direct = run_cli("pull", "lab/classes", str(tmp_path / "direct"), "-i", "cpu-1/", "--jobspace", local_url)
        assert direct.returncode == 0, direct.stderr
        assert (tmp_path / "direct/lab/classes/cpu-1/stdout.log").read_text() == "out cpu-1\n"
        assert (tmp_path / "direct/lab/classes/cpu-1/out/node.txt").read_text() == "cpu-node\ninput for cpu\n"

        _wait_for(lambda: hook.accepted() and matrix.accepted(), what="notifications")
        time.sleep(1.0)  # a second (wrong) message would arrive by now
        (post,) = hook.accepted("POST")
        assert post.path == "/hooks/secret-path"
        event = post.json()
        assert event["event"] == "batch.finished" and event["counts"] == {"succeeded": 6} and event["job"] == job.id
        (put,) = matrix.accepted("PUT")
        assert put.path.startswith("/_matrix/client/v3/rooms/%21room%3Aexample.org/send/m.room.message/")
        assert put.headers["Authorization"] == "Bearer sekret"
        assert put.json()["msgtype"] == "m.text" and "batch lab/classes finished: 6 succeeded" in put.json()["body"]
        assert b"sekret" not in b"".join(js.get(m.key)[0] for m in js.list("jobs/")), "the token is never stored"
        why = run_cli("why", job.id, "big-0", "--jobspace", local_url)
        assert why.stdout.startswith("decided: succeeded (attempt 1 of ") and "run 1 on big-node)" in why.stdout, why.stdout


def test_failing_job_is_retried_then_failed_archived_and_reported_and_why_names_the_missing_capability(url: str, fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    local_url = url  # local directory and S3 (moto)
    client = qubits.connect(local_url)
    with recording_server() as hook:
        b = Batch("lab", "flaky", base=tmp_path, max_attempts=2)
        b.notify.webhooks.append(hook.url)
        b.job("ok", command="echo fine")
        b.job("crash", command='echo "try $QUBITS_ATTEMPT"; exit 3')
        b.job("needs-crash", command="echo never", after=["crash"])
        b.job("needs-ok", command="echo after-ok", after=["ok"])
        fleet(local_url, "solo", capabilities=("cpu",), slots=2)
        job = submit(client, b)
        status = job.wait(timeout=60)
        assert status.counts == {"succeeded": 2, "failed": 1, "upstream_failed": 1, "pending": 0}, status.counts
        assert job.results()["needs-crash"].outcome == "upstream_failed"
        done = job.results()["crash"]
        _archived(client, job, "archive/lab/flaky/")
        assert done.outcome == "failed" and done.attempt == 2 and done.exit_code == 3
        assert [a["outcome"] for a in done.attempts] == ["failed"], "the first attempt failed and was retried"
        js = jobspaces.SyncJobspace(client.aio)
        result = json.loads(js.get("archive/lab/flaky/crash/result.json")[0])
        assert (result["outcome"], result["attempt"], result["exit_code"]) == ("failed", 2, 3)
        assert js.get("archive/lab/flaky/crash/stdout.log")[0] == b"try 2\n"
        _wait_for(lambda: len(hook.accepted()) >= 2, what="two notifications")
        time.sleep(1.0)
        events = sorted(r.json()["event"] for r in hook.accepted())
        assert events == ["batch.failed", "job.failed"], events
        batch_msg = next(r.json() for r in hook.accepted() if r.json()["event"] == "batch.failed")
        assert batch_msg["failed"] == ["crash", "needs-crash"]
        assert batch_msg["counts"] == {"failed": 1, "succeeded": 2, "upstream_failed": 1}

    stuck = Batch("lab", "stuck", base=tmp_path)
    stuck.job("quantum", command="true", capabilities=["qpu"], resources={"gpus": 2})
    job = submit(client, stuck)
    why = run_cli("why", job.id, "quantum", "--jobspace", local_url)
    assert why.returncode == 0, why.stderr
    assert "not claimable: no live node offers what it needs" in why.stdout
    assert "capability 'qpu': not offered by 1 of 1 live nodes" in why.stdout
    assert "gpus 2: not offered by 1 of 1 live nodes" in why.stdout
    job.cancel()


def test_paused_agent_keeps_its_lease_and_the_batch_job_finishes_after_the_pause_runs_out(local_url: str, fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ttl = 1.5
    cache = tmp_path / "pause-cache"
    client = qubits.connect(local_url)
    b = Batch("lab", "paused", base=tmp_path)
    b.job("long", command="sleep 3; echo finished")
    fleet(local_url, "pausable", ttl=ttl, cache=cache, slots=1)
    job = submit(client, b)
    _wait_for(lambda: bool(client.aio_list(f"leases/{job.id}/")), what="a lease")
    paused = run_cli("agent", "pause", "--for", "9s", env={"QUBITS_CACHE": str(cache)})
    assert paused.returncode == 0, paused.stderr
    fleet(local_url, "watcher", ttl=ttl)  # would take over a lease left to expire
    _wait_for(lambda: any(i.paused for i, _ in client.nodes() if i.name == "pausable"), what="paused presence")
    nodes = run_cli("nodes", "--jobspace", local_url, env={"COLUMNS": "200"})
    row = next(line for line in nodes.stdout.splitlines() if "pausable" in line)
    assert "paused until" in row, nodes.stderr
    info = next(n for n in json.loads(run_cli("nodes", "--json", "--jobspace", local_url).stdout) if n["name"] == "pausable")
    assert info["paused"] and 0 < info["paused_until"] - time.time() <= 9
    time.sleep(3 * ttl)  # two ttls and more without progress: a dead holder's lease would be taken over
    js = jobspaces.SyncJobspace(client.aio)
    assert any(i.paused for i, _ in client.nodes() if i.name == "pausable"), "still within the pause"
    lease = Lease.from_json(js.get(layout.lease(job.id, "long"))[0])
    assert lease.state is LeaseState.HELD and lease.holder == "pausable" and lease.attempt == 1
    assert job.status().counts.get("running") == 1
    status = job.wait(timeout=30)
    assert status.ok
    done = job.results()["long"]
    assert done.holder == "pausable" and done.attempt == 1
    _archived(client, job, "archive/lab/paused/")
    assert js.get("archive/lab/paused/long/stdout.log")[0] == b"finished\n"


def test_agent_pauses_while_the_machine_is_in_use_and_resumes_when_idle(local_url: str, fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os
    import threading

    ttl = 1.5
    tty = tmp_path / "tty"  # stands for a terminal: its access time is the last keystroke
    tty.write_text("")
    os.utime(tty, (time.time() - 3600, time.time() - 3600))
    client = qubits.connect(local_url)
    fleet(local_url, "desk", ttl=ttl, slots=1, extra=("--pause-when-busy", "2s", "--busy-watch", str(tty)))
    b = Batch("lab", "desk", base=tmp_path)
    b.job("work", command="sleep 4; echo done")
    job = submit(client, b)
    _wait_for(lambda: bool(client.aio_list(f"leases/{job.id}/")), what="a lease")
    fleet(local_url, "watcher", ttl=ttl)  # would take over a lease left to expire
    typing = threading.Event()

    def type_keys() -> None:
        while not typing.is_set():
            os.utime(tty, None)
            time.sleep(0.2)

    typist = threading.Thread(target=type_keys)
    typist.start()
    try:
        _wait_for(lambda: any(i.paused for i, _ in client.nodes() if i.name == "desk"), timeout=20, what="paused while in use")
        info = next(i for i, _ in client.nodes() if i.name == "desk")
        assert info.paused_reason == "in use" and info.paused_until is None
        nodes = run_cli("nodes", "--jobspace", local_url, env={"COLUMNS": "200"})
        assert "paused (machine in use; until idle)" in next(line for line in nodes.stdout.splitlines() if "desk" in line)
        time.sleep(3 * ttl)
        lease = Lease.from_json(jobspaces.SyncJobspace(client.aio).get(layout.lease(job.id, "work"))[0])
        assert lease.state is LeaseState.HELD and lease.holder == "desk" and lease.attempt == 1, "kept alive while paused"
        assert client.done_record(job.id, "work") is None, "stopped while the machine is in use"
    finally:
        typing.set()
        typist.join()
    status = job.wait(timeout=30)
    assert status.ok
    done = job.results()["work"]
    assert done.holder == "desk" and done.attempt == 1
    assert not next(i for i, _ in client.nodes() if i.name == "desk").paused
