"""A jobspace wrapper that injects faults, for protocol and chaos tests.

Each fault kind has a probability; every injected fault is counted by kind. ``landed_but_failed`` is the
nastiest: the write is applied, then an error is reported, as when a response is lost after the store
committed the write.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ._base import Jobspace, ObjectMeta
from ._errors import AmbiguousWrite, TransientError


@dataclass
class Faults:
    """Probabilities (0..1) of each fault per request, and the latency added to every request."""

    error_5xx: float = 0.0
    slow_down_503: float = 0.0
    conflict_409: float = 0.0
    timeout: float = 0.0
    landed_but_failed: float = 0.0
    latency: tuple[float, float] = (0.0, 0.0)
    """Seconds added to each request, uniform between the two bounds."""
    seed: int | None = None
    injected: Counter[str] = field(default_factory=Counter)


class FaultyJobspace(Jobspace):
    """Wraps another jobspace and makes it misbehave as ``faults`` says."""

    def __init__(self, inner: Jobspace, faults: Faults) -> None:
        super().__init__(inner.timing)
        self.inner = inner
        self.faults = faults
        self.url = inner.url
        self.idle_poll = inner.idle_poll
        self.local_dir = inner.local_dir
        self.min_write_interval = inner.min_write_interval
        self._rng = random.Random(faults.seed)

    async def _before(self, key: str, write: bool) -> None:
        f = self.faults
        lo, hi = f.latency
        if hi > 0:
            await asyncio.sleep(self._rng.uniform(lo, hi))
        roll = self._rng.random()
        for kind, p in (("5xx", f.error_5xx), ("503", f.slow_down_503), ("409", f.conflict_409), ("timeout", f.timeout)):
            if roll < p:
                f.injected[kind] += 1
                if kind == "timeout":
                    await asyncio.sleep(min(0.05, self.timing.request_timeout))
                raise TransientError(f"injected fault: {kind}", key=key)
            roll -= p

    async def _get(self, key: str) -> tuple[bytes, str]:
        await self._before(key, False)
        return await self.inner._get(key)

    async def _head(self, key: str) -> ObjectMeta:
        await self._before(key, False)
        return await self.inner._head(key)

    async def _put(self, key: str, data: bytes, *, if_absent: bool, if_match: str | None) -> str:
        await self._before(key, True)
        etag = await self.inner._put(key, data, if_absent=if_absent, if_match=if_match)
        if self._rng.random() < self.faults.landed_but_failed:
            self.faults.injected["landed_but_failed"] += 1
            raise AmbiguousWrite("injected fault: the write landed but the answer was lost", key=key)
        return etag

    async def _delete(self, key: str) -> None:
        await self._before(key, True)
        await self.inner._delete(key)

    async def _list(self, prefix: str, start_after: str | None) -> AsyncIterator[ObjectMeta]:
        await self._before(prefix, False)
        async for meta in self.inner._list(prefix, start_after):
            yield meta

    async def close(self) -> None:
        await self.inner.close()
