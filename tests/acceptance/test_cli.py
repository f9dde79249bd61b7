"""The laptop verbs and the agent's operating surface, as a user runs them: processes, exit codes, output."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

import qubits
from tests.agents import AgentProcess, run_cli


def _wait_for_lease(client: qubits.Client, job: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not client.aio_list(f"leases/{job}/"):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_submit_prints_the_job_id_and_the_verbs_follow_it(local_url: str, tmp_path: Path) -> None:
    commands = tmp_path / "commands.txt"
    commands.write_text("# a comment\necho hello\n\necho world >&2\nexit 4\n")
    sub = run_cli("submit", "--commands", str(commands), "--max-attempts", "1", "--jobspace", local_url)
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip()
    assert job and "\n" not in job
    assert run_cli("last", "--jobspace", local_url).stdout.strip() == job
    agent = AgentProcess(local_url, cache=tmp_path / "c", slots=2, exit_when_idle=2)
    try:
        wait = run_cli("wait", job, "--timeout", "60", "--jobspace", local_url)
        assert wait.returncode == 1, "a task failed, so wait exits 1"
        status = json.loads(run_cli("status", job, "--json", "--jobspace", local_url).stdout)
        assert status["counts"] == {"succeeded": 2, "failed": 1, "pending": 0}
        assert {t["state"] for t in status["tasks"]} == {"succeeded", "failed"}
        assert run_cli("logs", job, "t000001", "--jobspace", local_url).stdout == "hello\n"
        assert run_cli("logs", job, "echo world >&2", "--stream", "stderr", "--jobspace", local_url).stdout == "world\n"
        listed = json.loads(run_cli("jobs", "--json", "--jobspace", local_url).stdout)
        assert [j["id"] for j in listed] == [job]
        retry = run_cli("retry", job, "--failed", "--jobspace", local_url)
        assert retry.returncode == 0
        new = qubits.connect(local_url).job(retry.stdout.strip())
        assert [t for t in new.tasks()] == ["t000003"]
        assert new.spec().config["retry_of"] == job
        assert agent.wait(60) == 0, "exit-when-idle ends the agent cleanly"
    finally:
        agent.stop()


def test_exit_codes_for_missing_things_and_bad_usage(local_url: str, tmp_path: Path) -> None:
    assert run_cli("status", "no-such-job", "--jobspace", local_url).returncode == 4
    assert run_cli("status").returncode == 2  # no jobspace given
    missing = run_cli("status", "x", "--jobspace", "s3://no-such-bucket-here/p?endpoint=http://127.0.0.1:9")
    assert missing.returncode == 3
    assert "error" in missing.stderr and len(missing.stderr.strip().splitlines()) <= 3
    assert run_cli("submit", "--jobspace", local_url).returncode == 2


def test_sigterm_drains_finishing_short_tasks_and_releasing_long_ones(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    short = client.submit_commands(["sleep 1; echo short-done"])
    agent = AgentProcess(local_url, cache=tmp_path / "a", slots=2, ttl=3, extra=("--stop-timeout", "2"))
    try:
        _wait_for_lease(client, short.id)
        long_job = client.submit_commands(["sleep 30"])
        _wait_for_lease(client, long_job.id)
        agent.term()
        assert agent.wait(30) == 0
        assert short.status().ok, "the short task finished during the drain"
        rows = {r.task: r for r in long_job.status().rows}
        assert rows["t000001"].state == "released", "the long one was handed back, not lost"
        successor = AgentProcess(local_url, cache=tmp_path / "b", slots=1, ttl=3, extra=("--job", long_job.id))
        try:
            deadline = time.monotonic() + 20
            while long_job.status().rows[0].state != "running":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert long_job.status().rows[0].attempt == 2
        finally:
            successor.stop()
    finally:
        agent.stop()


def test_an_idle_agent_wakes_on_submit_and_nodes_shows_it(local_url: str, tmp_path: Path) -> None:
    # Only the capability given: a container runtime on this machine would add its own (see test_containers).
    agent = AgentProcess(local_url, cache=tmp_path / "a", slots=1, name="idler", capabilities=("gpu",), env={"QUBITS_CONTAINER_RUNTIMES": "none"})
    try:
        client = qubits.connect(local_url)
        time.sleep(3)  # long enough for the idle poll to back off to its longest pause
        job = client.submit_commands(["true"])
        job.wait(timeout=10)
        nodes = json.loads(run_cli("nodes", "--json", "--jobspace", local_url).stdout)
        (node,) = nodes
        assert node["name"] == "idler" and node["capabilities"] == ["gpu"] and node["live"]
        table = run_cli("nodes", "--jobspace", local_url)
        assert "idler" in table.stdout and "live" in table.stdout, "tables go to stdout (issue 19)"
    finally:
        agent.stop()
    (node,) = json.loads(run_cli("nodes", "--json", "--jobspace", local_url).stdout)
    assert node["stopped"], "a stopped agent says so"


def test_capabilities_and_resources_decide_where_a_task_runs(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    gpu = client.submit_commands(['echo "$QUBITS_NODE"'] * 3, requires=["gpu"])
    big = client.submit_commands(['echo "$QUBITS_NODE"'] * 2, resources={"memory": 64})
    plain = AgentProcess(local_url, cache=tmp_path / "p", name="plain", extra=("--memory", "8"))
    fat = AgentProcess(local_url, cache=tmp_path / "g", name="gpu-node", capabilities=("gpu",), extra=("--memory", "128"))
    try:
        assert gpu.wait(timeout=60).ok and big.wait(timeout=60).ok
        assert {d.holder for d in gpu.results().values()} == {"gpu-node"}
        assert {d.holder for d in big.results().values()} == {"gpu-node"}
    finally:
        plain.stop()
        fat.stop()


def test_the_agent_refuses_root_unless_told(local_url: str, tmp_path: Path) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("the refusal is about running as root, and this test runs as an ordinary user")
    proc = run_cli("agent", "--jobspace", local_url, "--exit-when-idle", "1", env={"QUBITS_CACHE": str(tmp_path)})
    assert proc.returncode == 2 and "--allow-root" in proc.stderr


def test_systemd_unit_drains_longer_than_the_ttl_and_keeps_credentials_out(tmp_path: Path) -> None:
    out = run_cli("agent", "systemd", "-o", "-", "--slots", "4", "--ttl", "45", "--capability", "gpu", "--stop-timeout", "120")
    unit = out.stdout
    assert "[Service]" in unit and "Restart=on-failure" in unit
    assert "EnvironmentFile=/etc/qubits/agent.env" in unit
    assert "--slots 4 --capability gpu --ttl 45" in unit
    stop = int(next(line for line in unit.splitlines() if line.startswith("TimeoutStopSec=")).split("=")[1])
    assert stop > 120 and stop > 45
    assert "AWS_" not in unit and "SECRET" not in unit
    assert "KillSignal=SIGTERM" in unit and signal.SIGTERM
    assert "Delegate=yes" in unit, "the agent may make its tasks' cgroups below its own (limits enforced by cgroup2)"


def test_timeouts_priorities_and_delays(local_url: str, tmp_path: Path) -> None:
    order = tmp_path / "order"
    client = qubits.connect(local_url)
    slow = client.submit_commands(["sleep 30"], timeout=1, max_attempts=1)
    low = client.submit_commands([f"echo low >> {order}"] * 3, priority=0)
    high = client.submit_commands([f"echo high >> {order}"] * 3, priority=9)
    submitted = time.time()  # before the submit, which sets not_before from its own clock reading (CI: 1 ms early)
    later = client.submit_commands([f"echo later >> {order}"], delay=3)
    agent = AgentProcess(local_url, cache=tmp_path / "a", slots=1, ttl=3)
    try:
        done = slow.wait(timeout=60).rows[0]
        assert done.state == "failed" and "timed out after 1s" in (done.error or "")
        for job in (low, high, later):
            assert job.wait(timeout=60).ok
    finally:
        agent.stop()
    lines = order.read_text().split()
    assert lines[:3] == ["high"] * 3, "higher priority runs first"
    assert lines[-1] == "later" and later.results()["t000001"].started >= submitted + 3
