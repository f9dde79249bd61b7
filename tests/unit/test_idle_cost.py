"""An idle agent on an object store is cheap: at most 100 requests an hour (presence writes and lease
scans included), so 100 idle agents cost under $5 a month at S3 Standard prices. Two hours of an idle
agent's life (after one of settling) run in virtual time against a counting in-memory store that polls
like an object store (``bench.throughput.idle_schedule``, what bench prints)."""

from __future__ import annotations

from bench.throughput import idle_schedule


def test_an_idle_agent_makes_at_most_100_requests_an_hour() -> None:
    res = idle_schedule()
    per_hour = res["by_kind_area_per_hour"]
    assert res["requests_per_agent_hour"] <= 100, res
    assert per_hour.get("PUT nodes", 0) >= 1, "presence is still written while idle"
    assert per_hour.get("LIST leases", 0) >= 1, "leases are still scanned while idle"
    assert res["cost_fleet_month_usd"] < 5.0, res
