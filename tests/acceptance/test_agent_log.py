"""The agent's log with no --log-level, as journalctl shows it (issue 19, defect 12): claims, commits,
releases, takeovers and drains at INFO, one line each."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import qubits
from tests.agents import AgentProcess


def _wait_until(check, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_the_agent_logs_its_claims_commits_releases_takeovers_and_drain_by_default(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    long_job = client.submit_commands(["sleep 60"])
    doomed = AgentProcess(local_url, cache=tmp_path / "a", slots=1, ttl=2)
    try:
        _wait_until(lambda: bool(client.aio_list(f"leases/{long_job.id}/")))
    finally:
        doomed.kill9()
    job = client.submit_commands(["true", "exit 3"], max_attempts=2)
    log_path = tmp_path / "agent.log"
    env = {**os.environ, "QUBITS_CACHE": str(tmp_path / "b"), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        agent = subprocess.Popen([sys.executable, "-m", "qubits.cli", "agent", "-j", local_url, "--slots", "3", "--ttl", "2",
                                  "--stop-timeout", "1", "--allow-root", "--name", "plain"],
                                 env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert job.wait(timeout=60).counts == {"succeeded": 1, "failed": 1, "pending": 0}
        _wait_until(lambda: [r.holder for r in long_job.status().rows] == ["plain"])  # taken over
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
    lines = log_path.read_text().splitlines()
    assert lines, "the agent logged nothing"

    def one(action: str, task: str, job_id: str) -> str:
        found = [line for line in lines if f"action={action} " in line and f"job={job_id} " in line and f"task={task} " in line]
        assert found, f"no {action} of {job_id}/{task} in:\n" + "\n".join(lines)
        return found[0]

    assert re.match(r"\d\d:\d\d:\d\d I qubits\.\w+: takeover \[", one("takeover", "t000001", long_job.id))
    one("claim", "t000001", job.id)
    assert "reason=succeeded" in one("commit", "t000001", job.id)
    assert "reason=exit status 3" in one("release", "t000002", job.id), "a failed attempt handed back for a retry"
    assert "reason=failed" in one("commit", "t000002", job.id)
    assert any("action=drain" in line and "node=plain" in line for line in lines)
    assert "reason=the agent was stopped" in one("release", "t000001", long_job.id), "the drain hands the long task back"
    assert not any(line.startswith("Traceback") for line in lines)
