"""A rich progress bar for a long ``map`` (on stderr), and the lines of ``make -v`` and ``run -v``.

It lives in the CLI package because the CLI is the only place that imports rich; ``Map.wait`` loads
this module lazily, and only when stderr is a terminal, so scripts and agents never pay for rich.
Not a verb module (not listed in ``_MODULES``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from qubits._events import TaskEvent

from ._common import console


class MapProgress:
    """A bar of decided tasks, with failures and cancellations counted beside it."""

    def __init__(self, job: str, where: str, total: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task(f"map {job}", total=total, extra="")
        self._progress.start()

    def update(self, done: int, counts: dict[str, int]) -> None:
        bad = {k: v for k, v in counts.items() if k != "succeeded" and v}
        extra = ", ".join(f"[red]{v} {k}[/]" for k, v in sorted(bad.items()))
        self._progress.update(self._task, completed=done, extra=extra)

    def close(self) -> None:
        self._progress.stop()


def print_event(started: float) -> Callable[[TaskEvent], None]:
    """A printer of a job's events (``make -v``, ``run -v``), each line stamped with seconds since ``started``
    (monotonic), printed above any live progress line."""
    styles = {"claim": "cyan", "takeover": "magenta", "wait": "blue", "wake": "blue", "release": "yellow", "node": "dim"}

    def show(event: TaskEvent) -> None:
        style = styles.get(event.kind, "green" if "succeeded" in event.detail else "red")
        line = Text(f"{time.monotonic() - started:7.1f}s ", style="dim") + Text(event.text(), style=style)
        console.print(line, soft_wrap=True)

    return show
