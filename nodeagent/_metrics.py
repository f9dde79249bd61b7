"""The agent's metrics in the Prometheus text format: served on 127.0.0.1 or written as a textfile.

``qubits agent --metrics-port 9464`` serves ``GET /metrics`` on 127.0.0.1 only (put a scraper on the
node, or a proxy in front); ``--metrics-textfile /var/lib/node_exporter/textfile/qubits.prom`` writes
the same text for node_exporter's textfile collector, atomically (a temporary file renamed over it)
every few seconds and once more when the agent stops. No dependency: the format is a few lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from qubits.protocol import __version__

if TYPE_CHECKING:
    from ._agent import Agent

log = logging.getLogger("qubits.agent")
T = TypeVar("T")

TEXTFILE_INTERVAL = 5.0
"""Seconds between rewrites of the metrics textfile."""

COUNTERS = {
    "claims": "Tasks this agent claimed (new leases and released ones it took).",
    "conflicts": "Claims lost to another agent (the lease existed or its ETag changed first).",
    "takeovers": "Tasks taken over from an agent that stopped renewing its lease.",
    "renewals": "Lease renewals that succeeded.",
    "renew_errors": "Lease renewals that failed with a store error (retried within the ttl).",
    "commits": "Tasks this agent decided (any outcome).",
    "succeeded": "Tasks this agent committed as succeeded.",
    "failures": "Tasks this agent committed as failed (attempts used up, or a final error).",
    "cancelled": "Tasks this agent committed as cancelled.",
    "retries": "Failed attempts released for another try.",
    "lost": "Leases lost while running (not renewed in time, or taken over): the task was stopped.",
    "quarantined": "Tasks set aside because their spec could not be read.",
    "list": "Listings of the ready index and the leases.",
}
"""Agent.counters that are exported, with their help text (others are exported without one)."""


class Histogram:
    """A Prometheus histogram (cumulative buckets, sum, count) of seconds."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.counts = [0] * len(self.BUCKETS)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.n += 1
        self.total += seconds
        for i, bound in enumerate(self.BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1

    async def time(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` and observe how long it took (also when it raises)."""
        started = time.monotonic()
        try:
            return await awaitable
        finally:
            self.observe(time.monotonic() - started)

    def lines(self, name: str, labels: str) -> list[str]:
        out = [f'{name}_bucket{{{labels},le="{b:g}"}} {c}' for b, c in zip(self.BUCKETS, self.counts, strict=True)]
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.n}')
        out.append(f"{name}_sum{{{labels}}} {self.total:.6f}")
        out.append(f"{name}_count{{{labels}}} {self.n}")
        return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(agent: Agent) -> str:
    """The agent's metrics as Prometheus text (exposition format 0.0.4)."""
    labels = f'node="{_escape(agent.config.name)}"'
    lines = [
        "# HELP qubits_agent_info The agent: its qubits version.",
        "# TYPE qubits_agent_info gauge",
        f'qubits_agent_info{{{labels},version="{_escape(__version__)}"}} 1',
    ]
    names = sorted(set(COUNTERS) | set(agent.counters))
    for name in names:
        metric = f"qubits_agent_{name}_total"
        if name in COUNTERS:
            lines.append(f"# HELP {metric} {COUNTERS[name]}")
        lines.append(f"# TYPE {metric} counter")
        lines.append(f"{metric}{{{labels}}} {agent.counters.get(name, 0)}")
    gauges = {
        "running_tasks": ("Tasks running now.", len(agent.running)),
        "slots": ("Tasks this agent runs at once.", agent.config.slots),
        "paused": ("1 while the agent's tasks are paused.", int(agent.control.paused)),
        "draining": ("1 once the agent stopped claiming (SIGTERM).", int(agent.draining)),
        "start_time_seconds": ("When the agent started (Unix time).", round(agent._started, 3)),
    }
    for name, (text, value) in gauges.items():
        lines += [f"# HELP qubits_agent_{name} {text}", f"# TYPE qubits_agent_{name} gauge", f"qubits_agent_{name}{{{labels}}} {value!r}"]
    lines += ["# HELP qubits_agent_renew_seconds Time a lease renewal (a conditional write) took.",
              "# TYPE qubits_agent_renew_seconds histogram"]
    lines += agent.renew_seconds.lines("qubits_agent_renew_seconds", labels)
    return "\n".join(lines) + "\n"


async def serve(agent: Agent, port: int, host: str = "127.0.0.1") -> asyncio.Server:
    """Serve ``GET /metrics`` on ``host:port`` (loopback by default)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
            if path.split(b"?")[0] in (b"/metrics", b"/"):
                status, body, kind = "200 OK", render(agent).encode(), "text/plain; version=0.0.4; charset=utf-8"
            else:
                status, body, kind = "404 Not Found", b"see /metrics\n", "text/plain"
            head = f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port)
    bound = server.sockets[0].getsockname()[1]
    log.info("metrics on http://%s:%d/metrics", host, bound, extra={"action": "metrics", "node": agent.config.name})
    return server


def write_textfile(agent: Agent, path: Path) -> None:
    """Write the metrics to ``path`` atomically (node_exporter must never read half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render(agent))
    os.replace(tmp, path)


async def run_with_metrics(agent: Agent, port: int | None, textfile: Path | None) -> int:
    """``agent.run()`` with its metrics served and/or written while it runs."""
    server = await serve(agent, port) if port is not None else None
    writer: asyncio.Task[None] | None = None
    if textfile is not None:

        async def keep_writing() -> None:
            while True:
                write_textfile(agent, textfile)
                await asyncio.sleep(TEXTFILE_INTERVAL)

        writer = asyncio.create_task(keep_writing())
    try:
        return await agent.run()
    finally:
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            with contextlib.suppress(OSError):
                write_textfile(agent, textfile)  # type: ignore[arg-type]
        if server is not None:
            server.close()
            await server.wait_closed()

