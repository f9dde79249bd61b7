"""The lease protocol with agents as real processes, on a local directory and on S3 over a moto server.

Each test states one promise users rely on: nothing lost, nothing committed twice, takeover after a
death, no commit over a successor, no clock sync needed, retries and dead letters, cancellation, pause.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest

import jobspaces
import qubits
from qubits import _layout as layout
from qubits._defaults import TOMBSTONE_LINGER
from qubits._records import Done, Lease, LeaseState
from tests.agents import TAKEOVER_SLACK, AgentProcess, run_cli
from tests.tools import tool_missing

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


@pytest.fixture(params=["local", "s3"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("local_url" if request.param == "local" else "s3_url"))


@pytest.fixture
def fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    agents: list[AgentProcess] = []

    def start(jobspace: str, n: int = 1, **kw):  # type: ignore[no-untyped-def]
        started = []
        for _ in range(n):
            kw.setdefault("cache", tmp_path / f"cache-{len(agents)}")
            a = AgentProcess(jobspace, name=kw.pop("name", None) or f"agent{len(agents)}", **kw)
            kw.pop("cache")
            agents.append(a)
            started.append(a)
        return started

    yield start
    for a in agents:
        a.stop()


def _side_effects(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(line.split()[0] for line in path.read_text().splitlines() if line.strip())


def test_four_agents_run_five_hundred_tasks_exactly_once(url: str, fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    side = tmp_path / "side.log"
    client = qubits.connect(url)
    job = client.submit_commands([f'echo "$QUBITS_TASK $QUBITS_ATTEMPT $QUBITS_NODE" >> {side}' for _ in range(500)])
    fleet(url, 4, slots=4, ttl=5)
    status = job.wait(timeout=240)
    assert status.ok, status.summary()
    results = job.results()
    assert len(results) == 500 and {d.outcome for d in results.values()} == {"succeeded"}
    ran = _side_effects(side)
    assert len(ran) == 500 and max(ran.values()) == 1, "every task ran, and ran once"
    assert len({d.holder for d in results.values()}) > 1, "the work was shared"
    _leases_are_buried(client)


def _leases_are_buried(client: qubits.Client) -> None:
    """Finished tasks' leases linger as committed tombstones for a while, then go: none is left behind."""
    for meta in client.aio_list("leases/"):
        try:
            data, _ = client_get(client, meta.key)
        except jobspaces.NotFound:
            continue
        assert Lease.from_json(data).state is LeaseState.COMMITTED
    deadline = time.monotonic() + TOMBSTONE_LINGER + 10
    while client.aio_list("leases/"):
        assert time.monotonic() < deadline, "committed leases were never deleted"
        time.sleep(0.5)


