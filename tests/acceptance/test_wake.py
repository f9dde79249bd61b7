"""Idle agents are woken at once: by kernel file notifications on a local directory, by wake hints
(UDP) on object stores; where neither can arrive they poll, and still finish the work."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import jobspaces
import qubits
from bench._work import submit
from jobspaces import run_sync
from qubits._hints import make_hint, parse_address
from qubits._records import NodeInfo
from qubits._specs import Specs
from tests.agents import AgentProcess, run_cli


def _counts(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _agent(url: str, tmp_path: Path, name: str, *extra: str, env: dict[str, str] | None = None) -> tuple[AgentProcess, Path]:
    counts = tmp_path / f"{name}-counts.json"
    agent = AgentProcess(url, cache=tmp_path / name, slots=1, name=name, extra=extra,
                         env={"QUBITS_COUNT_REQUESTS": str(counts), **(env or {})})
    return agent, counts


def _node(url: str, name: str, timeout: float = 30.0) -> NodeInfo:
    js = jobspaces.SyncJobspace(jobspaces.open_jobspace(url))
    deadline = time.monotonic() + timeout
    while True:
        try:
            data, _ = js.get(f"nodes/{name}.json")
            return NodeInfo.from_json(data)
        except jobspaces.NotFound:
            assert time.monotonic() < deadline, f"agent {name} never published its presence"
            time.sleep(0.05)


def _start_delays(url: str, marker: Path, tries: int, pause: float) -> list[float]:
    """Submit ``tries`` single tasks, ``pause`` s apart; seconds from each submit to its task's start."""
    client = qubits.connect(url)
    delays = []
    for i in range(tries):
        time.sleep(pause)
        out = marker.with_suffix(f".{i}")
        t0 = time.time()
        job = client.submit_commands([f"date +%s.%N > {out}"])
        assert job.wait(timeout=60).ok
        delays.append(float(out.read_text()) - t0)
    return delays


def test_a_local_agent_is_woken_by_a_file_notification(local_url: str, tmp_path: Path) -> None:
    agent, counts = _agent(local_url, tmp_path, "notified", "--max-idle-poll", "30")
    try:
        assert _node(local_url, "notified").wake == "notify"
        delays = _start_delays(local_url, tmp_path / "start", tries=3, pause=3.0)
        (row,) = json.loads(run_cli("nodes", "--json", "--jobspace", local_url).stdout)
        assert row["wake"] == "notify"
        table = run_cli("nodes", "--jobspace", local_url)
        assert "notify" in table.stdout  # tables go to stdout
    finally:
        agent.stop()
    # Its idle poll had backed off to seconds (up to 30): only the notification explains starts this fast.
    assert max(delays) < 1.0, delays
    assert _counts(counts)["agent"]["notifications"] >= 3


def test_a_local_agent_polls_when_notifications_are_unavailable(local_url: str, tmp_path: Path) -> None:
    agent, counts = _agent(local_url, tmp_path, "poller", "--notify", "off", "--max-idle-poll", "1", "--hint-listen", "off")
    try:
        info = _node(local_url, "poller")
        assert info.wake == "poll" and not info.hint
        delays = _start_delays(local_url, tmp_path / "start", tries=1, pause=2.0)
    finally:
        agent.stop()
    assert delays[0] < 10.0
    assert "notifications" not in _counts(counts)["agent"]


def test_a_hinted_agent_on_s3_starts_at_once(s3_url: str, tmp_path: Path) -> None:
    agent, counts = _agent(s3_url, tmp_path, "hinted")  # idle poll: up to a minute on object stores
    try:
        info = _node(s3_url, "hinted")
        assert info.wake == "hint" and parse_address(info.hint) is not None and info.hint.startswith("127.0.0.1:")
        delays = _start_delays(s3_url, tmp_path / "start", tries=3, pause=4.0)
    finally:
        agent.stop()
    assert max(delays) < 1.5, delays
    assert _counts(counts)["agent"]["hints_accepted"] >= 3


