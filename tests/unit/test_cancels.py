"""The agent's cancel cache alone: a yes is kept for good, a no only while fresh, one HEAD per look."""

from __future__ import annotations

import asyncio

import jobspaces
from jobspaces import CountingJobspace
from nodeagent._cancels import CancelCache
from qubits import _layout as layout


def test_a_no_is_trusted_while_fresh_and_a_yes_for_good(memory_url: str) -> None:
    async def scenario() -> None:
        js = CountingJobspace(jobspaces.open_jobspace(memory_url))
        cache = CancelCache(js)
        assert cache.known("j") is None, "never looked"
        assert await cache.check("j") is False
        heads = js.counts()
        assert await cache.check("j") is False and js.counts() == heads, "a fresh no costs nothing"
        await js.put(layout.cancel("j"), b"{}")
        assert await cache.check("j", max_age=0) is True, "max_age=0 looks again"
        after = js.counts()
        assert cache.known("j", max_age=0) is True and await cache.check("j", max_age=0) is True
        assert js.counts() == after, "a cancel is final: never looked up again"

    asyncio.run(scenario())
