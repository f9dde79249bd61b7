"""`qubits run` over real ssh: a throwaway sshd on 127.0.0.1 plays two nodes (and a port nobody
listens on plays a dead one); pssh, kill, and installing qubits on a node that lacks it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobspaces
import qubits
from tests.agents import run_cli
from tests.sshd import SshServer, SshUnavailable, free_port
from tests.tools import tool_missing


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    try:
        server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    except SshUnavailable as exc:
        tool_missing(f"{exc}: the fleet tests need a real sshd")
    yield server
    server.stop()


def project(folder: Path, sshd: SshServer, body: str, *, nodes: str, python: str = sys.executable) -> Path:
    """A project whose Qfile reaches its nodes through ``sshd``."""
    folder.mkdir(parents=True, exist_ok=True)
    ssh = {"config": str(sshd.client_config), "user": "root", "python": python, "workdir": str(folder / "nodes") + "/{name}"}
    head = "\n".join([
        "import os, time",
        "from pathlib import Path",
        "from qubits.qfile import conf, rule",
        f"conf.jobspace = {str(folder / 'jobspace')!r}",
        f"conf.ssh = {ssh!r}",
        f"PORT, DEAD = {sshd.port}, {free_port()}",
        f"conf.nodes = {nodes}",
    ])
    (folder / "Qfile").write_text(head + "\n" + textwrap.dedent(body))
    return folder


TWO_HALVES = '''
def meet(me, other):
    """Passes only if ``other`` runs at the same time as ``me``: proves two nodes worked at once."""
    folder = Path(os.environ["MEET"])
    (folder / f"started-{me}").write_text(os.environ["QUBITS_NODE"])
    deadline = time.monotonic() + 60
    while not (folder / f"started-{other}").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{other} never ran while {me} did")
        time.sleep(0.05)


@rule(r"half-(a|b)")
def half(ctx, which):
    meet(which, "b" if which == "a" else "a")
    ctx.out("half.txt").write_text(f"{which} on {ctx.node}\\n")


@rule("whole", deps=["half-a", "half-b"])
def whole(ctx):
    ctx.out("whole.txt").write_text("".join(ctx.input(d, "half.txt").read_text() for d in ctx.deps))


rule("default", deps=["whole"])
'''

NODES = """[
    {"host": "127.0.0.1", "port": PORT, "name": "n1"},
    ("root@127.0.0.1:%d" % PORT, 1),
    {"host": "127.0.0.1", "port": DEAD, "name": "dead"},
]"""


def _wait_for(check, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_makes_a_pipeline_on_two_ssh_nodes_and_reports_the_unreachable_one(sshd: SshServer, tmp_path: Path) -> None:
    proj = project(tmp_path / "proj", sshd, TWO_HALVES, nodes=NODES)
    meet = tmp_path / "meet"
    meet.mkdir()
    res = run_cli("run", "-C", str(proj), "-v", "--ttl", "2", "--idle", "5", "--env", "MEET", env={"MEET": str(meet)}, timeout=180)
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.split()[0]
    # -v: slow motion, from the jobspace: the agents as they appear, each claim and commit with its node.
    events = [line.split("s ", 1)[1] for line in res.stderr.splitlines() if re.match(r"\s*\d+\.\ds (node|claim|wait|commit) ", line)]
    assert any(e.startswith(f"node     n1-{job_id}: live") for e in events), res.stderr
    for half in ("half-a", "half-b"):
        assert any(e.startswith(f"claim    {half} on ") and "attempt 1 of 3" in e for e in events), res.stderr
        assert any(e.startswith(f"commit   {half} on ") and ": succeeded in " in e for e in events), res.stderr
    # The dead node is reported, named, and skipped; the two live ones did the work.
    assert "skipped dead" in res.stderr and "unreachable" in res.stderr and "Connection refused" in res.stderr
    assert "started n1" in res.stderr and "started 127.0.0.1-" in res.stderr
    client = qubits.connect(str(proj / "jobspace"))
    job = client.job(job_id)
    status = job.status()
    assert status.ok, status.summary()
    results = job.results()
    half_holders = {d.holder for t, d in results.items() if t.startswith("half-")}
    assert len(half_holders) == 2 and all(h.endswith(job_id) for h in half_holders), half_holders
    (whole,) = qubits.qfile.outputs(job, ["whole"])
    assert whole.local is not None
    assert sorted((whole.local / "whole.txt").read_text().splitlines()) == [f"a on {results['half-a'].holder}", f"b on {results['half-b'].holder}"]
    # Each started agent is recorded (host, pid) for `qubits kill`; none for the dead node.
    records = {json.loads(jobspaces.run_sync(client.aio.get(m.key))[0])["node"] for m in client.aio_list(f"fleet/{job_id}/")}
    assert records == {"n1", f"127.0.0.1-{sshd.port}"}
    # The fleet goes away by itself once idle.
    agents = {f"n1-{job_id}", f"127.0.0.1-{sshd.port}-{job_id}"}

    def all_stopped() -> bool:
        seen = {info.name: info.stopped for info, _age in client.nodes()}
        return all(seen.get(a) for a in agents)

    _wait_for(all_stopped, 30, "the agents to exit when idle")
    nodes = json.loads(run_cli("nodes", "--json", "-j", str(proj / "jobspace")).stdout)
    assert {n["name"] for n in nodes} == agents and all(n["state"] == "stopped" for n in nodes)


NODES_FROM_A_FILE = """
@conf("nodes")
def nodes():
    \"\"\"Nodes from a file (it could be a cloud API): one "name address" a line.\"\"\"
    lines = (Path(__file__).parent / "hosts.txt").read_text().split("\\n")
    return [{"name": n, "host": a} for n, a in (line.split() for line in lines if line.strip())]
