"""Pilots on a real SLURM (the one-node cluster tests/slurm-one-node.sh sets up): `qubits slurm agents N`
lends SLURM nodes to a jobspace; each pilot runs tasks, exits when idle, and drains before its time limit.

Skips, saying why, where no SLURM controller answers."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

import qubits
from qubits import _layout as layout
from qubits._records import Lease, LeaseState
from tests.agents import run_cli
from tests.integration.test_batch_slurm import _slurm

ROOT_OK = {"QUBITS_ALLOW_ROOT": "1"}  # SLURM runs the pilots as the submitter: root here


def _gone(job_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip():
            return True
        time.sleep(0.5)
    return False


@pytest.fixture
def slurm() -> None:
    reason = _slurm()
    if reason:
        pytest.skip(reason)


def _submit_pilots(url: str, tmp_path: Path, *args: str) -> str:
    got = run_cli("slurm", "agents", *args, "--jobspace", url, "--log-dir", str(tmp_path / "pilots"), "--ttl", "5", env=ROOT_OK)
    assert got.returncode == 0, got.stderr
    (job_id,) = re.findall(r"SLURM job (\d+)", got.stderr)
    return job_id


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_pilots_run_a_jobs_tasks_and_leave_when_idle(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands(["sleep 0.5; echo $QUBITS_NODE"] * 6, requires=["slurm"])
    pilots = _submit_pilots(local_url, tmp_path, "2", "--time", "5", "--idle", "5")
    try:
        assert job.wait(timeout=120).ok
        holders = {d.holder for d in job.results().values()}
        assert holders <= {f"slurm-{pilots}-1", f"slurm-{pilots}-2"} and holders, holders
        assert _gone(pilots, 60), "idle pilots gave their nodes back"
    finally:
        subprocess.run(["scancel", pilots], check=False)


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_a_pilot_drains_before_its_time_limit(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands(["sleep 600"], requires=["slurm"])
    started = time.monotonic()
    pilots = _submit_pilots(local_url, tmp_path, "1", "--time", "2", "--lead", "40", "--idle", "600")
    try:
        assert _gone(pilots, 150), "the pilot ended"
        took = time.monotonic() - started
        log = next((tmp_path / "pilots").glob("pilot-*.log")).read_text()
        assert "action=drain" in log and "DUE TO TIME LIMIT" not in log, log
        assert took < 120, f"the pilot left before its 2-minute limit ({took:.0f} s)"
        data, _ = _lease(client, job.id)
        lease = Lease.from_json(data)
        assert lease.state is LeaseState.RELEASED and lease.error == "the agent was stopped", lease
    finally:
        subprocess.run(["scancel", pilots], check=False)


def _lease(client: qubits.Client, job: str) -> tuple[bytes, str]:
    from jobspaces import SyncJobspace

    return SyncJobspace(client.aio).get(layout.lease(job, "t000001"))
