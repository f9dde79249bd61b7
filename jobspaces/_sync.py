"""Blocking use of an async jobspace, for the embedded API, notebooks and scripts.

Coroutines run on one private event-loop thread per process, so this works from code that has its own
running loop (a notebook) as well as from plain scripts.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._base import Jobspace, ObjectMeta
from ._inflight import CountingLoop

T = TypeVar("T")
_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """The process's private event loop, started on first use in a daemon thread."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = CountingLoop()  # at exit, waited for until no obstore thread is inside it (see _inflight)
            threading.Thread(target=loop.run_forever, name="qubits-io", daemon=True).start()
            _loop = loop
        return _loop


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the background loop and wait for its result."""
    loop = background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("run_sync called from the qubits I/O loop itself; await the coroutine instead")
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


class SyncJobspace:
    """The same operations as Jobspace, blocking."""

    def __init__(self, jobspace: Jobspace) -> None:
        self.aio = jobspace

    @property
    def url(self) -> str:
        return self.aio.url

    def get(self, key: str) -> tuple[bytes, str]:
        return run_sync(self.aio.get(key))

    def head(self, key: str) -> ObjectMeta:
        return run_sync(self.aio.head(key))

    def exists(self, key: str) -> bool:
        return run_sync(self.aio.exists(key))

    def put(self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> str:
        return run_sync(self.aio.put(key, data, if_absent=if_absent, if_match=if_match))

    def delete(self, key: str) -> None:
        run_sync(self.aio.delete(key))

    def list(self, prefix: str = "", *, start_after: str | None = None, limit: int | None = None) -> list[ObjectMeta]:
        return run_sync(self.aio.list_all(prefix, start_after=start_after, limit=limit))

    def close(self) -> None:
        run_sync(self.aio.close())

    def __repr__(self) -> str:
        return f"<SyncJobspace {self.aio.url}>"
