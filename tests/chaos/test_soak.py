"""The soak: a DAG of tasks, agents as real processes, and every fault at once; then DESIGN.md §4 is
checked over the whole jobspace and one line of figures is printed.

The short runs are CI's (about a minute per store). The long ones run by hand::

    pytest -m soak tests/chaos -s
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jobspaces.testing.servers import FakeGcsServer, MotoServer
from tests.chaos.harness import FLEET_FAULTS, PROXY_FAULTS, STORE_FAULTS, ChaosRun, Figures, Plan, faketime_missing
from tests.tools import require


@pytest.fixture(autouse=True)
def _faketime() -> None:
    require(faketime_missing())


def _report(fig: Figures, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + fig.line())


def _check(fig: Figures, *, proxy: bool) -> None:
    fig.assert_safe()
    assert fig.outcomes.get("succeeded") == fig.tasks, fig.line()
    kinds = [*STORE_FAULTS, *FLEET_FAULTS, *(f"proxy_{k}" for k in PROXY_FAULTS if proxy)]
    assert all(fig.faults.get(k, 0) > 0 for k in kinds), f"a fault kind never acted: {fig.line()}"
    assert fig.takeovers > 0, "a kill or a freeze caught a running task and it was taken over"
    assert fig.skewed_commits > 0, "agents with skewed clocks took part"
    assert fig.executions >= fig.tasks


def _s3(moto_process: MotoServer, s3_url: str, tmp_path: Path, plan: Plan) -> Figures:
    return ChaosRun(s3_url, tmp_path, plan, upstream=("127.0.0.1", moto_process.port)).run()


@pytest.mark.slow
def test_chaos_local(local_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fig = ChaosRun(local_url, tmp_path, Plan(tasks=600, agents=4, slots=3, budget=220, seed=11)).run()
    _report(fig, capsys)
    _check(fig, proxy=False)


@pytest.mark.slow
@pytest.mark.s3
def test_chaos_s3_through_a_misbehaving_network(
    moto_process: MotoServer, s3_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fig = _s3(moto_process, s3_url, tmp_path, Plan(tasks=180, agents=4, slots=3, budget=220, seed=12))
    _report(fig, capsys)
    _check(fig, proxy=True)


@pytest.mark.slow
def test_chaos_gcs_through_a_misbehaving_network(
    gcs_server: FakeGcsServer, gcs_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """gs:// (GCS's JSON API, generation preconditions) on fake-gcs-server, through the chaos proxy."""
    plan = Plan(tasks=180, agents=4, slots=3, budget=220, seed=13)
    fig = ChaosRun(gcs_url, tmp_path, plan, upstream=("127.0.0.1", gcs_server.port)).run()
    _report(fig, capsys)
    _check(fig, proxy=True)


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_soak_local(local_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = Plan(tasks=10000, agents=6, slots=3, budget=2400, kill_every=5.0, freeze_every=6.0, chaos_until=0.9, seed=21)
    fig = ChaosRun(local_url, tmp_path, plan).run()
    _report(fig, capsys)
    _check(fig, proxy=False)


@pytest.mark.soak
@pytest.mark.s3
@pytest.mark.timeout(3600)
def test_soak_s3(moto_process: MotoServer, s3_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = Plan(tasks=2000, agents=6, slots=3, budget=2400, kill_every=6.0, freeze_every=8.0, chaos_until=0.9, seed=22)
    fig = _s3(moto_process, s3_url, tmp_path, plan)
    _report(fig, capsys)
    _check(fig, proxy=True)
