"""Dispatch into an idle agent: how soon a single submitted task starts, by what woke the agent.

One real ``qubits agent`` process (one slot), confirmed working by a warm-up task, then ``tries`` single
tasks, each after a pause; latency = the task's start (bash's ``$EPOCHREALTIME`` in the marker) minus
the time just before ``Specs.submit`` (the submit's own writes count, as for the peers; ``submit_ms`` is
the submit alone: job spec, task chunk, ready entry, seal, hints, wake object). Variants:

- ``local``: a local directory; the agent waits on kernel file notifications (``notify``). Pauses are
  random 0.1-1.1 s, as in the peers' dispatch latency (Celery's figure in RESULTS.md).
- ``hints``: an object store; the submitter sends the idle agent a UDP wake hint after its writes. Pauses
  of 2-4 s, so the agent's polling has backed off beyond what could explain the figure.
- ``no hints``: the same with ``--hint-listen off`` and ``--max-idle-poll P``: only polling finds the work;
  pauses of P to P + 2 s let the poll back off to P first. The target: no more than P.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import jobspaces

from ._fleet import Fleet
from ._util import BenchError, bash_marker_command, read_marker, summary_ms
from ._work import submit


def _started(marker: Path, tag: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task, t in read_marker(marker):
            if task == tag:
                return t
        time.sleep(0.001)
    raise BenchError(f"wake: task {tag} did not start within {timeout:.0f}s")


def dispatch(store: Any, *, variant: str, tries: int, pause: tuple[float, float], idle_poll: float | None = None,
             extra: list[str] | None = None) -> dict[str, Any]:
    url = store.fresh_url()
    marker = Path(tempfile.mkdtemp(prefix="qubits-bench-wake-")) / "marker"
    args = list(extra or [])
    if idle_poll:
        args += ["--max-idle-poll", str(idle_poll)]
    fleet = Fleet(url, 1, slots=1, ttl=30.0, name="wake", extra=args)
    try:
        fleet.wait_ready()
        js = jobspaces.open_jobspace(url)
        latencies, submits = [], []
        for j in range(-1, tries):  # -1: the warm-up
            tag = f"d{j + 1:06d}" if j >= 0 else "warm"
            time.sleep(random.uniform(*pause) if j >= 0 else 1.0)
            t = time.time()
            asyncio.run(submit(js, 1, command=bash_marker_command(marker, tag=tag)))
            submitted = time.time()
            started = _started(marker, tag, timeout=max(120.0, 3 * (idle_poll or 60.0)))
            if j >= 0:
                latencies.append(started - t)
                submits.append(submitted - t)
        mode = _mode(url)
    finally:
        counts = fleet.stop()
        fleet.cleanup()
    agent = fleet.agent_counters()
    return {"store": store.name, "variant": variant, "wake": mode, "tries": tries, "pause_s": list(pause),
            "idle_poll_s": idle_poll, "latency_ms": summary_ms(latencies), "submit_ms": summary_ms(submits),
            "hints_accepted": agent.get("hints_accepted", 0), "notifications": agent.get("notifications", 0),
            "requests": sum(counts.values())}


def _mode(url: str) -> str:
    from qubits.protocol import NodeInfo

    js = jobspaces.SyncJobspace(jobspaces.open_jobspace(url))
    data, _ = js.get("nodes/wake-0.json")
    return NodeInfo.from_json(data).wake


def run(stores: list[Any], *, tries: int, no_hint_poll: float, no_hint_tries: int) -> dict[str, Any]:
    rows = []
    for store in stores:
        if store.name == "local":
            rows.append(dispatch(store, variant="notify", tries=tries, pause=(0.1, 1.1)))
            continue
        rows.append(dispatch(store, variant="hints", tries=tries, pause=(2.0, 4.0)))
        rows.append(dispatch(store, variant="no hints", tries=no_hint_tries, pause=(no_hint_poll, no_hint_poll + 2.0),
                             idle_poll=no_hint_poll, extra=["--hint-listen", "off"]))
    return {"rows": rows, "method": __doc__}
