"""A task does not outlive its agent: SIGKILL of the agent process alone (not its process group, not
its children) ends the running task too (parent-death signal), so no orphan works on unsupervised."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import qubits
from tests.agents import AgentProcess, alive_pid


def test_killing_the_agent_alone_kills_its_task(local_url: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    agent = AgentProcess(local_url, cache=tmp_path / "cache", name="a0", slots=1, ttl=2.0)
    try:
        client = qubits.connect(local_url)
        client.submit_commands([f"echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile} && exec sleep 300"])
        deadline = time.monotonic() + 30
        while not pidfile.exists():
            assert time.monotonic() < deadline, agent.log()
            time.sleep(0.05)
        task_pid = int(pidfile.read_text())
        assert alive_pid(task_pid)
        os.kill(agent.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive_pid(task_pid):
            assert time.monotonic() < deadline, "the task outlived its agent"
            time.sleep(0.05)
    finally:
        agent.stop()
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
