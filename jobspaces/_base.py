"""The Jobspace interface: a tiny object store with its conditions in the signatures.

Backends implement five raw operations (``_get``, ``_head``, ``_put``, ``_delete``, ``_list``); this
class adds what every backend must share: key validation, bounded retries with backoff and jitter for
transient faults, and the resolution of ambiguous conditional writes by reading the object back.
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import tenacity

from ._errors import AmbiguousWrite, InvalidKey, NotFound, PreconditionFailed, TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class ObjectMeta:
    """What a listing or a head says about one object."""

    key: str
    etag: str
    size: int
    mtime: float
    """Last modification, seconds since the epoch (the store's clock; for display only)."""


@dataclass(frozen=True)
class Timing:
    """How long a coordination call may take, so that none can outlive a lease."""

    request_timeout: float = 5.0
    """Seconds one request may take before it counts as failed."""
    budget: float = 10.0
    """Seconds a call may spend in all, retries included."""
    max_attempts: int = 8
    """Attempts per call at most, the first included."""


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid relative key, else raise InvalidKey."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidKey(key=key)
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKey(key=key)
    return key


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is empty or a valid key prefix (it may end with '/')."""
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


class Jobspace(abc.ABC):
    """An object store used as the only shared state of a qubits cluster.

    Conditional writes are native: ``put(..., if_absent=True)`` creates only, ``put(..., if_match=etag)``
    replaces only the version named; a lost condition raises PreconditionFailed and never overwrites.
    ETags are opaque tokens: pass back exactly what ``get``/``head``/``put``/``list`` returned.
    """

    url: str = ""
    """The URL this jobspace was opened from, with its options (endpoint, region …) and without credentials."""
    open_url: str = ""
    """The whole URL it was opened from, credentials included when the URL carried them: what another
    process needs to open the same jobspace. Hand it on in the environment (``QUBITS_JOBSPACE``), never
    on a command line or in an object; see ``handoff``."""
    idle_poll: tuple[float, float] = (0.5, 60.0)
    """Shortest and longest pause, in seconds, between an idle agent's polls of this store. On object
    stores the longest is a minute: every request is billed, and wake hints, not polling, carry the
    latency (an idle agent makes under 100 requests an hour)."""
    local_dir: Path | None = None
    """The directory holding the objects, for a store on this host's file system (kernel file
    notifications can wake agents); None for remote stores."""
    conditional_writes: bool = True
    """False for stores that cannot do create-only and compare-and-swap (never used for leases)."""
    min_write_interval: float = 0.0
    """Seconds the store wants between two writes of one object (GCS: one write per second per object,
    429 past it); writers of one mutable object space their writes by this much."""

    def __init__(self, timing: Timing | None = None) -> None:
        self.timing = timing or Timing()

    def handoff(self) -> dict[str, str]:
        """The environment that opens this same jobspace in another process (``QUBITS_JOBSPACE``)."""
        return {"QUBITS_JOBSPACE": self.open_url or self.url}

    # -- the raw operations a backend provides ---------------------------------------------------
    @abc.abstractmethod
    async def _get(self, key: str) -> tuple[bytes, str]: ...

    @abc.abstractmethod
    async def _head(self, key: str) -> ObjectMeta: ...

    @abc.abstractmethod
    async def _put(self, key: str, data: bytes, *, if_absent: bool, if_match: str | None) -> str: ...

    @abc.abstractmethod
    async def _delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def _list(self, prefix: str, start_after: str | None) -> AsyncIterator[ObjectMeta]:
        """Yield the objects whose key starts with ``prefix`` and sorts after ``start_after``, in key order."""

    async def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release connections; the jobspace may not be used afterwards."""

    # -- the public interface ---------------------------------------------------------------------
    async def _retry(self, op: Callable[[], Awaitable[T]]) -> T:
        """``op()``, tried again on TransientError with jittered exponential backoff: at most
        ``timing.max_attempts`` tries within ``timing.budget`` seconds.

        The first try runs outside tenacity: nearly every call succeeds at once, and a retry controller
        built for each of them was a tenth of an agent's CPU per task (py-spy, bench/sim)."""
        started = time.monotonic()
        try:
            return await op()
        except TransientError:
            if self.timing.max_attempts <= 1 or time.monotonic() - started >= self.timing.budget:
                raise
        # tenacity counts our retries from 1: the waits are those of tries 2, 3, ... (the multiplier
        # doubled), and the first of them comes before tenacity's loop, which starts with a try.
        await asyncio.sleep(random.uniform(0, min(2.0, 0.1)))
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(TransientError),
            stop=tenacity.stop_after_delay(max(0.0, self.timing.budget - (time.monotonic() - started)))
            | tenacity.stop_after_attempt(self.timing.max_attempts - 1),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=2.0),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await op()
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, key: str) -> tuple[bytes, str]:
        """Return the object's bytes and ETag; raise NotFound."""
        check_key(key)
        return await self._retry(lambda: self._get(key))

    async def head(self, key: str) -> ObjectMeta:
        """Return the object's metadata; raise NotFound."""
        check_key(key)
        return await self._retry(lambda: self._head(key))

    async def exists(self, key: str) -> bool:
        """Whether the object exists."""
        try:
            await self.head(key)
        except NotFound:
            return False
        return True

    async def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        """Write ``data`` at ``key`` and return the new ETag.

        ``if_absent``: only if no object exists. ``if_match``: only if the current ETag is this one.
        A lost condition raises PreconditionFailed. A write whose outcome stayed unknown after the
        retries raises AmbiguousWrite; the caller reads the object to settle it.
        """
        check_key(key)
        if if_absent and if_match is not None:
            raise ValueError("if_absent and if_match exclude each other")
        data = bytes(data)
        conditional = if_absent or if_match is not None
        maybe_landed = False
        started = time.monotonic()

        async def attempt() -> str:
            nonlocal maybe_landed
            try:
                return await self._put(key, data, if_absent=if_absent, if_match=if_match)
            except AmbiguousWrite:
                maybe_landed = True
                raise

        try:
            return await self._retry(attempt)
        except PreconditionFailed:
            # After an attempt whose answer was lost, a 412 may be our own first write that landed:
            # the body says whose it is (every mutable object carries a unique nonce).
            if conditional and maybe_landed:
                etag = await self._settle(key, data)
                if etag is not None:
                    return etag
            raise
        except TransientError as exc:
            if conditional and maybe_landed:
                etag = await self._settle(key, data)
                if etag is not None:
                    return etag
                raise AmbiguousWrite(
                    f"write of {key!r} may have landed; the store kept failing for "
                    f"{time.monotonic() - started:.1f}s: {exc}",
                    key=key,
                ) from exc
            raise

    async def _settle(self, key: str, data: bytes) -> str | None:
        """The ETag of ``key`` if it holds exactly ``data`` (our write landed), else None."""
        try:
            body, etag = await self.get(key)
        except (NotFound, TransientError):
            return None
        return etag if body == data else None

    async def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error."""
        check_key(key)

        async def attempt() -> None:
            with contextlib.suppress(NotFound):
                await self._delete(key)

        await self._retry(attempt)

    async def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[ObjectMeta]:
        """Yield objects whose key starts with ``prefix`` (a plain string prefix), in key order.

        ``start_after`` skips keys up to and including it; ``limit`` stops after that many.
        """
        check_prefix(prefix)
        count = 0
        last = start_after
        failures = 0
        deadline = time.monotonic() + self.timing.budget
        while True:
            try:
                # A page that fails is retried from the last key already yielded.
                async for meta in self._list(prefix, last):
                    if limit is not None and count >= limit:
                        return
                    yield meta
                    count += 1
                    last = meta.key
                    if limit is not None and count >= limit:
                        return  # before the next item: it could cost a request for another page
                return
            except TransientError:
                failures += 1
                if failures >= self.timing.max_attempts or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(random.uniform(0, min(2.0, 0.05 * 2**failures)))

    async def list_all(
        self, prefix: str = "", *, start_after: str | None = None, limit: int | None = None
    ) -> builtins.list[ObjectMeta]:
        """The listing as a list."""
        return [m async for m in self.list(prefix, start_after=start_after, limit=limit)]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"
