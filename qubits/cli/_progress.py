"""The lines of ``make -v`` and ``run -v``. Not a verb module (not listed in ``_MODULES``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text

from qubits._events import TaskEvent

from ._common import console


def print_event(started: float) -> Callable[[TaskEvent], None]:
    """A printer of a job's events (``make -v``, ``run -v``), each line stamped with seconds since ``started``
    (monotonic), printed above any live progress line."""
    styles = {"claim": "cyan", "takeover": "magenta", "wait": "blue", "wake": "blue", "release": "yellow", "node": "dim"}

    def show(event: TaskEvent) -> None:
        style = styles.get(event.kind, "green" if "succeeded" in event.detail else "red")
        line = Text(f"{time.monotonic() - started:7.1f}s ", style="dim") + Text(event.text(), style=style)
        console.print(line, soft_wrap=True)

    return show
