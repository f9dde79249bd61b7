"""A jobspace wrapper that counts requests by kind and by key area, for the benchmark and for operators.

Every raw request the wrapped store receives is counted once, retries included: ``GET``, ``HEAD``,
``PUT`` (plain), ``PUT_CREATE`` (create-only), ``PUT_CAS`` (if-match), ``DELETE`` and ``LIST`` (one per
page of up to 1,000 keys, as S3 pages). A conditional write that loses its condition is also counted as
``412``. The area is the first segment of the key (``ready``, ``leases``, ``done``, ``jobs``, ``nodes``,
``wake``, ``runs`` …), so ``counts()`` reads like ``{"PUT_CREATE leases": 1000, "LIST ready": 1000, …}``.

``qubits agent`` wraps its jobspace in one when ``QUBITS_COUNT_REQUESTS`` names a file, and writes the
counts there as JSON when it exits.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ._base import Jobspace, ObjectMeta
from ._errors import PreconditionFailed

LIST_PAGE_KEYS = 1000
"""Keys per listing request on S3 (and what a listing here is counted in)."""


def _area(key: str) -> str:
    return key.split("/", 1)[0] if key else "-"


class CountingJobspace(Jobspace):
    """Wraps another jobspace and counts the requests made to it (thread-safe)."""

    def __init__(self, inner: Jobspace) -> None:
        super().__init__(inner.timing)
        self.inner = inner
        self.url = inner.url
        self.idle_poll = inner.idle_poll
        self.local_dir = inner.local_dir
        self.min_write_interval = inner.min_write_interval
        self.conditional_writes = inner.conditional_writes
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, kind: str, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[f"{kind} {_area(key)}"] += n

    def counts(self) -> dict[str, int]:
        """Requests so far, by ``"KIND area"``."""
        with self._lock:
            return dict(self._counts)

    def by_kind(self) -> dict[str, int]:
        """Requests so far, by kind only (``412`` is not a request of its own and is left out)."""
        out: Counter[str] = Counter()
        for name, n in self.counts().items():
            kind = name.split(" ", 1)[0]
            if kind != "412":
                out[kind] += n
        return dict(out)

    def total(self) -> int:
        """All requests so far."""
        return sum(self.by_kind().values())

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def dump(self, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> None:
        """Write the counts (and ``extra``) to ``path`` as JSON, atomically."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"counts": self.counts(), **(extra or {})}, sort_keys=True))
        os.replace(tmp, target)

    async def _get(self, key: str) -> tuple[bytes, str]:
        self._count("GET", key)
        return await self.inner._get(key)

    async def _head(self, key: str) -> ObjectMeta:
        self._count("HEAD", key)
        return await self.inner._head(key)

    async def _put(self, key: str, data: bytes, *, if_absent: bool, if_match: str | None) -> str:
        kind = "PUT_CREATE" if if_absent else "PUT_CAS" if if_match is not None else "PUT"
        self._count(kind, key)
        try:
            return await self.inner._put(key, data, if_absent=if_absent, if_match=if_match)
        except PreconditionFailed:
            self._count("412", key)
            raise

    async def _delete(self, key: str) -> None:
        self._count("DELETE", key)
        await self.inner._delete(key)

    async def _list(self, prefix: str, start_after: str | None) -> AsyncIterator[ObjectMeta]:
        self._count("LIST", prefix)
        n = 0
        async for meta in self.inner._list(prefix, start_after):
            if n and n % LIST_PAGE_KEYS == 0:
                self._count("LIST", prefix)  # the next page
            n += 1
            yield meta

    async def close(self) -> None:
        await self.inner.close()
