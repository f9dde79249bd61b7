"""The parts of a task's output (qubits/_logs.py) and how a running task hands them over (nodeagent/_process.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nodeagent._process import TaskProcess
from qubits._logs import BOTH, flushes, in_order, interleave, render, split


def test_a_flush_of_both_streams_keeps_their_order_and_each_stream_alone() -> None:
    frames = [("stdout", b"a\n"), ("stderr", b"E\n"), ("stdout", b"b\n"), ("stdout", b"c\n")]
    parts, order = split(frames)
    assert parts == {"stdout": b"a\nb\nc\n", "stderr": b"E\n"} and order is not None
    assert interleave(parts, order) == b"a\nE\nb\nc\n"
    assert split([("stdout", b"x")]) == ({"stdout": b"x"}, None), "one stream: no order object"
    # A reader that sees an order object waits for both parts; older agents' parts are read in number order.
    p = "runs/j/t/1/"
    found = flushes([f"{p}order/000000", f"{p}stdout/000000", f"{p}stdout/000001", f"{p}out/x"], p)
    assert list(in_order(found, 0, final=False)) == []
    assert [n for n, _ in in_order(found, 0, final=True)] == [0, 1]
    bodies = {f"{p}stdout/000000": b"a\n", f"{p}stderr/000000": b"E\n", f"{p}order/000000": order}
    found = flushes(bodies, p)
    assert render(found[0], BOTH, bodies) == b"a\nE\n" and render(found[0], "stderr", bodies) == b"E\n"


def test_a_failed_upload_is_sent_again_whole_and_in_order(tmp_path: Path) -> None:
    sent: list[list[tuple[str, bytes]]] = []
    fail = [True]

    async def sink(frames: list[tuple[str, bytes]]) -> None:
        if fail[0]:
            fail[0] = False
            raise OSError("the store said 503")
        sent.append(frames)

    async def main() -> int:
        proc = TaskProcess(["/bin/sh", "-c", "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three"],
                           cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, sink=sink, flush_every=0.3)
        await proc.start()
        return await proc.wait()

    assert asyncio.run(main()) == 0
    everything = [f for flush in sent for f in flush]
    assert b"".join(d for _s, d in everything) == b"one\ntwo\nthree\n"
    assert [s for s, _d in everything] == ["stdout", "stderr", "stdout"]
