"""Fair share between submitters, agents as processes: while two people's tasks wait, each runs on
about half of the slots, however many tasks each queued."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import qubits
from tests.agents import AgentProcess, run_cli


def _slot_seconds(lines: list[tuple[str, float, float]], t0: float, t1: float) -> dict[str, float]:
    used: dict[str, float] = {}
    for who, start, end in lines:
        used[who] = used.get(who, 0.0) + max(0.0, min(end, t1) - max(start, t0))
    return used


def test_two_submitters_each_get_an_equal_share_of_slots(local_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "ran"
    record.mkdir()
    command = f'b=$(date +%s.%N); sleep 0.8; echo "{{who}} $b $(date +%s.%N)" > {record}/$QUBITS_JOB.$QUBITS_TASK'
    client = qubits.connect(local_url)
    jobs = {}
    for who, n in (("alice", 48), ("bob", 16)):  # alice queued three times as many tasks as bob
        monkeypatch.setenv("QUBITS_SUBMITTER", f"{who}@laptop")
        jobs[who] = client.submit_commands([command.format(who=who)] * n)
    agents = [AgentProcess(local_url, cache=tmp_path / f"c{i}", slots=2, name=f"a{i}") for i in range(2)]
    try:
        for job in jobs.values():
            assert job.wait(timeout=180).ok
        shown = run_cli("jobs", "--shares", "--json", "--jobspace", local_url)
    finally:
        for agent in agents:
            agent.stop()
    runs = []
    for path in record.iterdir():
        who, start, end = path.read_text().split()
        runs.append((who, float(start), float(end)))
    # While both had tasks waiting: from the first start to the last start of whoever finished first.
    t0 = min(s for _, s, _ in runs)
    t1 = min(max(s for w, s, _ in runs if w == who) for who in ("alice", "bob"))
    used = _slot_seconds(runs, t0, t1)
    share = used["bob"] / (used["alice"] + used["bob"])
    assert 0.45 <= share <= 0.55, f"bob's share of the slots was {share:.2f} ({used}); alice queued 3x as many"
    assert shown.returncode == 0 and isinstance(json.loads(shown.stdout), list), shown.stderr
