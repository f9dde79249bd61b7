"""Hostile and broken input: each gets a clear error, and nothing is lost.

Corrupt or truncated objects are quarantined (``quarantine/{job}/{task}.json``), reported, and decided
failed with the reason, while the agent keeps serving others; objects from a newer qubits are refused
with "upgrade" and left for an agent that can read them; huge specs and unsafe task ids are refused at
submit before anything of the job can run; odd but valid characters in ids work end to end; a code bundle
that would write outside its folder fails its task with the member named.

Covered elsewhere (and named in docs/guarantees.md): archive members escaping their folder
(tests/unit/test_bundle.py), pull refusing paths outside DEST (tests/unit/test_batch_file.py), a Qfile that
raises at import (tests/unit/test_qfile.py, tests/acceptance/test_qfile.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobspaces
import qubits
from jobspaces import run_sync
from jobspaces.testing.servers import MotoServer
from qubits import _layout as layout
from qubits._records import Done, JobSpec, Lease, TaskSpec
from qubits.errors import CorruptObject, UsageError
from tests.agents import AgentProcess, run_cli


@pytest.fixture
def agent(local_url: str, tmp_path: Path) -> Iterator[AgentProcess]:
    a = AgentProcess(local_url, cache=tmp_path / "cache", slots=2, ttl=2.0, name="sturdy")
    yield a
    a.stop()


def _put(client: qubits.Client, key: str, data: bytes) -> None:
    run_sync(client.aio.put(key, data))


def _get(client: qubits.Client, key: str) -> bytes:
    return run_sync(client.aio.get(key))[0]


def _until(what: str, cond, timeout: float, agent: AgentProcess) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{agent.log()[-4000:]}"
        time.sleep(0.1)


def _echo(n: int, prefix: str = "t") -> list[TaskSpec]:
    return [TaskSpec(id=f"{prefix}{i}", command=f"echo {prefix}{i}") for i in range(n)]


def test_corrupt_objects_are_quarantined_decided_and_the_agent_keeps_serving(local_url: str, agent: AgentProcess) -> None:
    client = qubits.connect(local_url)
    # Submitted before the agent sees anything: a truncated task chunk, a truncated lease, a truncated
    # job spec, and a chunk written by a newer qubits; and a good job among them.
    bad_chunk = client.submit(_echo(2), name="bad-chunk")
    _put(client, layout.task_chunk(bad_chunk.id, "000000"), _get(client, layout.task_chunk(bad_chunk.id, "000000"))[:25])
    bad_lease = client.submit(_echo(1), name="bad-lease")
    _put(client, layout.lease(bad_lease.id, "t0"), b'{"job": "x", "task": "t0", "hol')
    bad_job = client.submit(_echo(1), name="bad-job")
    _put(client, layout.job_spec(bad_job.id), b'{"id": "' + bad_job.id.encode())
    newer = client.submit(_echo(1), name="newer")
    raw = json.loads(_get(client, layout.task_chunk(newer.id, "000000")))
    _put(client, layout.task_chunk(newer.id, "000000"), json.dumps([{**t, "v": 99} for t in raw]).encode())
    good = client.submit(_echo(5), name="good")

    assert good.wait(timeout=60).ok, agent.log()[-3000:]
    for job, tasks in ((bad_chunk, ["t0", "t1"]), (bad_lease, ["t0"]), (bad_job, ["t0"])):
        for task in tasks:
            _until(f"{job.id}/{task} decided", lambda j=job, t=task: _exists(client, layout.done(j.id, t)), 30, agent)
            done = Done.from_json(_get(client, layout.done(job.id, task)))
            assert done.outcome == "failed" and (done.error or "").startswith("quarantined:"), done
            assert "truncated" in (done.error or "") or "not valid JSON" in (done.error or ""), done.error
            note = json.loads(_get(client, layout.quarantine(job.id, task)))
            assert note["node"] == "sturdy" and note["reason"] in (done.error or "")
    # The task of the newer format is set aside, not decided: an upgraded agent may run it.
    _until("the newer task quarantined", lambda: _exists(client, layout.quarantine(newer.id, "t0")), 30, agent)
    assert "upgrade qubits" in json.loads(_get(client, layout.quarantine(newer.id, "t0")))["reason"]
    assert not _exists(client, layout.done(newer.id, "t0"))
    with pytest.raises(CorruptObject, match="newer qubits"):
        newer.tasks()
    assert "quarantine" in agent.log() and "upgrade qubits" in agent.log()
    # Every job with readable tasks finished; the client can read them all; the agent still serves.
    for job in (bad_chunk, bad_lease):
        assert job.wait(timeout=30).counts.get("failed") == job.status().total
    assert agent.alive()
    after = client.submit(_echo(3, "after"), name="after")
    assert after.wait(timeout=60).ok, agent.log()[-3000:]


def _exists(client: qubits.Client, key: str) -> bool:
    return bool(run_sync(client.aio.exists(key)))


def test_records_from_a_newer_qubits_are_refused_with_upgrade_advice() -> None:
    for cls, body in (
        (Lease, {"job": "j", "task": "t", "holder": "h", "token": "k", "attempt": 1, "ttl": 2.0}),
        (Done, {"job": "j", "task": "t", "outcome": "succeeded", "attempt": 1}),
        (TaskSpec, {"id": "t"}),
        (JobSpec, {"id": "j"}),
    ):
        with pytest.raises(CorruptObject, match=r"newer qubits \(format 7.*upgrade qubits"):
            cls.from_json(json.dumps({**body, "v": 7}).encode(), "somewhere")  # type: ignore[attr-defined]


def test_huge_specs_are_refused_at_submit_and_nothing_of_the_job_runs(local_url: str) -> None:
    client = qubits.connect(local_url)
    huge = TaskSpec(id="huge", command="echo " + "x" * (2 << 20))
    tasks = [*_echo(1500), huge]  # the huge one comes after a whole chunk of good tasks
    with pytest.raises(UsageError, match=r"'huge' has a spec over 1048576 bytes: put bulk data in a Dataset or files"):
        client.submit(tasks, name="too-big")
    assert client.aio_list("ready/") == [], "a refused job left runnable tasks behind"
    # Streamed (a generator): chunks already written cannot be unwritten, so the job is cancelled.
    with pytest.raises(UsageError, match="cancelled"):
        client.submit((t for t in tasks), name="too-big-stream")
    (job_key,) = [m.key for m in client.aio_list("jobs/") if m.key.endswith("/cancel")]
    assert job_key.startswith("jobs/")


@pytest.mark.parametrize("bad", ["a/b", "", "..", "new\nline", "nul\x00", "tab\tx"])
def test_task_ids_that_cannot_be_keys_are_refused_with_a_way_out(memory_url: str, bad: str) -> None:
    client = qubits.connect(memory_url)
    with pytest.raises((UsageError, jobspaces.InvalidKey)) as info:
        client.submit([TaskSpec(id=bad, command="true")])
    assert "task_id" in str(info.value) or "key" in str(info.value)
    assert client.aio_list("ready/") == []


ODD = ["sp ace", "pct%41%", "ünï-☃", "plus+sign", "q?x=1&y", "h#sh", "t~1", "at@home@0", "semi;colon", "quo'te\"s", "a..b"]


@pytest.mark.parametrize("store", ["local", "s3"])
def test_odd_characters_in_task_ids_work_end_to_end(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = str(request.getfixturevalue("local_url" if store == "local" else "s3_url"))
    client = qubits.connect(url)
    job = client.submit([TaskSpec(id=tid, command='printf "%s" "$QUBITS_TASK"') for tid in ODD], name="odd")
    a = AgentProcess(url, cache=tmp_path / "cache", slots=3, ttl=2.0, name="odd")
    try:
        status = job.wait(timeout=90)
        assert status.ok, status.summary() + a.log()[-3000:]
    finally:
        a.stop()
    results = job.results()
    assert set(results) == set(ODD)
    for tid in ODD:
        assert job.logs(tid) == tid.encode(), tid
    assert qubits.task_id("sp ace/x") == "sp~20ace~2fx", "task_id() makes a safe id of any name"


def _bundle(members: list[tuple[tarfile.TarInfo, bytes]]) -> tuple[bytes, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, body in members:
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if body else None)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, (b"evil" if kind == tarfile.REGTYPE else b"")


@pytest.mark.parametrize(
    "member",
    [
        _member("../../../../escaped"),
        _member("/tmp/qubits-absolute-escape"),
        _member("link", tarfile.SYMTYPE, "/etc"),
        _member("fifo", tarfile.FIFOTYPE),
        _member("blockdev", tarfile.BLKTYPE),
    ],
    ids=["dotdot", "absolute", "symlink-out", "fifo", "block-device"],
)
def test_a_code_bundle_that_escapes_fails_its_task_with_the_member_named(
    local_url: str, tmp_path: Path, member: tuple[tarfile.TarInfo, bytes]
) -> None:
    client = qubits.connect(local_url)
    data, digest = _bundle([_member("ok.txt"), member])
    _put(client, layout.code_bundle(digest), data)
    job = client.submit([TaskSpec(id="t", command="cat ok.txt")], code=digest, name="evil-bundle")
    cache = tmp_path / "cache"
    a = AgentProcess(local_url, cache=cache, slots=1, ttl=2.0, name="careful")
    try:
        status = job.wait(timeout=60)
    finally:
        a.stop()
    done = job.results()["t"]
    assert status.counts.get("failed") == 1 and done.attempts == [], "refused at once, not retried"
    assert "escapes its folder" in (done.error or "") or "links outside" in (done.error or "") or "device or fifo" in (done.error or ""), done.error
    assert member[0].name.lstrip("/") in (done.error or "")
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/qubits-absolute-escape").exists()
    assert not (cache / "code" / digest).exists()


@pytest.mark.s3
def test_pull_refuses_keys_that_would_write_outside_dest(moto_process: MotoServer, s3_url: str, tmp_path: Path) -> None:
    bucket = s3_url.split("/")[2]
    s3 = moto_process.client()
    s3.put_object(Bucket=bucket, Key="prefix/archive/lab/b1/job-1/out/fine.txt", Body=b"fine")
    s3.put_object(Bucket=bucket, Key="prefix/archive/lab/b1/job-1/../../../../../escaped.txt", Body=b"evil")
    dest = tmp_path / "dest"
    done = run_cli("pull", "lab/b1", str(dest), "--jobspace", s3_url)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "escaped.txt" in done.stderr and ("refusing" in done.stderr or "invalid path" in done.stderr), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "escaped.txt").exists() and not list(tmp_path.rglob("escaped.txt"))
