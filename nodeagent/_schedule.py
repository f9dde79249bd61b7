"""The agent's side of periodic submission: read the schedules now and then, fire the ticks that are due.

Firing is one create-only write per tick (``qubits._schedule.fire``): every agent may try, one wins, so a
tick is submitted once however many agents run. The agent's loop asks ``run()`` each turn and sleeps no
longer than the seconds it returns.
"""

from __future__ import annotations

import logging
import math
import time

import jobspaces
from jobspaces import Jobspace
from qubits.errors import QubitsError
from qubits.protocol import SCHEDULE_REFRESH, Schedule, due, fire, list_schedules

log = logging.getLogger("qubits.agent")


class Scheduler:
    """Fires the due ticks of the jobspace's schedules for one agent."""

    def __init__(self, js: Jobspace, node: str, quiet_refresh: float = SCHEDULE_REFRESH) -> None:
        self.js = js
        self.node = node
        self.quiet_refresh = max(quiet_refresh, SCHEDULE_REFRESH)
        """Seconds between readings while the jobspace has no schedule (an idle fleet's cost: adding a
        schedule wakes the agents, which then read at once; see ``poke``)."""
        self.schedules: list[Schedule] = []
        self._read_at = -math.inf
        self._poked = False
        self._tried: dict[str, float] = {}

    def poke(self) -> None:
        """The agent was woken (a submit, or a schedule added): read the schedules again within
        SCHEDULE_REFRESH, not within ``quiet_refresh``."""
        self._poked = True

    @property
    def refresh(self) -> float:
        """Seconds between two readings of the schedules now."""
        return SCHEDULE_REFRESH if self.schedules or self._poked else self.quiet_refresh

    async def run(self) -> float:
        """Fire what is due now; the seconds until the next tick or the next reading of the schedules.
        A failure here is logged and tried again later: schedules never stop the agent's other work."""
        try:
            return await self._run()
        except (jobspaces.JobspaceError, QubitsError, ValueError) as exc:
            log.warning("schedules: %s", exc, exc_info=True, extra={"action": "schedule", "node": self.node})
            return min(SCHEDULE_REFRESH, 5.0)

    async def _run(self) -> float:
        mono = time.monotonic()
        if mono - self._read_at >= self.refresh:
            self.schedules = await list_schedules(self.js)
            self._read_at, self._poked = mono, False
        wait = self.refresh - (mono - self._read_at)
        now = time.time()
        for schedule in self.schedules:
            tick = due(schedule, now)
            if tick is not None and self._tried.get(schedule.name, -math.inf) < tick:
                self._tried[schedule.name] = tick  # tried once here; the create decides who submits
                job = await fire(self.js, schedule, tick, self.node)
                if job is not None:
                    log.info("schedule %s fired: job %s", schedule.name, job,
                             extra={"action": "schedule", "job": job, "node": self.node})
            wait = min(wait, schedule.next_tick(now) - now)
        return max(0.0, wait)
