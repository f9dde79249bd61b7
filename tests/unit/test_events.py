"""Slow motion's watcher (``Job.events``): every run shows its claim before its commit, exactly once."""

from __future__ import annotations

import qubits
from jobspaces._sync import run_sync
from qubits._events import JobEvents
from qubits._protocol import Protocol
from qubits._records import Outcome


def test_a_task_claimed_and_decided_between_two_polls_shows_its_claim_then_its_commit(memory_url: str) -> None:
    client = qubits.connect(memory_url)
    job = client.submit_commands(["true"])
    watcher = JobEvents(client, job.id, nodes=False)
    assert watcher.poll() == []
    (tid, (chunk, spec)), = run_sync(client.specs.all_tasks(job.id)).items()
    proto = Protocol(client.aio, "node-a", ttl=30)

    async def claim_and_commit() -> None:
        claim = await proto.claim(job.id, chunk, spec)
        assert claim is not None
        await proto.commit(claim, Outcome.SUCCEEDED)

    run_sync(claim_and_commit())
    events = watcher.poll()
    assert [(e.kind, e.task, e.node) for e in events] == [("claim", tid, "node-a"), ("commit", tid, "node-a")]
    assert events[0].detail.startswith("attempt 1 of ")
    assert watcher.poll() == []


def test_a_claim_seen_by_a_poll_is_not_shown_again_with_its_commit(memory_url: str) -> None:
    client = qubits.connect(memory_url)
    job = client.submit_commands(["true"])
    watcher = JobEvents(client, job.id, nodes=False)
    (tid, (chunk, spec)), = run_sync(client.specs.all_tasks(job.id)).items()
    proto = Protocol(client.aio, "node-a", ttl=30)
    claim = run_sync(proto.claim(job.id, chunk, spec))
    assert claim is not None
    assert [(e.kind, e.task) for e in watcher.poll()] == [("claim", tid)]
    run_sync(proto.commit(claim, Outcome.SUCCEEDED))
    assert [(e.kind, e.task) for e in watcher.poll()] == [("commit", tid)]
