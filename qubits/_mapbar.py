"""A rich progress bar for a long ``map``, on stderr.

Part of the map front end: ``Map.wait`` loads this module lazily, and only when stderr is a terminal,
so scripts, the core and the agents never pay for rich (the layering test keeps rich out of them).
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


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
            console=Console(stderr=True, highlight=False),
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
