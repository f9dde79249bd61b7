"""The claim's critical path: a task starts as soon as its lease is written. The ready entry's DELETE
runs beside the task, and a stale listing's check of done/ goes out with the lease's create, so a claim
costs about one create-only PUT. A task finished meanwhile is still never claimed again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jobspaces
from jobspaces import Jobspace, ObjectMeta
from nodeagent._agent import Agent, AgentConfig
from nodeagent._execute import Executor
from qubits import _layout as layout
from qubits._ids import new_job_id
from qubits._protocol import Claim, Protocol
from qubits._records import AttemptEnd, JobSpec, Outcome, TaskSpec
from qubits._specs import Specs

DELAY = 0.3


class _Slow(jobspaces.CountingJobspace):
    """Each DELETE, HEAD and create-only PUT takes DELAY seconds (a slow store)."""

    async def delete(self, key: str) -> None:
        await asyncio.sleep(DELAY)
        await super().delete(key)

    async def head(self, key: str) -> ObjectMeta:
        await asyncio.sleep(DELAY)
        return await super().head(key)

    async def put(self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> str:
        if if_absent and key.startswith("leases/"):
            await asyncio.sleep(DELAY)
        return await super().put(key, data, if_absent=if_absent, if_match=if_match)


class _Timed(Executor):
    started: list[float]

    async def run(self, claim: Claim) -> AttemptEnd:
        self.started.append(time.monotonic())
        return AttemptEnd(Outcome.SUCCEEDED, None, 0)


async def _submit(js: Jobspace, n: int = 1) -> str:
    job = JobSpec(id=new_job_id())
    await Specs(js).submit(job, [TaskSpec(id=f"t{i:03d}", kind="shell", command="true") for i in range(n)])
    return job.id


def test_a_task_starts_without_waiting_for_its_ready_entry_to_be_deleted(memory_url: str, tmp_path: Path) -> None:
    async def go() -> None:
        js = _Slow(jobspaces.open_jobspace(memory_url))
        await _submit(js.inner)
        agent = Agent(AgentConfig(jobspace=js.url, name="a", slots=1, cache_dir=tmp_path, hint_listen=None), js)
        agent.executor = ex = _Timed(agent, tmp_path)
        ex.started = []
        await agent.is_cancelled("none")  # warm nothing in particular; the job's own flag is read below
        t0 = time.monotonic()
        assert await agent._fill_slots() == 1
        await asyncio.gather(*(t for _, t in list(agent.running.values())))
        # The create (DELAY) and the cancel check (a HEAD, DELAY, beside it): one DELAY, not three.
        assert ex.started[0] - t0 < 2 * DELAY, ex.started[0] - t0
        assert not [m async for m in js.inner.list("ready/")], "the entry is still deleted"
        for burial in list(agent._burials):
            burial.cancel()

    asyncio.run(go())


def test_a_stale_listing_checks_done_beside_the_create_and_never_claims_a_finished_task(memory_url: str) -> None:
    async def go() -> None:
        js = _Slow(jobspaces.open_jobspace(memory_url))
        job = await _submit(js.inner, 2)
        specs = Specs(js)
        proto = Protocol(js, "a", 30.0)
        stale = time.monotonic() - 3600  # listed an hour ago
        t0 = time.monotonic()
        claim = await proto.claim(job, "000000", await specs.task(job, "000000", "t000"), stale)
        assert claim is not None
        assert time.monotonic() - t0 < 1.7 * DELAY, "the done/ check (a HEAD) went out with the create"
        # A task finished and its lease buried: a stale listing's create succeeds, the check refuses it.
        await js.inner.put(layout.done(job, "t001"), b"{}")
        assert await proto.claim(job, "000000", await specs.task(job, "000000", "t001"), stale) is None
        assert proto.last_miss == "gone"
        assert not await js.inner.exists(layout.lease(job, "t001"))

    asyncio.run(go())
