"""Limits enforced on tasks, agents as processes: memory (killed and reported as out of memory), CPU
(held to its quota, measured from the task's own usage) and the whole process tree killed with the task.

Each runs with the node's own way (cgroups where this machine lets the agent write them) and with the
fallback (``QUBITS_LIMITS=rss``: resident memory watched, CPUs by affinity)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import qubits
from nodeagent._limits import Limits
from tests.agents import AgentProcess, run_cli

NATIVE = Limits("probe", probe_only=True).kind


@pytest.fixture(params=["native", "rss"])
def way(request: pytest.FixtureRequest) -> str:
    if request.param == "native" and NATIVE == "rss+affinity":
        pytest.skip("no writable cgroup here (not root, or no delegated subtree): the fallback runs below")
    return str(request.param)


def _agent(url: str, tmp_path: Path, way: str) -> AgentProcess:
    env = {"QUBITS_LIMITS": "rss"} if way == "rss" else {}
    return AgentProcess(url, cache=tmp_path / "cache", slots=2, name="lab", env=env, extra=("--cpus", "2", "--memory", "4"))


HOG = """
import sys, time
chunks = []
for _ in range(60):               # up to 600 MB, 10 MB at a time, each page touched
    chunks.append(bytearray(10 * 2**20))
    chunks[-1][::4096] = b"x" * len(chunks[-1][::4096])
    time.sleep(0.02)
print("survived")
"""


def test_a_task_over_its_memory_is_killed_and_reported_out_of_memory(local_url: str, tmp_path: Path, way: str) -> None:
    script = tmp_path / "hog.py"
    script.write_text(HOG)
    client = qubits.connect(local_url)
    job = client.submit_commands([f"{sys.executable} {script}", "echo fine"], resources={"memory": 0.1}, max_attempts=3)
    agent = _agent(local_url, tmp_path, way)
    try:
        status = job.wait(timeout=90)
    finally:
        agent.stop()
    results = job.results()
    hog, fine = results["t000001"], results["t000002"]
    assert fine.outcome == "succeeded", fine.error
    assert hog.outcome == "failed" and hog.error is not None and hog.error.startswith("out of memory"), hog.error
    assert hog.attempt == 1, "the same limit would be hit again: no retry"
    assert not status.ok
    why = run_cli("why", job.id, "t000001", "--jobspace", local_url)
    assert "out of memory" in why.stdout + why.stderr, why.stdout + why.stderr
    shown = run_cli("status", job.id, "--jobspace", local_url, env={"COLUMNS": "300"})
    assert "out of memory" in shown.stdout + shown.stderr, shown.stdout + shown.stderr


BUSY = """
import os, resource, sys, time
began = time.monotonic()
kids = []
for _ in range(2):                # two busy processes: without a limit they take two cores
    pid = os.fork()
    if pid == 0:
        end = time.monotonic() + 4
        while time.monotonic() < end:
            pass
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{usage.ru_utime + usage.ru_stime} {time.monotonic() - began}")
"""


def test_a_cpu_bound_task_is_held_to_its_quota(local_url: str, tmp_path: Path, way: str) -> None:
    script, out = tmp_path / "busy.py", tmp_path / "usage"
    script.write_text(BUSY)
    client = qubits.connect(local_url)
    job = client.submit_commands([f"{sys.executable} {script} {out}"], resources={"cpus": 1})
    agent = _agent(local_url, tmp_path, way)
    try:
        status = job.wait(timeout=90)
    finally:
        agent.stop()
    assert status.ok, status.summary()
    cpu, wall = map(float, out.read_text().split())
    assert cpu / wall <= 1.1, f"{cpu:.2f} CPU-seconds in {wall:.2f} s: more than the one CPU asked for"


def test_the_whole_process_tree_goes_with_the_task(local_url: str, tmp_path: Path, way: str) -> None:
    pidfile = tmp_path / "escaped"
    client = qubits.connect(local_url)
    job = client.submit_commands([f"setsid sleep 300 & echo $! > {pidfile}; sleep 300"], resources={"cpus": 1}, timeout=2, max_attempts=1)
    agent = _agent(local_url, tmp_path, way)
    try:
        status = job.wait(timeout=60)
    finally:
        agent.stop()
    assert not status.ok and "timed out" in (job.results()["t000001"].error or ""), status.summary()
    assert _dead(int(pidfile.read_text())), "a child that left the task's process group was still running"


def _dead(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]:
            return True
        time.sleep(0.1)
    os.kill(pid, 9)
    return False


def test_a_task_that_leaves_a_child_behind_ends_and_the_child_goes(local_url: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "left"
    client = qubits.connect(local_url)
    job = client.submit_commands([f"setsid sleep 300 & echo $! > {pidfile}; echo finished"])  # no limits asked
    agent = AgentProcess(local_url, cache=tmp_path / "cache", slots=1, name="plain")
    try:
        status = job.wait(timeout=30)  # before: held open until the child ended, by the pipes it kept
    finally:
        agent.stop()
    assert status.ok and b"finished" in job.logs("t000001")
    assert _dead(int(pidfile.read_text())), "the child that left the task's group was still running"
