"""Requests obstore still owes Python, and the wait for them at exit.

obstore runs each request on a Tokio thread, which hands the answer back by calling into Python
(``loop.call_soon_threadsafe``). If that happens while the interpreter tears down, the thread is told
to exit inside Rust frames and the process dies of SIGABRT after the program's work is done — in a
user's own script (``connect(s3).submit_commands(...).wait()`` aborted in about 3% of runs: a deferred
write was still in flight), where ``qubits._exit.leave`` cannot be imposed.

So every obstore call goes through :func:`settled`: the call's future is shielded (cancelling the
awaiting coroutine, a timeout say, leaves it to finish) and recorded until it is done; and an ``atexit``
hook, registered by the first call, waits — while the interpreter is whole — until every recorded call
has been answered or its deadline (the request timeout, after which obstore gives up on it) has passed.

An answered future is not yet the end: the Tokio thread is still inside ``call_soon_threadsafe``, whose
write to the loop's self-pipe lets go of the GIL and must take it again. The process's private loop
(``jobspaces._sync``) therefore counts the calls inside its ``call_soon_threadsafe``
(:class:`CountingLoop`), and the hook waits for that count to reach zero too: then no thread of
obstore's is left that must take the GIL (it was measured: 6 aborts in 200 scripts before, see
tests/integration/test_exit_abort.py).
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

EXIT_WAIT_MAX = 30.0
"""The longest the exit hook waits for calls in flight (each is bounded by its own deadline first)."""

_calls: dict[int, tuple[asyncio.Future[Any], float]] = {}
_lock = threading.Lock()
_hooked = False
_handing_back = 0


class CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that knows when another thread is inside its ``call_soon_threadsafe``."""

    def call_soon_threadsafe(  # type: ignore[override]  # the same call, typed loosely: it only counts
        self, callback: Any, *args: Any, context: Any = None
    ) -> asyncio.Handle:
        global _handing_back
        with _lock:
            _handing_back += 1
        try:
            return super().call_soon_threadsafe(callback, *args, context=context)
        finally:
            with _lock:
                _handing_back -= 1


def _forget(future: asyncio.Future[Any]) -> None:
    with _lock:
        _calls.pop(id(future), None)


async def settled(call: Awaitable[T], deadline: float) -> T:
    """Await obstore's ``call``; it stays recorded until obstore answered it, even if we stop waiting.
    ``deadline``: seconds after which obstore has given up on it (its client timeouts)."""
    global _hooked
    future: asyncio.Future[T] = asyncio.ensure_future(call)
    with _lock:
        _calls[id(future)] = (future, time.monotonic() + deadline)
        if not _hooked:
            _hooked = True
            atexit.register(wait_for_calls)
    future.add_done_callback(_forget)
    return await asyncio.shield(future)


def in_flight() -> int:
    """Calls not answered yet whose deadline has not passed, and answers still being handed back."""
    now = time.monotonic()
    with _lock:
        return _handing_back + sum(1 for future, deadline in _calls.values() if not future.done() and now < deadline)


def wait_for_calls(limit: float = EXIT_WAIT_MAX) -> None:
    """Block until no obstore call is owed an answer (or ``limit`` seconds): run at exit."""
    end = time.monotonic() + limit
    while in_flight() and time.monotonic() < end:
        time.sleep(0.005)
