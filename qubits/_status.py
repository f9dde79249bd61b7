"""A job's status as users read it: counts by state, a job state, and one row per task (id and name,
attempt n of m, waits for dependencies, node, start, end, duration, exit code).

Two counters are kept apart: a task's *attempts* (runs that count against ``max_attempts``: the
current one and every earlier one that failed or was lost) and its *waits* (runs that parked because
dependencies found at run time were not made yet). Each run, whatever it ended as, has its own number
(``run``): that is where its output lives (``runs/{job}/{task}/{run}/``) and what ``logs --attempt``
takes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._records import Done, Lease, Outcome

COUNTED = frozenset({"failed", "lost"})
"""Outcomes of earlier runs that count against a task's max_attempts."""
JOB_STATES = ("submitting", "pending", "running", "succeeded", "failed", "cancelled")
"""A job's state, as ``jobs --state`` filters it."""
TASK_STATES = ("pending", "running", "released", "parked", "committing", *(o.value for o in Outcome))
"""A task's state, as ``status --state`` filters it."""


def counted_attempts(history: Iterable[dict[str, Any]], max_attempts: int, *, current: bool = True) -> int:
    """The attempt number a run has against ``max_attempts``: earlier failed or lost runs, plus the
    current one (capped: a task lost max_attempts times is decided on its last loss)."""
    n = sum(1 for h in history if h.get("outcome") in COUNTED) + (1 if current else 0)
    return min(n, max(1, max_attempts))


def waits(history: Iterable[dict[str, Any]]) -> int:
    """How many times a task parked, waiting for dependencies found at run time."""
    return sum(1 for h in history if h.get("outcome") == "parked")


@dataclass
class TaskState:
    """One row of a job's status."""

    task: str
    """The task's id (what every verb accepts)."""
    name: str
    """Its name: the command of a commands job, the target of a Qfile job."""
    state: str
    """pending, running, released, parked, committing, or an outcome (succeeded, failed, cancelled, upstream_failed)."""
    attempt: int = 0
    """The number of its last run (where its output lives; ``logs --attempt``); 0: never ran."""
    holder: str = ""
    """The node (agent) of its last run."""
    error: str | None = None
    tries: int = 0
    """Attempt n of ``max_attempts``: runs that failed or were lost, plus the current or deciding one."""
    max_attempts: int = 0
    waits: int = 0
    """Runs that parked waiting for dependencies (not attempts: they never count against max_attempts)."""
    started: float = 0.0
    """Wall clock when its last run started (0: never ran)."""
    finished: float = 0.0
    """Wall clock when it was decided (0: not decided)."""
    exit_code: int | None = None

    @property
    def node(self) -> str:
        return self.holder

    @property
    def duration(self) -> float | None:
        """Seconds its last run took (so far, while it runs); None if it never ran."""
        if not self.started:
            return None
        end = self.finished or (time.time() if self.state == "running" else 0.0)
        return max(0.0, end - self.started) if end else None

    def attempt_text(self) -> str:
        """'2 of 3', with the waits: '1 of 3, waited 2'."""
        if not self.tries:
            return ""
        text = f"{self.tries} of {self.max_attempts}" if self.max_attempts else str(self.tries)
        return text + (f", waited {self.waits}" if self.waits else "")

    def to_dict(self) -> dict[str, Any]:
        duration = self.duration
        return {
            "task": self.task,
            "id": self.task,
            "name": self.name,
            "state": self.state,
            "attempt": self.attempt,
            "run": self.attempt,
            "tries": self.tries,
            "max_attempts": self.max_attempts,
            "waits": self.waits,
            "holder": self.holder,
            "node": self.holder,
            "started": self.started or None,
            "finished": self.finished or None,
            "duration": None if duration is None else round(duration, 3),
            "exit_code": self.exit_code,
            "error": self.error,
        }


