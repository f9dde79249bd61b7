"""A task's output as written: stdout and stderr interleaved in the order the task wrote them (SLURM's
habit), or one stream alone.

An agent uploads what a running task wrote every LOG_FLUSH seconds, as numbered parts of one attempt
(``runs/{job}/{task}/{attempt}/``): ``stdout/{n}`` and ``stderr/{n}`` hold each stream's bytes of flush
``n``, so each stream alone is its parts in name order (what the batch archive and ``pull`` copy). When
a flush holds both streams, ``order/{n}`` says how they interleave: a JSON list of ``[stream, bytes]``
spans in the order they were read from the task's pipes. It is written before the two parts, so a
reader that sees it knows to wait for both.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import jobspaces
from jobspaces import Jobspace

STREAMS = ("stdout", "stderr")
BOTH = "both"
"""Both streams, interleaved as written."""

Frame = tuple[str, bytes]
"""(stream, bytes) as read from a task's pipe."""


def spans(frames: Sequence[Frame]) -> list[tuple[str, int]]:
    """The order of ``frames`` as [stream, length] spans, neighbours of one stream merged."""
    out: list[tuple[str, int]] = []
    for stream, data in frames:
        if not data:
            continue
        if out and out[-1][0] == stream:
            out[-1] = (stream, out[-1][1] + len(data))
        else:
            out.append((stream, len(data)))
    return out


def split(frames: Sequence[Frame]) -> tuple[dict[str, bytes], bytes | None]:
    """One flush's parts: each stream's bytes, and the order object when both streams wrote."""
    parts = {s: b"".join(d for name, d in frames if name == s) for s in STREAMS}
    parts = {s: d for s, d in parts.items() if d}
    order = json.dumps(spans(frames)).encode() if len(parts) > 1 else None
    return parts, order


def interleave(parts: dict[str, bytes], order: bytes | None) -> bytes:
    """Both streams of one flush, in the order they were written (stdout first when unknown)."""
    if order is None:
        return b"".join(parts.get(s, b"") for s in STREAMS)
    try:
        layout = [(str(s), int(n)) for s, n in json.loads(order)]
    except (ValueError, TypeError):
        return b"".join(parts.get(s, b"") for s in STREAMS)
    offsets = dict.fromkeys(STREAMS, 0)
    out = []
    for stream, n in layout:
        data = parts.get(stream, b"")
        out.append(data[offsets.get(stream, 0):offsets.get(stream, 0) + n])
        offsets[stream] = offsets.get(stream, 0) + n
    for stream in STREAMS:  # whatever the order did not cover (a part rewritten after a failed flush)
        out.append(parts.get(stream, b"")[offsets[stream]:])
    return b"".join(out)


@dataclass
class Flush:
    """The objects of one flush of one attempt."""

    keys: dict[str, str] = field(default_factory=dict)
    """'stdout', 'stderr', 'order' -> object key."""

    def ready(self) -> bool:
        """All its parts are there (the order object, written first, names two)."""
        return "order" not in self.keys or all(s in self.keys for s in STREAMS)


def flushes(keys: Iterable[str], prefix: str) -> dict[int, Flush]:
    """The flushes of one attempt, by number, from the keys listed under its ``prefix``."""
    out: dict[int, Flush] = {}
    for key in keys:
        kind, _, n = key[len(prefix):].partition("/")
        if kind in (*STREAMS, "order") and n.isdigit():
            out.setdefault(int(n), Flush()).keys[kind] = key
    return out


def render(flush: Flush, stream: str, read: dict[str, bytes]) -> bytes:
    """One flush's bytes of ``stream`` ('stdout', 'stderr' or BOTH), given its objects' bodies by key."""
    if stream in STREAMS:
        key = flush.keys.get(stream)
        return read.get(key, b"") if key else b""
    parts = {s: read.get(k, b"") for s, k in flush.keys.items() if s in STREAMS}
    order_key = flush.keys.get("order")
    return interleave(parts, read.get(order_key) if order_key else None)


def wanted_keys(flush: Flush, stream: str) -> list[str]:
    """The objects to read for ``stream`` of one flush."""
    if stream in STREAMS:
        return [flush.keys[stream]] if stream in flush.keys else []
    return list(flush.keys.values())


def in_order(found: dict[int, Flush], start: int, *, final: bool) -> Iterator[tuple[int, Flush]]:
    """Flushes from number ``start`` on while each is ready (all of them once the attempt is ``final``)."""
    n = start
    while n in found and (final or found[n].ready()):
        yield n, found[n]
        n += 1
    if final:  # parts of an older agent, numbered per stream: whatever is left, in number order
        for m in sorted(k for k in found if k >= n):
            yield m, found[m]


async def read_attempt(js: Jobspace, prefix: str, stream: str = BOTH, *, keys: Iterable[str] | None = None) -> bytes:
    """The whole output of one attempt (``prefix`` = its ``runs/…/{attempt}/``): ``stream`` alone, or
    both interleaved. ``keys``: the attempt's keys, when listed already."""
    listed = [m.key for m in await js.list_all(prefix)] if keys is None else list(keys)
    found = flushes(listed, prefix)
    chosen = [(fl, wanted_keys(fl, stream)) for _n, fl in in_order(found, 0, final=True)]
    wanted = [k for _fl, ks in chosen for k in ks]
    bodies = dict(zip(wanted, await asyncio.gather(*(_body(js, k) for k in wanted)), strict=True))
    return b"".join(render(fl, stream, bodies) for fl, _ks in chosen)


async def _body(js: Jobspace, key: str) -> bytes:
    try:
        return (await js.get(key))[0]
    except jobspaces.NotFound:
        return b""


def header(task: str, name: str, attempt: int) -> bytes:
    """The line that heads one task's block in the logs of a whole job."""
    shown = f" {name}" if name and name != task else ""
    return f"==> {task}{shown} (attempt {attempt}) <==\n".encode()
