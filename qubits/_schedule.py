"""Periodic submission: a schedule in the jobspace, fired by whichever agent gets there first.

A schedule (``schedules/{name}.json``) holds a cron expression (5 fields, or 6 with seconds first, read
by croniter) or an interval (``every`` seconds from its creation), and the commands it submits. Every
agent reads the schedules now and then; when a tick is due, each tries one create-only write of
``ticks/{name}/{tick}`` (the key names the schedule and the tick's time, UTC). Exactly one create
succeeds, whatever the number of agents, and its writer submits the tick's job: once per tick.

Ticks are judged by wall clock (a schedule is a wall-clock thing); a tick more than SCHEDULE_GRACE old
is skipped rather than fired late, and its marker is kept SCHEDULE_KEEP (a day), so an agent whose clock
is off cannot fire a tick again. A writer that dies between its create and its submit loses that tick
(at most once, never twice).
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field

import jobspaces
from jobspaces import Jobspace

from . import _layout as layout
from ._defaults import SCHEDULE_GRACE, SCHEDULE_KEEP
from ._ids import new_job_id, submitter
from ._records import JobSpec, Record
from ._specs import Specs
from .errors import CorruptObject, UsageError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_EVERY = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Schedule(Record):
    """A periodic submission of ``commands`` (one task per line) as a commands job."""

    name: str
    commands: list[str]
    cron: str | None = None
    """5 fields (minute hour day month weekday), or 6 with seconds first."""
    every: float | None = None
    """Seconds between ticks, counted from ``anchor``."""
    anchor: float = 0.0
    job_name: str = ""
    max_attempts: int | None = None
    requires: list[str] = field(default_factory=list)
    created: float = 0.0
    by: str = ""

    def last_tick(self, now: float) -> float:
        """The latest tick at or before wall time ``now``."""
        if self.every:
            return self.anchor + math.floor((now - self.anchor) / self.every) * self.every
        from croniter import croniter

        return float(croniter(self.cron, now + 1e-6, second_at_beginning=True).get_prev(float))

    def next_tick(self, now: float) -> float:
        """The first tick after wall time ``now``."""
        if self.every:
            return self.last_tick(now) + self.every
        from croniter import croniter

        return float(croniter(self.cron, now, second_at_beginning=True).get_next(float))

    def describe(self) -> str:
        return f"every {self.every:g}s" if self.every else f"cron {self.cron}"


def parse_every(text: str) -> float:
    """'2s', '90', '5m', '1h', '250ms' → seconds; UsageError otherwise."""
    m = _EVERY.fullmatch(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--every {text!r}: give a positive interval such as 2s, 5m, 1h")
    return float(m.group(1)) * _UNIT[m.group(2) or "s"]


def make_schedule(name: str, commands: list[str], *, cron: str | None = None, every: str | float | None = None,
                  job_name: str = "", max_attempts: int | None = None, requires: list[str] | None = None) -> Schedule:
    """A checked Schedule: a plain name, exactly one of ``cron`` and ``every``, at least one command."""
    from croniter import croniter

    if not _NAME.fullmatch(name):
        raise UsageError(f"schedule name {name!r}: letters, digits, '.', '_' and '-' only")
    if (cron is None) == (every is None):
        raise UsageError("give a schedule exactly one of: a cron expression, or --every INTERVAL")
    if cron is not None and not (len(cron.split()) in (5, 6) and croniter.is_valid(cron, second_at_beginning=True)):
        raise UsageError(f"cron {cron!r}: give 5 fields (minute hour day month weekday), or 6 with seconds first")
    seconds = parse_every(every) if isinstance(every, str) else every
    lines = [c.strip() for c in commands if c.strip() and not c.strip().startswith("#")]
    if not lines:
        raise UsageError("a schedule needs at least one command to submit")
    now = time.time()
    return Schedule(name, lines, cron=cron, every=seconds, anchor=now, job_name=job_name or f"schedule {name}",
                    max_attempts=max_attempts, requires=sorted(requires or []), created=now, by=submitter())


async def add_schedule(js: Jobspace, schedule: Schedule, *, replace: bool = False) -> None:
    """Store ``schedule``; UsageError if one of that name exists (unless ``replace``)."""
    try:
        await js.put(layout.schedule(schedule.name), schedule.to_json(), if_absent=not replace)
    except jobspaces.PreconditionFailed:
        raise UsageError(f"a schedule {schedule.name!r} exists already: remove it first (qubits schedule rm {schedule.name})") from None


async def list_schedules(js: Jobspace) -> list[Schedule]:
    """Every schedule in the jobspace, by name."""
    out = []
    for meta in await js.list_all(layout.SCHEDULES):
        if meta.key.endswith(".json"):
            try:
                out.append(Schedule.from_json((await js.get(meta.key))[0], meta.key))
            except (jobspaces.NotFound, CorruptObject):
                continue  # removed meanwhile; or unreadable (qubits schedule list says which)
    return sorted(out, key=lambda s: s.name)


async def remove_schedule(js: Jobspace, name: str) -> bool:
    """Delete a schedule and its tick markers; False if there was none."""
    if not await js.exists(layout.schedule(name)):
        return False
    await js.delete(layout.schedule(name))
    for meta in await js.list_all(layout.ticks_prefix(name)):
        await js.delete(meta.key)
    return True


def tick_stamp(tick: float) -> str:
    """A tick's time as its key: 20261204T155300.000Z (UTC, sortable)."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(tick)) + f".{round(tick * 1000) % 1000:03d}Z"


async def fire(js: Jobspace, schedule: Schedule, tick: float, holder: str) -> str | None:
    """Try to fire ``tick`` of ``schedule``: one create-only write of its marker; the winner submits the
    tick's job and returns its id, every other caller gets None. Old markers are pruned by the winner."""
    job = new_job_id()
    stamp = tick_stamp(tick)
    body = json.dumps({"schedule": schedule.name, "tick": tick, "job": job, "by": holder, "wall": time.time()}).encode()
    try:
        await js.put(layout.tick(schedule.name, stamp), body, if_absent=True)
    except jobspaces.PreconditionFailed:
        return None
    if not await js.exists(layout.schedule(schedule.name)):
        await js.delete(layout.tick(schedule.name, stamp))  # removed since this agent read it: leave nothing
        return None
    from ._client import command_specs

    spec = JobSpec(id=job, kind="commands", name=schedule.job_name,
                   config={"schedule": schedule.name, "tick": stamp})
    tasks = command_specs(schedule.commands, requires=schedule.requires, max_attempts=schedule.max_attempts)
    await Specs(js).submit(spec, tasks)
    await _prune(js, schedule.name, time.time() - SCHEDULE_KEEP)
    return job


async def _prune(js: Jobspace, name: str, before: float) -> None:
    """Delete the oldest tick markers written before wall time ``before`` (one page a fire: bounded)."""
    cutoff = tick_stamp(before)
    async for meta in js.list(layout.ticks_prefix(name), limit=100):
        if meta.key.rsplit("/", 1)[1] >= cutoff:
            break
        await js.delete(meta.key)


def due(schedule: Schedule, now: float) -> float | None:
    """The tick of ``schedule`` to fire at wall time ``now``, if one is due and not older than the grace."""
    tick = schedule.last_tick(now)
    if tick < schedule.anchor - 1e-6 or now - tick > SCHEDULE_GRACE:
        return None
    return tick
