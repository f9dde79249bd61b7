"""Periodic submission (issue 19, the RQ/Celery habit): a schedule in the jobspace, fired by any agent,
exactly once per tick however many agents run, from the CLI and from Python."""

from __future__ import annotations

import json
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import jobspaces
import qubits
from qubits import _layout as layout
from tests.agents import AgentProcess, run_cli


def _fired(client: qubits.Client, name: str) -> list[str]:
    """The tick stamps of the jobs a schedule submitted (one entry per job)."""
    return [s.config["tick"] for s in client.jobs() if s.config.get("schedule") == name]


def test_a_schedule_fires_once_per_tick_with_two_agents_from_the_cli_and_from_python(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    add = run_cli("schedule", "add", "every2", "--every", "2s", "--jobspace", local_url, "--command", "echo tick")
    assert add.returncode == 0, add.stderr
    client.schedule("cron2", ["true"], cron="*/2 * * * * *")  # from Python: a cron with seconds
    listed = json.loads(run_cli("schedule", "list", "--json", "--jobspace", local_url).stdout)
    assert [(s["name"], s["every"], s["cron"]) for s in listed] == [("cron2", None, "*/2 * * * * *"), ("every2", 2.0, None)]
    agents = [AgentProcess(local_url, cache=tmp_path / f"c{i}", name=f"a{i}", slots=2) for i in range(3)]
    try:
        time.sleep(9)
        assert run_cli("schedule", "rm", "every2", "--jobspace", local_url).returncode == 0
        client.unschedule("cron2")
        stopped = time.time()
        time.sleep(3)
        for name in ("every2", "cron2"):
            ticks = _fired(client, name)
            assert len(ticks) >= 3, (name, ticks)
            assert not [t for t, n in Counter(ticks).items() if n > 1], f"{name}: a tick submitted twice: {ticks}"
            markers = [m.key for m in client.aio_list(layout.ticks_prefix(name))]
            assert markers == [], "rm removes its tick markers"
            stamps = sorted(ticks)
            gaps = {round(time.mktime(time.strptime(b[:15], "%Y%m%dT%H%M%S")) - time.mktime(time.strptime(a[:15], "%Y%m%dT%H%M%S")))
                    for a, b in pairwise(stamps)}
            assert gaps == {2}, f"{name}: one job per 2 s tick, none skipped or doubled: {stamps}"
        late = [s for s in client.jobs() if s.config.get("schedule") and s.created > stopped + 0.5]
        assert late == [], "nothing fires after rm"
        every = [client.job(s.id) for s in client.jobs() if s.config.get("schedule") == "every2"]
        assert every[0].wait(timeout=30).ok and every[0].logs("t000001") == b"tick\n"
        assert all(a.alive() for a in agents), [a.log()[-3000:] for a in agents if not a.alive()]
    finally:
        for a in agents:
            a.stop()
    assert run_cli("schedule", "rm", "every2", "--jobspace", local_url).returncode == 4
    bad = run_cli("schedule", "add", "x", "--cron", "61 * * * *", "--jobspace", local_url, "--command", "true")
    assert bad.returncode == 2 and "5 fields" in bad.stderr
    assert not jobspaces.run_sync(client.aio.exists(layout.schedule("x")))