def from_done(done: Done, name: str, max_attempts: int) -> TaskState:
    ran = bool(done.attempt) and bool(done.started)
    return TaskState(
        done.task, name, done.outcome, done.attempt, done.holder, done.error,
        tries=counted_attempts(done.attempts, max_attempts) if ran else 0, max_attempts=max_attempts,
        waits=waits(done.attempts), started=done.started, finished=done.finished, exit_code=done.exit_code,
    )


def from_lease(lease: Lease, state: str, name: str, max_attempts: int) -> TaskState:
    held = state in ("running", "committing")
    return TaskState(
        lease.task, name, state, lease.attempt, lease.holder, lease.error,
        tries=counted_attempts(lease.history, max_attempts, current=held) if held else min(lease.failures + 1, max(1, max_attempts)),
        max_attempts=max_attempts, waits=waits(lease.history), started=lease.started,
        finished=lease.finished if state == "committing" else 0.0, exit_code=lease.exit_code,
    )


@dataclass
class JobStatus:
    """A job's progress: counts by state, and rows for the tasks worth showing."""

    job: str
    name: str
    total: int
    sealed: bool
    counts: dict[str, int] = field(default_factory=dict)
    rows: list[TaskState] = field(default_factory=list)
    submitter: str = ""
    """user@host that submitted it."""
    created: float = 0.0
    """Wall clock of the submit."""
    ended: float = 0.0
    """Wall clock when its last task was decided (0 while unfinished)."""
    cancelled: bool = False
    """The job was cancelled (its tasks end cancelled)."""
    kind: str = ""
    """commands, qfile, map, batch …"""

    @property
    def done(self) -> int:
        return sum(v for k, v in self.counts.items() if k in {o.value for o in Outcome})

    @property
    def finished(self) -> bool:
        return self.sealed and self.done >= self.total

    @property
    def ok(self) -> bool:
        return self.finished and self.counts.get(Outcome.SUCCEEDED.value, 0) == self.total

    @property
    def user(self) -> str:
        """The submitter's user name (``submitter`` without its host)."""
        return self.submitter.split("@", 1)[0]

    @property
    def state(self) -> str:
        """submitting, pending, running, succeeded, failed or cancelled (see JOB_STATES)."""
        if not self.sealed:
            return "submitting"
        if self.finished:
            if self.ok:
                return "succeeded"
            if self.cancelled or (self.counts.get(Outcome.CANCELLED.value, 0) and not self._failures()):
                return "cancelled"
            return "failed"
        if self.cancelled:
            return "cancelled"
        started = self.done + sum(self.counts.get(k, 0) for k in ("running", "released", "parked", "committing"))
        return "running" if started else "pending"

    @property
    def elapsed(self) -> float:
        """Seconds from the submit to the last decision (or to now, while unfinished)."""
        if not self.created:
            return 0.0
        end = self.ended if self.finished and self.ended else time.time()
        return max(0.0, end - self.created)

    def _failures(self) -> int:
        return self.counts.get(Outcome.FAILED.value, 0) + self.counts.get(Outcome.UPSTREAM_FAILED.value, 0)

    def summary(self) -> str:
        parts = [f"{k} {v}" for k, v in sorted(self.counts.items()) if v]
        return f"{self.job} {self.name}: {self.done}/{self.total} done" + (f" ({', '.join(parts)})" if parts else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "kind": self.kind,
            "name": self.name,
            "state": self.state,
            "user": self.user,
            "submitter": self.submitter,
            "created": self.created or None,
            "ended": self.ended or None,
            "elapsed": round(self.elapsed, 3),
            "total": self.total,
            "done": self.done,
            "finished": self.finished,
            "ok": self.ok,
            "counts": self.counts,
            "tasks": [r.to_dict() for r in self.rows],
        }


def parse_states(value: str | Iterable[str] | None, allowed: Iterable[str]) -> set[str] | None:
    """A set of states from 'failed,running' (or a list); ValueError naming the allowed ones."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    states = {s.strip().lower() for s in items if s.strip()}
    known = set(allowed)
    bad = sorted(states - known)
    if bad:
        raise ValueError(f"unknown state {', '.join(bad)}: use {', '.join(sorted(known))}")
    return states or None
