"""How a jobspace call retries a store that fails now and then: the tries, the budget, the ambiguity."""

from __future__ import annotations

import asyncio
import time

import pytest

from jobspaces import AmbiguousWrite, MemoryJobspace, Timing, TransientError


class Flaky(MemoryJobspace):
    """A memory jobspace whose next ``fail`` requests raise TransientError (or whatever ``error`` makes)."""

    def __init__(self, name: str, timing: Timing, fail: int, error: type[TransientError] = TransientError) -> None:
        super().__init__(name, timing)
        self.fail, self.error, self.tries = fail, error, 0

    def _trip(self) -> None:
        self.tries += 1
        if self.fail > 0:
            self.fail -= 1
            raise self.error("the store said 503")

    async def _get(self, key: str) -> tuple[bytes, str]:
        self._trip()
        return await super()._get(key)

    async def _put(self, key: str, data: bytes, *, if_absent: bool, if_match: str | None) -> str:
        try:
            self._trip()
        except AmbiguousWrite:
            await super()._put(key, data, if_absent=if_absent, if_match=if_match)  # it landed; the answer was lost
            raise
        return await super()._put(key, data, if_absent=if_absent, if_match=if_match)


def test_a_call_succeeds_after_transient_failures_and_gives_up_after_max_attempts() -> None:
    timing = Timing(budget=30.0, max_attempts=4)
    ok = Flaky("retry-ok", timing, fail=3)
    asyncio.run(MemoryJobspace("retry-ok").put("k", b"v"))
    assert asyncio.run(ok.get("k"))[0] == b"v"
    assert ok.tries == 4  # three failures, then the fourth and last allowed try

    broken = Flaky("retry-broken", timing, fail=10)
    with pytest.raises(TransientError):
        asyncio.run(broken.get("k"))
    assert broken.tries == 4  # never more than max_attempts


def test_one_attempt_means_no_retry_and_the_budget_bounds_the_retries() -> None:
    once = Flaky("retry-once", Timing(budget=30.0, max_attempts=1), fail=1)
    with pytest.raises(TransientError):
        asyncio.run(once.get("k"))
    assert once.tries == 1

    slow = Flaky("retry-budget", Timing(budget=0.3, max_attempts=1000), fail=10_000)
    started = time.monotonic()
    with pytest.raises(TransientError):
        asyncio.run(slow.get("k"))
    assert time.monotonic() - started < 0.3 + 2.5  # the budget, plus at most one backoff (2 s) past it
    assert 1 < slow.tries < 1000


def test_an_ambiguous_create_that_landed_is_settled_as_ours_after_the_retry_sees_412() -> None:
    js = Flaky("retry-ambiguous", Timing(budget=30.0, max_attempts=4), fail=1, error=AmbiguousWrite)
    etag = asyncio.run(js.put("lease", b"mine", if_absent=True))
    assert asyncio.run(MemoryJobspace("retry-ambiguous").get("lease")) == (b"mine", etag)
    assert js.tries == 3  # the ambiguous try, the retry that met our own object (412), the read that settled it
