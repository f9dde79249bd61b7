"""One poller for every open tab: the dashboard reads the jobspace once per interval, whatever the viewers.

A page subscribes to *topics* ("jobs", "nodes", "job/ID", "dag/ID", "log/ID/TASK", "timeline/ID"). The
hub reads each topic that has at least one subscriber once per tick, in a worker thread (the client API
blocks), and hands the same JSON text to every subscriber of it, only when it changed. Five tabs on one
job cost what one costs; a dashboard with no tab open reads nothing. A topic nobody watched for
``LINGER`` seconds is dropped with its reader's caches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio.to_thread

log = logging.getLogger("qubits.dashboard")

LINGER = 30.0
"""Seconds a topic's reader (and its caches: log parts read so far) outlives its last subscriber, so a
page reload does not read everything again."""


class Reader(Protocol):
    """Reads one topic's current value from the jobspace (blocking; called from a worker thread)."""

    def __call__(self, tick: Any) -> dict[str, Any]: ...


@dataclass
class _Topic:
    reader: Reader
    subscribers: set[asyncio.Queue[str | None]] = field(default_factory=set)
    text: str | None = None
    """The last value read, as JSON (None until the first read)."""
    idle_since: float = 0.0


class Hub:
    """Topics, their subscribers and the one loop that refreshes them."""

    def __init__(self, make_reader: Callable[[str], Reader], make_tick: Callable[[], Any], *, interval: float) -> None:
        """``make_reader(topic)`` builds the reader of a topic (ValueError: no such topic);
        ``make_tick()`` a memo shared by the readers of one tick (one status read per job per tick)."""
        self.make_reader = make_reader
        self.make_tick = make_tick
        self.interval = interval
        self.topics: dict[str, _Topic] = {}
        self.ticks = 0
        self._wake = asyncio.Event()

    def subscribe(self, names: list[str]) -> asyncio.Queue[str | None]:
        """A queue that receives SSE frames for ``names`` (ValueError for an unknown topic)."""
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        readers = {name: self.topics[name].reader if name in self.topics else self.make_reader(name) for name in names}
        for name in names:
            topic = self.topics.setdefault(name, _Topic(readers[name]))
            topic.subscribers.add(queue)
            if topic.text is not None:
                queue.put_nowait(frame(name, topic.text))  # the shared snapshot now; no read of its own
            else:
                self._wake.set()
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str | None]) -> None:
        now = time.monotonic()
        for topic in self.topics.values():
            if queue in topic.subscribers:
                topic.subscribers.discard(queue)
                if not topic.subscribers:
                    topic.idle_since = now

    def viewers(self) -> int:
        """Open subscriptions (one per tab)."""
        return len({q for t in self.topics.values() for q in t.subscribers})

    def close(self) -> None:
        """End every open stream (the server is stopping: tabs reconnect to the next one)."""
        for topic in self.topics.values():
            for queue in topic.subscribers:
                queue.put_nowait(None)

    def poke(self) -> None:
        """Read again now (after an action), not at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        """Refresh the watched topics once per interval, forever (cancel to stop)."""
        while True:
            self._wake.clear()
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def tick(self) -> None:
        now = time.monotonic()
        for name in [n for n, t in self.topics.items() if not t.subscribers and now - t.idle_since > LINGER]:
            del self.topics[name]
        watched = {n: t for n, t in self.topics.items() if t.subscribers}
        if not watched:
            return
        self.ticks += 1
        memo = self.make_tick()
        for name, topic in watched.items():
            try:
                value = await anyio.to_thread.run_sync(topic.reader, memo)
            except Exception as exc:  # noqa: BLE001 - one bad topic (a store error, a gone job) must not stop the others
                # The page shows the error; the log says it once per tick at INFO (a page open on a job
                # that was removed would otherwise fill the terminal with warnings).
                log.info("cannot read %s: %s", name, exc, extra={"action": "dashboard_read", "topic": name})
                value = {"error": str(exc)[:500]}
            text = json.dumps(value, sort_keys=True, default=str)
            if text != topic.text:
                topic.text = text
                for queue in list(topic.subscribers):
                    queue.put_nowait(frame(name, text))


def frame(topic: str, text: str) -> str:
    """One server-sent event: its name is the topic, its data the JSON value (one line)."""
    return f"event: {topic}\ndata: {text}\n\n"


async def stream(hub: Hub, queue: asyncio.Queue[str | None], *, keepalive: float = 15.0) -> AsyncIterator[str]:
    """The frames of one subscription, with a comment now and then so proxies keep the connection."""
    try:
        yield ": connected\n\n"
        while True:
            try:
                text = await asyncio.wait_for(queue.get(), keepalive)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if text is None:
                return
            yield text
    finally:
        hub.unsubscribe(queue)
