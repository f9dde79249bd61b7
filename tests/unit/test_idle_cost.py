"""An idle agent on an object store is cheap: at most 100 requests an hour (presence writes and lease
scans included), so 100 idle agents cost under $5 a month at S3 Standard prices. Three hours of an idle
agent's life run in virtual time (bench/sim's clock) against a counting in-memory store that polls
like an object store."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import jobspaces
from bench.sim._clock import run_virtual
from bench.throughput import HOURS_PER_MONTH, by_kind, cost
from nodeagent._agent import Agent, AgentConfig

HOUR = 3600.0


def test_an_idle_agent_makes_at_most_100_requests_an_hour(memory_url: str, tmp_path: Path) -> None:
    async def life() -> Counter[str]:
        js = jobspaces.CountingJobspace(jobspaces.open_jobspace(memory_url))
        js.idle_poll = jobspaces.Jobspace.idle_poll  # an object store's idle poll
        assert js.idle_poll[1] >= 60.0
        agent = Agent(AgentConfig(jobspace=js.url, name="idle", ttl=30.0, cache_dir=tmp_path, hint_listen=None), js)
        run = asyncio.ensure_future(agent.run())
        await asyncio.sleep(HOUR)  # settling: its backoff grows, first scans and presence are done
        before = Counter(js.counts())
        await asyncio.sleep(2 * HOUR)
        after = Counter(js.counts())
        agent.drain()
        assert await run == 0
        return after - before

    counts = run_virtual(life())
    per_hour = sum(counts.values()) / 2
    assert per_hour <= 100, counts
    assert counts["PUT nodes"] >= 2, "presence is still written while idle"
    assert counts["LIST leases"] >= 2, "leases are still scanned while idle"
    fleet_month = cost({k: v / 2 for k, v in by_kind(counts).items()}) * HOURS_PER_MONTH * 100
    assert fleet_month < 5.0, f"${fleet_month:.2f} a month for 100 idle agents: {counts}"