def test_kill_nine_mid_task_is_taken_over_within_ttl_plus_a_poll(url: str, fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ttl = 2.0
    client = qubits.connect(url)
    job = client.submit_commands(["sleep 3; echo finished"])
    (victim,) = fleet(url, 1, slots=1, ttl=ttl)
    deadline = time.monotonic() + 30
    while not client.aio_list(f"leases/{job.id}/"):
        assert time.monotonic() < deadline, victim.log()
        time.sleep(0.05)
    time.sleep(0.3)
    victim.kill9()
    killed = time.time()
    (rescuer,) = fleet(url, 1, slots=1, ttl=ttl)
    status = job.wait(timeout=60)
    assert status.ok, status.summary() + rescuer.log()
    done = job.results()["t000001"]
    assert done.attempt == 2 and done.holder == "agent1"
    assert done.attempts[0]["outcome"] == "lost"
    taken_after = done.started - killed
    # Takeover needs ttl + margin of observed silence, plus at most one scan interval (ttl/4)
    # and the rescuer's start-up; this is a behavioural bound, not a speed figure.
    assert taken_after < ttl + 0.5 + ttl / 4 + TAKEOVER_SLACK, f"taken over {taken_after:.1f}s after the kill"
    assert b"finished" in job.logs("t000001")


def test_a_frozen_agent_does_not_commit_over_its_successor(url: str, fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ttl = 2.0
    marker = tmp_path / "ran"
    client = qubits.connect(url)
    job = client.submit_commands([f'sleep 2; echo "$QUBITS_NODE $QUBITS_ATTEMPT" >> {marker}'])
    (frozen,) = fleet(url, 1, slots=1, ttl=ttl, name="frozen")
    deadline = time.monotonic() + 30
    while not client.aio_list(f"leases/{job.id}/"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    frozen.freeze()
    (successor,) = fleet(url, 1, slots=1, ttl=ttl, name="successor")
    status = job.wait(timeout=60)
    frozen.thaw()
    time.sleep(2 * ttl)  # give the zombie every chance to try
    assert status.ok
    done = job.results()["t000001"]
    assert done.holder == "successor" and done.attempt == 2
    data, _ = client_get(client, layout.done(job.id, "t000001"))
    assert Done.from_json(data).holder == "successor", "the done record was not replaced"
    # Thawed, it finds its lease gone (or its store calls timed out while frozen): it never commits.
    assert "action=commit" not in frozen.log()


def client_get(client: qubits.Client, key: str) -> tuple[bytes, str]:
    from jobspaces import run_sync

    return run_sync(client.aio.get(key))


@pytest.mark.parametrize("skew", ["+1h", "-1h"])
def test_an_agent_with_its_clock_off_by_an_hour_behaves_the_same(local_url: str, fleet, tmp_path: Path, skew: str) -> None:  # type: ignore[no-untyped-def]
    if not os.path.exists(FAKETIME):
        tool_missing(f"libfaketime is not installed ({FAKETIME}; apt-get install faketime)")
    ttl = 2.0
    side = tmp_path / "side.log"
    client = qubits.connect(local_url)
    job = client.submit_commands([f'echo "$QUBITS_TASK" >> {side}; sleep 0.2' for _ in range(30)] + ["exit 1"], max_attempts=2)
    env = {"FAKETIME": skew, "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_DONT_RESET": "1"}
    (skewed,) = fleet(local_url, 1, slots=2, ttl=ttl, env=env, preload=FAKETIME, name="skewed")
    fleet(local_url, 1, slots=2, ttl=ttl, name="honest")
    status = job.wait(timeout=120)
    assert status.counts.get("succeeded") == 30 and status.counts.get("failed") == 1, status.summary() + skewed.log()
    assert max(_side_effects(side).values()) == 1
    holders = {d.holder for d in job.results().values()}
    assert "skewed" in holders, "the skewed agent took part"
    # Its tasks' retry went through the observation-timed delay, not its wall clock.
    failed = job.results()["t000031"]
    assert failed.attempt == 2 and failed.outcome == "failed"


def test_retries_then_success_and_dead_letter_with_logs_kept(url: str, fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    counter = tmp_path / "count"
    flaky = f'n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; echo "try $n"; [ $n -ge 3 ]'
    client = qubits.connect(url)
    job = client.submit_commands([flaky, 'echo "always fails" >&2; exit 3'], max_attempts=3)
    fleet(url, 1, slots=2, ttl=3)
    status = job.wait(timeout=120)
    results = job.results()
    assert results["t000001"].outcome == "succeeded" and results["t000001"].attempt == 3
    assert results["t000002"].outcome == "failed" and results["t000002"].exit_code == 3
    assert [a["outcome"] for a in results["t000002"].attempts] == ["failed", "failed"]
    assert not status.ok
    for attempt in (1, 2, 3):
        assert b"always fails" in job.logs("t000002", attempt=attempt, stream="stderr")
    assert b"try 3" in job.logs("t000001")
    cli = run_cli("status", job.id, "--json", "--jobspace", url)
    assert cli.returncode == 1 and '"failed": 1' in cli.stdout


def test_cancel_stops_running_tasks_and_claims_no_more(url: str, fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    side = tmp_path / "side.log"
    client = qubits.connect(url)
    job = client.submit_commands([f'echo "$QUBITS_TASK" >> {side}; sleep 30' for _ in range(6)])
    fleet(url, 1, slots=2, ttl=3)
    deadline = time.monotonic() + 30
    while len(_side_effects(side)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    started = time.monotonic()
    cli = run_cli("cancel", job.id, "--jobspace", url)
    assert cli.returncode == 0, cli.stderr
    status = job.wait(timeout=30)
    assert time.monotonic() - started < 25, "running tasks were stopped, not waited for"
    assert status.counts == {"cancelled": 6, "pending": 0}
    time.sleep(1.0)
    assert len(_side_effects(side)) == 2, "no task started after the cancel"


def test_paused_tasks_keep_their_leases_and_finish_after_resume(local_url: str, fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ttl = 1.5
    cache = tmp_path / "pause-cache"
    client = qubits.connect(local_url)
    job = client.submit_commands(["sleep 1.5; echo done-after-resume"])
    (agent,) = fleet(local_url, 1, slots=1, ttl=ttl, cache=cache, name="pausable")
    deadline = time.monotonic() + 30
    while not client.aio_list(f"leases/{job.id}/"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    env = {"QUBITS_CACHE": str(cache)}
    assert run_cli("agent", "pause", env=env).returncode == 0
    fleet(local_url, 1, slots=1, ttl=ttl, name="watcher")  # would take over a dead lease
    time.sleep(4 * ttl)
    assert job.status().counts.get("running") == 1, "still held while paused"
    nodes = {info.name: info for info, _ in client.nodes()}
    assert nodes["pausable"].paused
    assert run_cli("agent", "resume", env=env).returncode == 0
    status = job.wait(timeout=30)
    assert status.ok
    done = job.results()["t000001"]
    assert done.holder == "pausable" and done.attempt == 1
    assert b"done-after-resume" in job.logs("t000001")


def test_store_faults_never_lose_a_task_or_commit_twice(url: str, fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    side = tmp_path / "side.log"
    client = qubits.connect(url)
    job = client.submit_commands([f'echo "$QUBITS_TASK $QUBITS_ATTEMPT" >> {side}' for _ in range(60)])
    faults = '{"error_5xx": 0.05, "conflict_409": 0.02, "timeout": 0.02, "landed_but_failed": 0.05, "seed": 7}'
    agents = fleet(url, 2, slots=3, ttl=3, env={"QUBITS_FAULTS": faults})
    status = job.wait(timeout=180)
    assert status.ok, status.summary() + agents[0].log()[-3000:]
    results = job.results()
    assert len(results) == 60
    assert set(_side_effects(side)) == set(results), "every task ran"
    _leases_are_buried(client)
    assert all("injecting store faults" in a.log() for a in agents)
