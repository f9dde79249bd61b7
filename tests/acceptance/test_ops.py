"""What an operator watches and cleans: the agent's Prometheus metrics (scraped over HTTP and as a
textfile), `qubits top` on a real terminal (tmux), and `qubits gc` (old finished jobs go entirely, a
running job stays)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobspaces
import qubits
from tests.agents import AgentProcess, run_cli
from tests.sshd import free_port
from tests.tools import require_tools


def parse_prometheus(text: str) -> dict[str, float]:
    """Samples by name with labels, e.g. ``qubits_agent_claims_total{node="m"}`` -> 3.0."""
    out: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        sample, value = line.rsplit(" ", 1)
        out[sample] = float(value)
    assert types, "no TYPE lines: not the Prometheus text format"
    return out


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        return parse_prometheus(resp.read().decode())


def _wait_for(check, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError as exc:  # the server is not up yet
            last = exc
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} ({last})")


def test_metrics_are_served_on_loopback_and_written_as_a_textfile(local_url: str, tmp_path: Path) -> None:
    port = free_port()
    textfile = tmp_path / "prom" / "qubits.prom"
    agent = AgentProcess(local_url, cache=tmp_path / "c", slots=2, ttl=2.0, name="metered",
                         extra=("--metrics-port", str(port), "--metrics-textfile", str(textfile)))
    try:
        before = _wait_for(lambda: scrape(port), 20, "the metrics endpoint")
        node = '{node="metered"}'
        assert before[f"qubits_agent_claims_total{node}"] == 0 and before[f"qubits_agent_running_tasks{node}"] == 0
        assert before[f'qubits_agent_info{{node="metered",version="{qubits.__version__}"}}'] == 1
        client = qubits.connect(local_url)
        job = client.submit_commands(["sleep 2", "true", "true", "exit 3"], max_attempts=1)
        # While the long task runs, the gauge shows it.
        _wait_for(lambda: scrape(port)[f"qubits_agent_running_tasks{node}"] >= 1, 20, "a running task in the metrics")
        status = job.wait(timeout=60)
        assert status.counts == {"succeeded": 3, "failed": 1, "pending": 0}
        after = _wait_for(lambda: (m := scrape(port)) and m[f"qubits_agent_commits_total{node}"] == 4 and m, 20, "4 commits")
        assert after[f"qubits_agent_claims_total{node}"] == 4
        assert after[f"qubits_agent_succeeded_total{node}"] == 3 and after[f"qubits_agent_failures_total{node}"] == 1
        assert after[f"qubits_agent_running_tasks{node}"] == 0 and after[f"qubits_agent_conflicts_total{node}"] == 0
        # The 2 s task renewed its 2 s lease: renewals counted and timed.
        renewals = after[f"qubits_agent_renewals_total{node}"]
        assert renewals >= 1 and after[f"qubits_agent_renew_seconds_count{node}"] == renewals
        assert after['qubits_agent_renew_seconds_bucket{node="metered",le="+Inf"}'] == renewals
        assert after[f"qubits_agent_renew_seconds_sum{node}"] > 0
    finally:
        agent.stop()
    # The textfile is rewritten at exit: the final counts, and no temporary file left beside it.
    final = parse_prometheus(textfile.read_text())
    assert final[f"qubits_agent_commits_total{node}"] == 4 and final[f"qubits_agent_draining{node}"] == 1
    assert [p.name for p in textfile.parent.iterdir()] == ["qubits.prom"]


def _tmux(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", *args], capture_output=True, text=True, timeout=10)


@pytest.fixture
def tmux() -> Iterator[str]:
    require_tools("tmux", install="apt-get install -y tmux: `qubits top` is checked on a real terminal")
    socket = f"qubits-{uuid.uuid4().hex[:8]}"
    yield socket
    _tmux(socket, "kill-server")


def test_top_shows_jobs_and_agents_live_on_a_terminal(local_url: str, tmp_path: Path, tmux: str) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands([f"sleep 0.{i}" for i in range(1, 7)], name="six-naps")
    # A shell in a 200x50 terminal, where a user types the command (exec: the session ends with it).
    started = _tmux(tmux, "new-session", "-d", "-s", "top", "-x", "200", "-y", "50", "sh")
    assert started.returncode == 0, started.stderr
    time.sleep(0.5)
    _tmux(tmux, "send-keys", "-t", "top", f"exec {sys.executable} -m qubits.cli top -j {local_url} --interval 0.5", "Enter")

    def screen() -> str:
        return _tmux(tmux, "capture-pane", "-p", "-t", "top").stdout

    # The job is there, not started: nothing done, no agent yet.
    try:
        first = _wait_for(lambda: job.id in screen() and screen(), 20, "the job on the screen")
    except AssertionError:
        print(screen())
        raise
    assert "six-naps" in first and "0/6" in first and "0 agents live" in first
    agent = AgentProcess(local_url, cache=tmp_path / "c", slots=2, ttl=2.0, name="top-agent")
    try:
        # The agent appears, live; the job finishes and the screen follows.
        _wait_for(lambda: "top-agent" in screen(), 30, "the agent on the screen")
        assert job.wait(timeout=60).ok
        done = _wait_for(lambda: "6/6" in (s := screen()) and "1 agents live" in s and s, 20, "6/6 on the screen")
        row = next(line for line in done.splitlines() if "top-agent" in line)
        assert "live" in row and qubits.__version__ in row
    finally:
        agent.stop()
    _wait_for(lambda: "top-agent" not in screen(), 20, "the stopped agent to leave the view")
    _tmux(tmux, "send-keys", "-t", "top", "C-c")
    _wait_for(lambda: _tmux(tmux, "has-session", "-t", "top").returncode != 0, 10, "top to exit on Ctrl-C")


def _keys(client: qubits.Client) -> set[str]:
    return {m.key for m in client.aio_list("")}


def test_gc_removes_old_finished_jobs_entirely_and_never_a_running_one(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    old = client.submit_commands(["echo one", "echo two", "exit 1"], max_attempts=1)
    agent = AgentProcess(local_url, cache=tmp_path / "c", slots=2, ttl=2.0, name="gc-agent")

    def of(job: qubits.Job) -> set[str]:
        # Leases of a finished job linger a few seconds before their agent buries them: not counted.
        return {k for k in _keys(client) if job.id in k and not k.startswith("leases/")}

    try:
        old.wait(timeout=60)
        running = client.submit_commands(["sleep 60", "true"])
        _wait_for(lambda: running.status(rows=0).counts.get("running"), 30, "the long task to run")
        old_keys = of(old)
        assert {k.split("/")[0] for k in old_keys} >= {"jobs", "done", "runs", "code"} - {"code"}
        # Too recent for 30 days: nothing goes.
        res = run_cli("gc", "--older-than", "30d", "-j", local_url)
        assert res.returncode == 0, res.stderr
        assert "removed 0 job(s)" in res.stderr and of(old) == old_keys
        # A dry run says what would go and deletes nothing.
        res = run_cli("gc", "--older-than", "0s", "--dry-run", "-j", local_url)
        assert f"would remove job {old.id}" in res.stderr and "nothing deleted" in res.stderr
        assert f"kept {running.id}" in res.stderr and "running: 1 of 2" in res.stderr
        assert of(old) == old_keys
        running_keys = {k for k in _keys(client) if running.id in k and not k.startswith("runs/")}
        res = run_cli("gc", "--older-than", "0s", "-j", local_url)
        assert res.returncode == 0, res.stderr
        after = _keys(client)
        assert not any(old.id in k for k in after), [k for k in after if old.id in k]
        # The running job keeps every object it had, and goes on.
        assert running_keys <= after
        assert running.status(rows=0).counts.get("running") == 1
        running.cancel()
        assert running.wait(timeout=30).finished
    finally:
        agent.stop()
    # Once finished (here: cancelled) it can go too; so do stale agent records.
    res = run_cli("gc", "--older-than", "0s", "-j", local_url, "--json")
    assert res.returncode == 0, res.stderr
    assert jobspaces.run_sync(client.aio.list_all("jobs/")) == []
    assert not [k for k in _keys(client) if running.id in k or k.startswith("nodes/")]


def test_nodes_shows_states_running_tasks_and_flags_version_skew(local_url: str) -> None:
    client = qubits.connect(local_url)
    now = time.time()
    presences = [
        qubits.NodeInfo("busy", "h1", 10, qubits.__version__, ["gpu"], slots=4, running=["j1/render-1", "j1/render-2"], wall=now),
        qubits.NodeInfo("resting", "h2", 11, qubits.__version__, slots=2, paused=True, paused_until=now + 3600, wall=now),
        qubits.NodeInfo("old", "h3", 12, "0.0.1", slots=1, wall=now),
        qubits.NodeInfo("gone", "h4", 13, qubits.__version__, slots=1, stopped=True, wall=now),
    ]
    for info in presences:
        jobspaces.run_sync(client.aio.put(f"nodes/{info.name}.json", info.to_json()))
    res = run_cli("nodes", "-j", local_url, env={"COLUMNS": "160"})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()  # the table on stdout (issue 19), its rows after the header's rule
    rows = {line.split()[0]: line for line in lines[[i for i, line in enumerate(lines) if line.startswith("─")][0] + 1:] if line.strip()}
    assert set(rows) == {"busy", "resting", "old"}, "stopped agents are hidden unless --all"
    assert "live" in rows["busy"] and "2/4 render-1, render-2" in rows["busy"] and "gpu" in rows["busy"]
    assert "paused until" in rows["resting"]
    assert "0.0.1 (skew)" in rows["old"] and "(skew)" not in rows["busy"]
    assert f"version skew: {qubits.__version__} on 2, 0.0.1 on 1" in res.stderr
    assert "1 stopped or lost agent(s) not shown" in res.stderr
    listed = {n["name"]: n for n in json.loads(run_cli("nodes", "--json", "-j", local_url).stdout)}
    assert listed["gone"]["state"] == "stopped" and listed["old"]["skew"] and not listed["busy"]["skew"]
    assert listed["resting"]["state"] == "paused" and listed["busy"]["running"] == ["j1/render-1", "j1/render-2"]