def test_with_a_secret_forged_and_unsigned_hints_are_ignored(s3_url: str, tmp_path: Path) -> None:
    agent, counts = _agent(s3_url, tmp_path, "guarded", env={"QUBITS_SECRET": "right"})
    try:
        address = parse_address(_node(s3_url, "guarded").hint)
        assert address is not None
        time.sleep(1.0)  # its first listing done
        valid = make_hint(b"right")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for forged in (b"qubits-hint/1", make_hint(b"wrong"), b"look now", valid.replace(b" 1", b" 2", 1)):
                sock.sendto(forged, address)
            time.sleep(1.0)
            sock.sendto(valid, address)
            time.sleep(1.0)
            sock.sendto(valid, address)  # replayed
            time.sleep(1.0)
    finally:
        agent.stop()
    raw = _counts(counts)
    assert raw["agent"]["hints_ignored"] == 5, raw
    assert raw["agent"]["hints_accepted"] == 1, raw
    # One listing at start, one for the one genuine hint: the forged ones cost nothing.
    assert raw["counts"]["LIST ready"] == 2, raw


def test_hints_to_dead_addresses_do_no_harm_and_agents_without_hints_finish_the_work(s3_url: str, tmp_path: Path) -> None:
    js = jobspaces.open_jobspace(s3_url)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nobody listens there once closed
    for name, hint in (("gone", f"127.0.0.1:{closed_port}"), ("far", "192.0.2.1:9"), ("odd", "not-an-address")):
        info = NodeInfo(name=name, host="h", pid=1, version=qubits.__version__, hint=hint, wall=time.time())
        run_sync(js.put(f"nodes/{name}.json", info.to_json()))
    agents = [_agent(s3_url, tmp_path, f"deaf{i}", "--hint-listen", "off", "--max-idle-poll", "2")[0] for i in range(2)]
    try:
        time.sleep(3.0)
        client = qubits.connect(s3_url)
        t0 = time.monotonic()
        job = client.submit_commands(["true"] * 6)
        assert time.monotonic() - t0 < 5.0
        status = job.wait(timeout=60)
        assert status.ok, status.summary()
    finally:
        for a in agents:
            a.stop()


def test_an_agent_with_more_queued_than_it_can_take_hints_its_idle_peers(s3_url: str, tmp_path: Path) -> None:
    busy, busy_counts = _agent(s3_url, tmp_path, "busy", "--max-idle-poll", "1")
    idle, idle_counts = _agent(s3_url, tmp_path, "idle")
    try:
        _node(s3_url, "busy"), _node(s3_url, "idle")
        time.sleep(2.0)
        js = jobspaces.open_jobspace(s3_url)
        specs = Specs(js)

        async def silent() -> int:
            return 0

        specs.hinter.hint_idle = silent  # type: ignore[method-assign]  # the submitter hints nobody
        job_id = asyncio.run(submit(js, 4, command=["sleep", "1"], specs=specs))
        job = qubits.connect(s3_url).job(job_id)
        assert job.wait(timeout=60).ok
    finally:
        busy.stop()
        idle.stop()
    sent = _counts(busy_counts)["agent"].get("peer_hints", 0) + _counts(idle_counts)["agent"].get("peer_hints", 0)
    accepted = _counts(busy_counts)["agent"].get("hints_accepted", 0) + _counts(idle_counts)["agent"].get("hints_accepted", 0)
    assert sent >= 1 and accepted >= 1


def test_a_bad_hint_address_is_a_usage_error(local_url: str, tmp_path: Path) -> None:
    out = run_cli("agent", "--jobspace", local_url, "--allow-root", "--hint-listen", "somewhere:port",
                  env={"QUBITS_CACHE": str(tmp_path)})
    assert out.returncode == 2, out.stderr
    assert "--hint-listen" in out.stderr and "HOST[:PORT]" in out.stderr and "Traceback" not in out.stderr
