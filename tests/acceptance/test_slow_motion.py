"""`make -v` and `run -v` in slow motion (issue 19, "Everywhere"): claims, waits, commits and agents as they
happen, read from the jobspace; and the same from Python (``Job.events()``, ``make(on_event=…)``).
`run -v` is exercised over ssh in tests/acceptance/test_fleet.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import qubits
from qubits._events import TaskEvent
from tests.agents import AgentProcess, run_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline"
LINE = re.compile(r"^\s*\d+\.\ds (\w+)\s+(.*)$")


def test_make_v_shows_agents_claims_waits_and_commits_as_they_happen(tmp_path: Path) -> None:
    folder = tmp_path / "pipeline"
    shutil.copytree(EXAMPLE, folder)
    done = run_cli("make", "-C", str(folder), "-v", "--agents", "2", timeout=300)
    assert done.returncode == 0, done.stderr
    events = [m.groups() for m in map(LINE.match, done.stderr.splitlines()) if m]
    kinds = [k for k, _ in events]
    assert kinds.count("node") == 2 and all(rest.startswith("make-") and ": live on " in rest for k, rest in events if k == "node")
    assert any(k == "claim" and rest.startswith("ingest-2024-03-01 on make-") and "attempt 1 of 3" in rest for k, rest in events)
    # The report finds its parts on the node, at run time: it waits for them, and is claimed again after.
    assert any(k == "wait" and rest.startswith("report-2024-03-01 on ") and "waits for part-2024-03-01-00" in rest for k, rest in events)
    assert any(k == "commit" and rest.startswith("report-2024-03-01 on make-") and ": succeeded in " in rest for k, rest in events)
    first = {rest.split()[0]: i for i, (k, rest) in reversed(list(enumerate(events))) if k == "claim"}
    last = {rest.split()[0]: i for i, (k, rest) in enumerate(events) if k == "commit"}
    assert first["ingest-2024-03-01"] < last["ingest-2024-03-01"] < last["report-2024-03-01"], "in the order they happened"


def test_job_events_from_python_claim_release_retry_and_commit(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands(["sleep 0.5", "sleep 0.5; exit 3"], max_attempts=2)  # each run lasts a few polls
    agent = AgentProcess(local_url, cache=tmp_path / "a", slots=2, name="worker", exit_when_idle=3)
    try:
        events = list(job.events(poll=0.1))
    finally:
        agent.stop()
    assert all(isinstance(e, TaskEvent) for e in events)
    seen = [(e.kind, e.task, e.node, e.detail) for e in events]
    assert any(k == "node" and n == "worker" and d.startswith("live on ") for k, _t, n, d in seen), seen
    assert ("claim", "t000002", "worker", "attempt 1 of 2") in seen
    assert any(k == "release" and t == "t000002" and d.startswith("exit status 3") for k, t, _n, d in seen)
    assert ("claim", "t000002", "worker", "attempt 2 of 2") in seen
    assert any(k == "commit" and t == "t000002" and d.startswith("failed") for k, t, _n, d in seen)
    assert any(k == "commit" and t == "t000001" and d.startswith("succeeded") for k, t, _n, d in seen)
    assert next(e for e in events if e.task == "t000002").name == "sleep 0.5; exit 3"