"""


def test_pssh_runs_everywhere_in_parallel_and_kill_stops_a_detached_fleet(sshd: SshServer, tmp_path: Path) -> None:
    proj = project(tmp_path / "proj", sshd, TWO_HALVES + NODES_FROM_A_FILE, nodes="[]")
    (proj / "hosts.txt").write_text(f"n1 root@127.0.0.1:{sshd.port}\nn2 127.0.0.1:{sshd.port}\ndead 127.0.0.1:{free_port()}\n")
    res = run_cli("pssh", "-C", str(proj), "echo hello from $(whoami)")
    assert res.returncode == 1, "one node is unreachable: pssh says so in its exit code"
    assert res.stdout.count("hello from root") == 2
    assert "@ n1" in res.stderr and "@ dead" in res.stderr and "exit 255" in res.stderr
    # A long-idle fleet, detached; `kill` stops it through the records.
    meet = tmp_path / "meet"
    meet.mkdir()
    (meet / "started-b").write_text("x")  # half-a passes at once; half-b waits for nothing either
    (meet / "started-a").write_text("x")
    res = run_cli("run", "-C", str(proj), "--ttl", "2", "--idle", "600", "--detach", "--env", "MEET", env={"MEET": str(meet)})
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.split()[0]
    client = qubits.connect(str(proj / "jobspace"))
    client.job(job_id).wait(timeout=60)
    records = [json.loads(jobspaces.run_sync(client.aio.get(m.key))[0]) for m in client.aio_list(f"fleet/{job_id}/")]
    assert len(records) == 2
    pids = [r["pid"] for r in records]
    assert all(_running(p) for p in pids)
    res = run_cli("kill", "-C", str(proj), job_id, "--wait", "30")
    assert res.returncode == 0, res.stderr
    assert res.stderr.count(": stopped") == 2, res.stderr
    assert not any(_running(p) for p in pids)
    again = run_cli("kill", "-C", str(proj), job_id)
    assert "no agents recorded" in again.stderr, "stopped agents are marked in their records"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_run_installs_qubits_on_a_node_that_lacks_it(sshd: SshServer, tmp_path: Path) -> None:
    # The "node": a venv with qubits' dependencies (linked from this one) but not qubits, and no index.
    venv = tmp_path / "nodevenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    here = Path(sysconfig.get_paths()["purelib"])
    (there,) = venv.glob("lib/python3*/site-packages")
    for entry in here.iterdir():
        low = entry.name.lower()
        if "qubits" in low or low.startswith("__editable__") or (there / entry.name).exists():
            continue
        (there / entry.name).symlink_to(entry)
    python = str(venv / "bin" / "python")
    assert subprocess.run([python, "-c", "import qubits"], capture_output=True, cwd=tmp_path).returncode != 0
    body = '@rule("default")\ndef default(ctx):\n    ctx.out("where.txt").write_text(__import__("qubits").__file__)\n'
    proj = project(tmp_path / "proj", sshd, body, nodes='[{"host": "127.0.0.1", "port": PORT, "name": "fresh"}]', python=python)
    res = run_cli("run", "-C", str(proj), "--ttl", "2", "--idle", "3", timeout=240)
    assert res.returncode == 0, res.stderr
    assert f"installed qubits {qubits.__version__}" in res.stderr
    job = qubits.connect(str(proj / "jobspace")).last()
    (out,) = qubits.qfile.outputs(job, ["default"])
    assert out.local is not None and str(venv) in (out.local / "where.txt").read_text(), "the task ran on the installed copy"
