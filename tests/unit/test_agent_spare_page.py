"""The agent serves its next claims from the untried rest of its last ready-index page (no LIST per
claim), and lists afresh once that rest is stale: a task another agent took is not run twice."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import jobspaces
from nodeagent._agent import Agent, AgentConfig
from nodeagent._execute import Executor
from qubits._ids import new_job_id
from qubits._protocol import Claim
from qubits._records import AttemptEnd, JobSpec, Outcome, TaskSpec
from qubits._scan import ReadyEntry
from qubits._specs import Specs


class _Noop(Executor):
    ran: list[str]

    async def run(self, claim: Claim) -> AttemptEnd:
        self.ran.append(claim.task)
        return AttemptEnd(Outcome.SUCCEEDED, None, 0)


def _agent(js: jobspaces.Jobspace, name: str, cache: Path, ran: list[str]) -> Agent:
    agent = Agent(AgentConfig(jobspace=js.url, name=name, slots=1, cache_dir=cache), js)
    agent.executor = _Noop(agent, cache)
    agent.executor.ran = ran  # type: ignore[attr-defined]
    return agent


async def _one_claim(agent: Agent) -> int:
    n = await agent._fill_slots()
    await asyncio.gather(*(t for _, t in list(agent.running.values())))
    return n


def test_one_listing_serves_several_claims_and_a_stale_rest_is_listed_again(memory_url: str, tmp_path: Path) -> None:
    async def go() -> None:
        js = jobspaces.CountingJobspace(jobspaces.open_jobspace(memory_url))
        job = JobSpec(id=new_job_id())
        await Specs(js).submit(job, [TaskSpec(id=f"t{i:03d}", kind="shell", command="true") for i in range(20)])
        ran: list[str] = []
        a = _agent(js, "a", tmp_path / "a", ran)
        b = _agent(js, "b", tmp_path / "b", ran)
        js.reset()
        for _ in range(5):
            assert await _one_claim(a) == 1
        assert js.counts().get("LIST ready") == 1, js.counts()
        # b takes everything that is left, so a's spare entries all name tasks b holds or finished.
        while await _one_claim(b):
            pass
        assert await _one_claim(a) == 0
        assert len(ran) == 20 and len(set(ran)) == 20, sorted(ran)
        for agent in (a, b):
            for burial in list(agent._burials):
                burial.cancel()

    asyncio.run(go())


def test_an_old_spare_page_checks_done_so_a_finished_task_is_not_run_again(memory_url: str, tmp_path: Path) -> None:
    async def go() -> None:
        js = jobspaces.CountingJobspace(jobspaces.open_jobspace(memory_url))
        job = JobSpec(id=new_job_id())
        await Specs(js).submit(job, [TaskSpec(id=f"t{i:03d}", kind="shell", command="true") for i in range(3)])
        ran: list[str] = []
        a = _agent(js, "a", tmp_path / "a", ran)
        b = _agent(js, "b", tmp_path / "b", ran)
        assert await _one_claim(a) == 1
        # b runs the rest; their tombstones are buried at once (as if TOMBSTONE_LINGER had passed).
        while await _one_claim(b):
            pass
        for agent in (a, b):
            for burial in list(agent._burials):
                burial.cancel()
        for meta in await js.list_all("leases/"):
            await js.delete(meta.key)
        # a's spare page is now older than half the linger: its claims check done/ before running.
        a._spare_at -= 6.0
        js.reset()
        assert await _one_claim(a) == 0
        assert js.counts().get("HEAD done", 0) >= 1, js.counts()
        assert sorted(ran) == ["t000", "t001", "t002"], ran

    asyncio.run(go())


def test_the_rest_of_a_page_is_ranked_again_only_when_specs_or_chunks_arrive(memory_url: str, tmp_path: Path) -> None:
    async def go() -> None:
        js = jobspaces.open_jobspace(memory_url)
        job = JobSpec(id=new_job_id())
        blobs = {f"t{i:03d}": f"chunk {i}".encode() for i in range(20)}
        digests = {tid: hashlib.sha256(data).hexdigest() for tid, data in blobs.items()}
        await Specs(js).submit(job, [TaskSpec(id=tid, kind="map", payload={"chunk": d}) for tid, d in digests.items()])
        ran: list[str] = []
        a = _agent(js, "a", tmp_path / "a", ran)
        ranked: list[str] = []
        rank = a.executor.data.rank

        def counting_rank(entry: ReadyEntry) -> int:
            ranked.append(entry.task)
            return rank(entry)

        a.executor.data.rank = counting_rank  # type: ignore[method-assign]
        assert await _one_claim(a) == 1  # the first claim read the spec chunk: ranks changed
        assert await _one_claim(a) == 1
        ranked.clear()
        assert await _one_claim(a) == 1 and ranked == []  # nothing changed: no ranking
        # A chunk arrives in this node's data cache: its task goes first.
        wanted = next(tid for tid in sorted(blobs) if tid not in ran)
        a.executor.data.cache.put(digests[wanted], blobs[wanted])
        assert await _one_claim(a) == 1
        assert ran[-1] == wanted and len(ranked) == 20 - 3, (ran, len(ranked))
        for burial in list(a._burials):
            burial.cancel()

    asyncio.run(go())
