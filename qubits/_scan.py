"""Finding work without scanning the jobspace: the ready index, and the lease scan for takeovers.

The ready index is sharded by a hash of the task; an agent reads one page (LIST_PAGE keys) starting at
a random shard when the queue is large, so agents spread over the key space instead of all fighting
for the same first task. Entries are hints: every claim is decided by the lease write.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import NamedTuple

import jobspaces
from jobspaces import Jobspace

from . import _layout as layout
from ._defaults import LIST_PAGE, READY_SHARDS


class ReadyEntry(NamedTuple):
    """One ready-index entry (a tuple: an agent makes a thousand from each page it lists)."""

    key: str
    job: str
    chunk: str
    task: str
    priority: int
    not_before: int


class ReadyIndex:
    """Reads pages of the ready index."""

    def __init__(self, js: Jobspace) -> None:
        self.js = js
        self._last_full = False

    async def page(self, limit: int = LIST_PAGE) -> list[ReadyEntry]:
        """Up to ``limit`` entries, from a random shard when the index is larger than a page."""
        keys: list[str] = []
        if self._last_full:
            start = layout.ready_shard_prefix(random.randrange(READY_SHARDS))
            keys = [m.key async for m in self.js.list("ready/", start_after=start, limit=limit)]
            if len(keys) < limit:
                keys += [
                    m.key
                    async for m in self.js.list("ready/", limit=limit - len(keys))
                    if m.key <= start
                ]
        else:
            keys = [m.key async for m in self.js.list("ready/", limit=limit)]
        self._last_full = len(keys) >= limit
        entries = []
        for key in keys:
            try:
                prio, job, chunk, task, nb = layout.parse_ready(key)
            except ValueError:
                continue  # not ours; never fatal
            entries.append(ReadyEntry(key, job, chunk, task, prio, nb))
        return entries


async def live_leases(js: Jobspace, job: str | None = None) -> AsyncIterator[jobspaces.ObjectMeta]:
    """Every lease object (of one job, or of all): running, released, parked, or left by the dead."""
    async for meta in js.list(layout.lease_prefix(job)):
        yield meta
