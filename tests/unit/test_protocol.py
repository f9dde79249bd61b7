"""The lease protocol's invariants on the in-process store (fast); the same code runs against real
servers and real agent processes in tests/acceptance."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

import jobspaces
from jobspaces import Faults, FaultyJobspace, MemoryJobspace
from qubits import _layout as layout
from qubits._dag import Dag
from qubits._defaults import TAKEOVER_MARGIN
from qubits._ids import task_id, task_name
from qubits._protocol import Claim, LeaseLost, Protocol, due_in, is_dead
from qubits._records import Done, JobSpec, Lease, LeaseState, Outcome, TaskSpec
from qubits._scan import ReadyIndex
from qubits._specs import Specs
from qubits.errors import CorruptObject, UsageError


@pytest.fixture
def js(memory_url: str) -> jobspaces.Jobspace:
    return jobspaces.open_jobspace(memory_url)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _submit(js: jobspaces.Jobspace, tasks: list[TaskSpec], dag: bool = False) -> str:
    spec = await Specs(js).submit(JobSpec(id="job1"), tasks, dag=dag)
    return spec.id


async def _claimed(js: jobspaces.Jobspace, holder: str, ttl: float) -> tuple[TaskSpec, Protocol, Claim]:
    """Task "a" of job1 submitted and claimed by ``holder``."""
    await _submit(js, [TaskSpec("a")])
    spec = await Specs(js).task("job1", "000000", "a")
    proto = Protocol(js, holder, ttl=ttl)
    claim = await proto.claim("job1", "000000", spec)
    assert claim is not None
    return spec, proto, claim


def test_exactly_one_of_many_concurrent_claimers_wins(js: jobspaces.Jobspace) -> None:
    async def main() -> list[object]:
        await _submit(js, [TaskSpec("a", command="true")])
        spec = await Specs(js).task("job1", "000000", "a")
        protos = [Protocol(js, f"agent{i}", ttl=30) for i in range(32)]
        return await asyncio.gather(*(p.claim("job1", "000000", spec) for p in protos))

    claims = [c for c in run(main()) if c is not None]
    assert len(claims) == 1


def test_renewal_changes_the_etag_even_for_equal_content(js: jobspaces.Jobspace) -> None:
    async def main() -> None:
        await _submit(js, [TaskSpec("a")])
        spec = await Specs(js).task("job1", "000000", "a")
        proto = Protocol(js, "me", ttl=30)
        claim = await proto.claim("job1", "000000", spec)
        assert claim is not None
        before = claim.etag
        await proto.renew(claim)
        assert claim.etag != before
        assert claim.lease.seq == 1

    run(main())


def test_a_live_lease_is_not_taken_over_and_a_silent_one_is(js: jobspaces.Jobspace, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("qubits._protocol.time.monotonic", lambda: clock[0])

    async def main() -> None:
        await _submit(js, [TaskSpec("a")])
        spec = await Specs(js).task("job1", "000000", "a")
        holder = Protocol(js, "holder", ttl=10)
        other = Protocol(js, "other", ttl=10)
        claim = await holder.claim("job1", "000000", spec)
        assert claim is not None
        assert await other.claim("job1", "000000", spec) is None  # first sighting
        clock[0] += 8
        await holder.renew(claim)  # alive: a new version resets the observer
        clock[0] += 8
        assert await other.claim("job1", "000000", spec) is None
        clock[0] += 10.6  # silent for ttl + margin since the other first saw this version
        taken = await other.claim("job1", "000000", spec)
        assert taken is not None and taken.attempt == 2 and taken.lease.holder == "other"
        assert taken.lease.history[-1]["outcome"] == "lost"
        # The zombie can neither renew nor commit over its successor.
        with pytest.raises(LeaseLost):
            await holder.renew(claim)
        with pytest.raises(LeaseLost):
            await holder.commit(claim, Outcome.SUCCEEDED)
        assert not await js.exists(layout.done("job1", "a"))
        done = await other.commit(taken, Outcome.SUCCEEDED)
        assert done.attempt == 2 and done.holder == "other"

    run(main())


def test_due_in_says_when_a_watched_lease_may_be_acted_on() -> None:
    held = Lease(job="j", task="t", chunk="000000", holder="h", token="x", attempt=1, ttl=10.0)
    assert due_in(held, 4.0, default_ttl=2.0) == pytest.approx(10.0 + TAKEOVER_MARGIN - 4.0)  # its own ttl
    assert due_in(None, 1.0, default_ttl=2.0) == pytest.approx(2.0 + TAKEOVER_MARGIN - 1.0)  # unread: ours
    released = replace(held, state=LeaseState.RELEASED, delay=3.0)
    assert due_in(released, 1.0, default_ttl=2.0) == pytest.approx(2.0)
    # The observer's rule and the schedule agree: dead exactly when nothing is left to wait.
    assert not is_dead(held, 10.0 + TAKEOVER_MARGIN - 0.01) and is_dead(held, 10.0 + TAKEOVER_MARGIN)
    for state in (LeaseState.COMMITTED, LeaseState.PARKED):  # nothing to take: only watched
        assert due_in(replace(held, state=state), 100.0, default_ttl=2.0) is None


def test_a_held_lease_of_a_decided_task_is_buried_not_taken_over(js: jobspaces.Jobspace, monkeypatch: pytest.MonkeyPatch) -> None:
    # A store whose conditional writes are not atomic (moto, under load) let a zombie's late renewal
    # overwrite its own commit: the task has its done record, yet its lease reads "held". Whoever finds
    # that lease dead must not run the task again (the long S3 soak caught a second execution).
    clock = [1000.0]
    monkeypatch.setattr("qubits._protocol.time.monotonic", lambda: clock[0])

    async def main() -> None:
        spec, holder, claim = await _claimed(js, "holder", ttl=10)
        held_body = claim.lease.to_json()
        await holder.commit(claim, Outcome.SUCCEEDED, linger=True)
        await js.put(layout.lease("job1", "a"), held_body)  # the write a correct store would refuse
        other = Protocol(js, "other", ttl=10)
        assert await other.claim("job1", "000000", spec) is None  # first sighting
        clock[0] += 10.6
        assert await other.claim("job1", "000000", spec) is None
        assert other.last_miss == "decided"
        assert not await js.exists(layout.lease("job1", "a"))
        data, _ = await js.get(layout.done("job1", "a"))
        assert Done.from_json(data, "done").holder == "holder"

    run(main())


def test_holder_fences_itself_when_it_cannot_renew_in_time(js: jobspaces.Jobspace, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [50.0]
    monkeypatch.setattr("qubits._protocol.time.monotonic", lambda: clock[0])

    async def main() -> None:
        _, proto, claim = await _claimed(js, "me", ttl=5)
        clock[0] += 5.01
        with pytest.raises(LeaseLost):
            await proto.renew(claim)

    run(main())


def test_commit_is_exactly_once_and_finalize_is_idempotent(js: jobspaces.Jobspace) -> None:
    async def main() -> None:
        await _submit(js, [TaskSpec("a")])
        spec = await Specs(js).task("job1", "000000", "a")
        proto = Protocol(js, "me", ttl=30)
        claim = await proto.claim("job1", "000000", spec)
        assert claim is not None
        done = await proto.commit(claim, Outcome.SUCCEEDED)
        assert done.outcome == "succeeded"
        assert not await js.exists(layout.lease("job1", "a"))
        again = await proto.finalize(replace(claim.lease, outcome="failed"))
        assert again.outcome == "succeeded"  # the first record stands
        with pytest.raises(LeaseLost):
            await proto.commit(claim, Outcome.FAILED)

    run(main())


def test_failed_attempt_is_released_with_a_delay_then_retried_then_dead_lettered(
    js: jobspaces.Jobspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [0.0]
    monkeypatch.setattr("qubits._protocol.time.monotonic", lambda: clock[0])

    async def main() -> None:
        await _submit(js, [TaskSpec("a", max_attempts=2, backoff=4.0)])
        spec = await Specs(js).task("job1", "000000", "a")
        a, b = Protocol(js, "a", ttl=30), Protocol(js, "b", ttl=30)
        claim = await a.claim("job1", "000000", spec)
        assert claim is not None
        await a.release(claim, failed=True, error="boom", exit_code=1)
        assert claim.lease.state is LeaseState.RELEASED and claim.lease.failures == 1
        assert 2.0 <= claim.lease.delay <= 4.0
        assert [e.task for e in await ReadyIndex(js).page()] == ["a"]
        assert await b.claim("job1", "000000", spec) is None  # delay not yet observed
        clock[0] += 4.01
        second = await b.claim("job1", "000000", spec)
        assert second is not None and second.attempt == 2
        await b.commit(second, Outcome.FAILED, error="boom again", failures=2)
        data, _ = await js.get(layout.done("job1", "a"))
        done = Done.from_json(data)
        assert done.outcome == "failed" and done.attempt == 2
        assert [h["outcome"] for h in done.attempts] == ["failed"]

    run(main())


def test_takeover_after_max_losses_ends_failed(js: jobspaces.Jobspace, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("qubits._protocol.time.monotonic", lambda: clock[0])

    async def main() -> None:
        await _submit(js, [TaskSpec("a", max_attempts=1)])
        spec = await Specs(js).task("job1", "000000", "a")
        dead, other = Protocol(js, "dead", ttl=1), Protocol(js, "other", ttl=1)
        assert await dead.claim("job1", "000000", spec) is not None
        assert await other.claim("job1", "000000", spec) is None
        clock[0] += 2
        assert await other.claim("job1", "000000", spec) is None  # decided, not run
        data, _ = await js.get(layout.done("job1", "a"))
        done = Done.from_json(data)
        assert done.outcome == "failed" and "lost 1 times" in (done.error or "")

    run(main())


def test_ambiguous_writes_are_settled_by_reading_back(memory_url: str) -> None:
    inner = jobspaces.open_jobspace(memory_url)
    faults = Faults(landed_but_failed=1.0, seed=1)
    js = FaultyJobspace(inner, faults)

    async def main() -> None:
        await _submit(inner, [TaskSpec("a")])
        spec = await Specs(inner).task("job1", "000000", "a")
        proto = Protocol(js, "me", ttl=30)
        claim = await proto.claim("job1", "000000", spec)
        assert claim is not None  # the create landed; the retry's 412 was recognised as ours
        faults.landed_but_failed = 0.0
        other = Protocol(inner, "other", ttl=30)
        assert await other.claim("job1", "000000", spec) is None
        faults.landed_but_failed = 1.0
        await proto.renew(claim)  # the swap landed too; our body is what the store holds
        faults.landed_but_failed = 0.0
        done = await proto.commit(claim, Outcome.SUCCEEDED)
        assert done.holder == "me"
        assert faults.injected["landed_but_failed"] >= 2

    run(main())


def test_dependents_are_released_when_all_deps_succeed_and_fail_when_one_fails(js: jobspaces.Jobspace) -> None:
    async def main() -> None:
        tasks = [TaskSpec("a"), TaskSpec("b"), TaskSpec("c", deps=["a", "b"]), TaskSpec("d", deps=["c"])]
        await _submit(js, tasks, dag=True)
        specs = Specs(js)
        proto = Protocol(js, "me", ttl=30)
        Dag(proto, specs)
        ready = sorted(e.task for e in await ReadyIndex(js).page())
        assert ready == ["a", "b"]
        for tid in ("a", "b"):
            claim = await proto.claim("job1", "000000", await specs.task("job1", "000000", tid))
            assert claim is not None
            await proto.commit(claim, Outcome.SUCCEEDED if tid == "a" else Outcome.FAILED)
            if tid == "a":
                assert "c" not in {e.task for e in await ReadyIndex(js).page()}  # c still waits for b
        data, _ = await js.get(layout.done("job1", "c"))
        assert Done.from_json(data).outcome == "upstream_failed"
        data, _ = await js.get(layout.done("job1", "d"))
        assert Done.from_json(data).outcome == "upstream_failed"

    run(main())


def test_a_stale_ready_entry_never_reruns_a_finished_dependent(js: jobspaces.Jobspace) -> None:
    async def main() -> None:
        await _submit(js, [TaskSpec("a"), TaskSpec("b", deps=["a"])], dag=True)
        specs = Specs(js)
        proto = Protocol(js, "me", ttl=30)
        Dag(proto, specs)
        a = await proto.claim("job1", "000000", await specs.task("job1", "000000", "a"))
        assert a is not None
        await proto.commit(a, Outcome.SUCCEEDED)
        b_spec = await specs.task("job1", "000000", "b")
        b = await proto.claim("job1", "000000", b_spec)
        assert b is not None
        await proto.commit(b, Outcome.SUCCEEDED)
        # A slow releaser writes b's ready entry again after b finished.
        await js.put(layout.ready("job1", "000000", "b"), b"")
        assert await proto.claim("job1", "000000", b_spec) is None
        assert proto.last_miss == "gone"

    run(main())


def test_records_refuse_newer_formats_and_corrupt_bodies() -> None:
    lease = Lease("j", "t", "h", "tok", 1, 30.0)
    raw = json.loads(lease.to_json())
    assert Lease.from_json(json.dumps(raw).encode()) == lease
    raw["v"] = 99
    with pytest.raises(CorruptObject, match="newer qubits"):
        Lease.from_json(json.dumps(raw).encode())
    with pytest.raises(CorruptObject, match="truncated"):
        Lease.from_json(lease.to_json()[:-5])


def test_task_ids_escape_any_name_reversibly() -> None:
    for name in ["report/2024-01-01", "a b", "ünï", "..", "x~y", "50%"]:
        tid = task_id(name)
        jobspaces.check_key(f"leases/j/{tid}")
        assert "/" not in tid and task_name(tid) == name


def test_ready_keys_round_trip_and_sort_by_priority() -> None:
    hi = layout.ready("j", "000001", "t@x", priority=5, not_before=7)
    assert layout.parse_ready(hi) == (5, "j", "000001", "t@x", 7)
    assert layout.ready("j", "0", "t", priority=5) < layout.ready("j", "0", "t", priority=0)


def test_submit_refuses_duplicates_huge_specs_and_undeclared_dags(js: jobspaces.Jobspace) -> None:
    with pytest.raises(UsageError, match="twice"):
        run(_submit(js, [TaskSpec("a"), TaskSpec("a")]))
    with pytest.raises(UsageError, match="bytes"):
        run(Specs(js).submit(JobSpec(id="job2"), [TaskSpec("a", command="x" * (1 << 21))]))
    with pytest.raises(UsageError, match="dag=True"):
        run(Specs(js).submit(JobSpec(id="job3"), [TaskSpec("a", deps=["b"])]))


def test_memory_store_is_shared_by_name_and_forgotten() -> None:
    a = MemoryJobspace("shared-x")
    b = MemoryJobspace("shared-x")
    run(a.put("k", b"v"))
    assert run(b.get("k"))[0] == b"v"
    MemoryJobspace.forget("shared-x")
    with pytest.raises(jobspaces.NotFound):
        run(MemoryJobspace("shared-x").get("k"))
