"""Nodes as a Qfile writes them, gc's rules on a memory jobspace, and the wheel built for nodes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

import jobspaces
import qubits
from qubits import _layout as layout
from qubits._gc import collect
from qubits._hosts import Node, parse_nodes
from qubits._records import Done, TaskSpec
from qubits._wheel import build_wheel
from qubits.errors import UsageError


def test_nodes_are_written_like_qubits_and_qjam_did(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUBITS_REMOTE_PYTHON", "/opt/py/bin/python3")
    nodes = parse_nodes(
        ["gpu1", ("alice@gpu2:2222", 4), {"host": "gpu1", "slots": 2, "python": "python3.12", "options": ["Compression=yes"]}],
        ssh={"user": "bob", "options": ["IdentityFile=~/.ssh/lab"], "workdir": "/scratch/{name}"},
        overrides={"options": ["ConnectTimeout=3"]},
    )
    a, b, c = nodes
    assert (a.name, a.host, a.user, a.port, a.slots, a.python) == ("gpu1", "gpu1", "bob", None, 1, "/opt/py/bin/python3")
    assert (b.name, b.user, b.port, b.slots) == ("gpu2-2222", "alice", 2222, 4)
    assert c.name == "gpu1-2" and c.python == "python3.12" and c.workdir == "/scratch/gpu1-2", "a repeated host gets its own name and folder"
    assert c.options == ("IdentityFile=~/.ssh/lab", "ConnectTimeout=3", "Compression=yes")
    argv = b.ssh_argv("true")
    assert argv[:5] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"] and argv[-2:] == ["alice@gpu2", "true"]
    assert ["-p", "2222"] == argv[argv.index("-p"):argv.index("-p") + 2]
    assert b.scp_argv([Path("/w/x.whl")], "/r")[-2:] == ["/w/x.whl", "alice@gpu2:/r/"]
    monkeypatch.delenv("QUBITS_REMOTE_PYTHON")
    assert parse_nodes("solo") == [Node(host="solo", name="solo")]
    assert parse_nodes(("solo", 3))[0].slots == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([{"slots": 2}], "has no host"),
        ([{"host": "a", "cores": 2}], "unknown keys ['cores']"),
        (["a", ("b", 0)], "slots must be at least 1"),
        ([42], "a node is 'host'"),
        (["bad host name"], "node address"),
        ([{"host": "a", "name": "x"}, {"host": "b", "name": "x"}], "two nodes are named 'x'"),
    ],
)
def test_a_bad_node_says_which_and_why(value: object, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        parse_nodes(value)


def _finish(client: qubits.Client, job: qubits.Job) -> None:
    for tid in job.tasks():
        done = Done(job.id, tid, "succeeded", 1, holder="test")
        jobspaces.run_sync(client.aio.put(layout.done(job.id, tid), done.to_json(), if_absent=True))


def test_gc_keeps_running_and_reused_jobs_and_finishes_an_interrupted_removal(memory_url: str) -> None:
    client = qubits.connect(memory_url)
    js = client.aio
    old = client.submit_commands(["true", "true"])
    _finish(client, old)
    reused = client.submit_commands(["true"])
    _finish(client, reused)
    # A job still running that reads the outputs of `reused` (as a Qfile job does).
    client.submit([TaskSpec(id="t1", command="true")], kind="qfile", config={"reuse": [reused.id]})
    half = client.submit_commands(["true", "true"])
    (first, _second) = list(half.tasks())
    jobspaces.run_sync(js.put(layout.done(half.id, first), Done(half.id, first, "succeeded", 1).to_json()))
    # An earlier gc died after marking and deleting part of a job.
    gone = client.submit_commands(["true"])
    _finish(client, gone)
    jobspaces.run_sync(js.put(layout.gc_mark(gone.id), b"{}"))
    jobspaces.run_sync(js.delete(layout.seal(gone.id)))

    dry = jobspaces.run_sync(collect(js, 0, dry_run=True))
    assert {j.job for j in dry.removed} == {old.id, gone.id}
    assert all(any(j.job in m.key for m in client.aio_list("")) for j in dry.removed), "a dry run deletes nothing"
    why = {j.job: j.reason for j in dry.kept}
    assert why[reused.id].startswith("reused by job") and why[half.id] == "running: 1 of 2 tasks decided"
    report = jobspaces.run_sync(collect(js, 0))
    assert {j.job for j in report.removed} == {old.id, gone.id}
    keys = [m.key for m in client.aio_list("")]
    assert not [k for k in keys if old.id in k or gone.id in k]
    assert any(k == layout.job_spec(reused.id) for k in keys) and any(k == layout.job_spec(half.id) for k in keys)
    assert json.loads(jobspaces.run_sync(js.get(layout.job_spec(half.id)))[0])["id"] == half.id
    # Nothing is old enough for a day.
    assert jobspaces.run_sync(collect(js, 86400)).removed == []


def test_the_node_wheel_holds_the_packages_and_the_metadata(tmp_path: Path) -> None:
    path = build_wheel(tmp_path)
    assert path.name == f"qubits-{qubits.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        meta = zf.read(f"qubits-{qubits.__version__}.dist-info/METADATA").decode()
        record = zf.read(f"qubits-{qubits.__version__}.dist-info/RECORD").decode()
    assert {"qubits/__init__.py", "qubits/_remote.py", "nodeagent/_agent.py", "jobspaces/__init__.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("bench/", "tests/"))]
    assert "Requires-Dist: obstore" in meta and "Name: qubits" in meta
    assert len(record.splitlines()) == len(names)
    assert build_wheel(tmp_path / "again").read_bytes() == path.read_bytes(), "the same code gives the same wheel"
