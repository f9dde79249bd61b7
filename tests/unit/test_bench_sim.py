"""The simulated store of bench/sim: atomic, rate-limited, and on a virtual clock that really advances."""

from __future__ import annotations

import asyncio
import time

import pytest

import jobspaces
import qubits._protocol
from bench.sim._clock import Stalled, VirtualClock, run_virtual
from bench.sim._fleet import CellConfig, run_cell
from bench.sim._store import GCS, S3, SimJobspace, SimStore, partition

ONE_TRY = jobspaces.Timing(max_attempts=1)


def test_virtual_time_advances_without_waiting() -> None:
    clock = VirtualClock()

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        t0, m0 = loop.time(), qubits._protocol.time.monotonic()
        await asyncio.sleep(3600)
        await asyncio.wait_for(asyncio.sleep(10), timeout=60)
        return loop.time() - t0, qubits._protocol.time.monotonic() - m0

    started = time.perf_counter()
    loop_elapsed, monotonic_elapsed = run_virtual(main(), clock)
    assert loop_elapsed == pytest.approx(3610.0)
    assert monotonic_elapsed == pytest.approx(3610.0), "time.monotonic() in the patched modules reads the virtual clock"
    assert clock.elapsed() == pytest.approx(3610.0)
    assert qubits._protocol.time is time, "the real clock is back after the run"
    assert time.perf_counter() - started < 5.0


def test_a_loop_where_everything_waits_forever_says_so() -> None:
    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(Stalled):
        run_virtual(main())


def test_racing_creators_and_racing_swaps_have_one_winner_each() -> None:
    async def main() -> tuple[int, int]:
        js = SimJobspace(SimStore(S3, seed=3))

        async def create(i: int) -> bool:
            try:
                await js.put("leases/j/t", f"{i}".encode(), if_absent=True)
            except jobspaces.PreconditionFailed:
                return False
            return True

        created = sum(await asyncio.gather(*(create(i) for i in range(50))))
        _, etag = await js.get("leases/j/t")

        async def swap(i: int) -> bool:
            try:
                await js.put("leases/j/t", f"swap{i}".encode(), if_match=etag)
            except jobspaces.PreconditionFailed:
                return False
            return True

        swapped = sum(await asyncio.gather(*(swap(i) for i in range(50))))
        return created, swapped

    assert run_virtual(main()) == (1, 1)


def test_past_the_prefix_write_rate_the_store_answers_503_slowdown() -> None:
    async def main() -> tuple[int, list[str], int]:
        store = SimStore(S3.with_(write_rate=100.0), seed=5)
        js = SimJobspace(store, timing=ONE_TRY)
        errors: list[str] = []

        async def write(i: int, prefix: str) -> None:
            try:
                await js.put(f"{prefix}/t{i}", b"x")
            except jobspaces.TransientError as exc:
                errors.append(str(exc))

        await asyncio.gather(*(write(i, "leases/hot") for i in range(400)))
        hot = len(errors)
        # The same number of writes spread over 8 prefixes stays within their limits.
        await asyncio.sleep(2)
        await asyncio.gather(*(write(i, f"leases/p{i % 8}") for i in range(400)))
        return hot, errors, sum(store.stats.throttled.values())

    hot, errors, throttled = run_virtual(main())
    assert hot >= 250, "a burst of 400 writes on one prefix allowed 100/s must be throttled"
    assert len(errors) == hot, "spread over eight prefixes, the same burst fits"
    assert throttled == hot
    assert errors[0].startswith("503 SlowDown")


def test_gcs_allows_about_one_write_per_second_per_object() -> None:
    async def main() -> list[str]:
        js = SimJobspace(SimStore(GCS, seed=1), timing=ONE_TRY)
        out = []
        for delay in (0.0, 0.2, 1.1):
            await asyncio.sleep(delay)
            try:
                await js.put("wake", b"x")
                out.append("ok")
            except jobspaces.TransientError as exc:
                out.append(str(exc)[:3])
        return out

    assert run_virtual(main()) == ["ok", "429", "ok"]


def test_partitions_are_the_first_two_folders() -> None:
    assert partition("leases/J/t1", 2) == "leases/J/"
    assert partition("ready/3/50/J/000000/t1@0", 2) == "ready/3/"
    assert partition("nodes/a.json", 2) == "nodes/"
    assert partition("wake", 2) == ""


def test_a_tiny_fleet_of_real_agents_commits_every_task_once() -> None:
    cfg = CellConfig(S3, agents=12, tasks=400, slots=2, ramp=0.5, warmup=60.0, window=60.0)
    res = run_virtual(run_cell(cfg))
    assert res["drained"] and res["done_records"] == 400
    assert res["commits"] == 400
    assert res["duplicate_commits"] == 0
    assert res["claims"] >= 400
    assert res["requests"]["PUT_CREATE done"] == 400
