"""Virtual time: an asyncio event loop whose clock jumps to the next timer when every coroutine waits.

``VirtualLoop`` is an ordinary selector event loop with two changes: ``time()`` reads a ``VirtualClock``,
and its selector, asked to block for ``t`` seconds (nothing is ready, the next timer is ``t`` away),
advances the clock by ``t`` instead of sleeping. Every ``asyncio.sleep``, ``wait_for`` and timeout then
runs in virtual time, so 10,000 agents that mostly wait on simulated requests cost only the CPU of what
they compute. A loop with no timer and nothing ready is stalled for good: it raises instead of hanging.

The qubits code reads ``time.monotonic()`` and ``time.time()`` directly (lease silence, renewal
deadlines, retry budgets). ``patched_time(clock)`` swaps the ``time`` module bound in the modules on the
claim path (``qubits.*``, ``nodeagent.*``, ``jobspaces.*``, ``tenacity``) for a shim reading the virtual
clock, and restores it on exit. Nothing else in the process is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import sys
import time as _real_time
from collections.abc import Iterator
from typing import Any

MONOTONIC_START = 100_000.0
"""The virtual monotonic clock starts here (a real one is large too: code may compare with 0.0)."""
WALL_START = 1_767_225_600.0
"""The virtual wall clock starts at 2026-01-01 00:00 UTC (fixed, so runs are reproducible)."""
PATCHED_PACKAGES = ("qubits", "nodeagent", "jobspaces", "tenacity")


class VirtualClock:
    """Simulated seconds; only the event loop advances it."""

    def __init__(self) -> None:
        self.now = MONOTONIC_START

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self.now += seconds

    def wall(self) -> float:
        return WALL_START + (self.now - MONOTONIC_START)

    def elapsed(self) -> float:
        """Virtual seconds since the clock was made."""
        return self.now - MONOTONIC_START


class Stalled(RuntimeError):
    """Every coroutine waits and no timer is set: in virtual time nothing can ever happen again."""


class _JumpSelector(selectors.SelectSelector):
    """Polls its file descriptors without blocking; a wait for ``t`` seconds jumps the clock instead."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock
        self._calls = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # Only the loop's self-pipe is registered (signals, call_soon_threadsafe): a system call on
        # every turn of the loop would cost more than the turn, so poll it now and then.
        self._calls += 1
        ready = super().select(0) if timeout is None or self._calls % 64 == 0 else []
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise Stalled("every coroutine waits and no timer is set (a deadlock in virtual time)")
        self.clock.advance(timeout)
        return ready


class VirtualLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on a virtual clock (see the module docstring)."""

    def __init__(self, clock: VirtualClock | None = None) -> None:
        self.clock = clock or VirtualClock()
        super().__init__(_JumpSelector(self.clock))

    def time(self) -> float:
        return self.clock.now


class _TimeShim:
    """Stands in for the ``time`` module: the clocks read virtual time, everything else is real."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock

    def monotonic(self) -> float:
        return self._clock.now

    perf_counter = monotonic

    def time(self) -> float:
        return self._clock.wall()

    def monotonic_ns(self) -> int:
        return int(self._clock.now * 1e9)

    perf_counter_ns = monotonic_ns

    def time_ns(self) -> int:
        return int(self._clock.wall() * 1e9)

    def sleep(self, seconds: float) -> None:
        raise RuntimeError("time.sleep() would block the whole simulation: use asyncio.sleep()")

    def __getattr__(self, name: str) -> Any:
        return getattr(_real_time, name)


@contextlib.contextmanager
def patched_time(clock: VirtualClock) -> Iterator[int]:
    """Point ``time`` in every loaded module of the claim path at ``clock``; yields how many were patched."""
    shim = _TimeShim(clock)
    patched: list[Any] = []
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".", 1)[0] not in PATCHED_PACKAGES:
            continue
        if getattr(module, "time", None) is _real_time:
            setattr(module, "time", shim)  # noqa: B010
            patched.append(module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            setattr(module, "time", _real_time)  # noqa: B010


def run_virtual(coro: Any, clock: VirtualClock | None = None) -> Any:
    """Run ``coro`` to completion on a fresh VirtualLoop with the claim path's clocks patched."""
    loop = VirtualLoop(clock)
    try:
        with patched_time(loop.clock):
            return loop.run_until_complete(coro)
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
