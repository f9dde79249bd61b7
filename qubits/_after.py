"""Dependencies between jobs (SLURM's ``--dependency=afterok:JOB``): ``submit --after JOB[:ok|any]``.

A job submitted after another gets one more task, its *gate* (kind ``after``, id ``after-{JOB}``), and
every other task depends on it, so none is ready before the gate succeeds. An agent that claims the
gate looks at the other job: finished as asked (``ok``: every task succeeded; ``any``: every task
decided), the gate succeeds and the tasks become ready; under ``ok`` a task of the other job that did
not succeed fails the gate, and the tasks end upstream-failed, naming it. Otherwise the gate parks on
the other job, and whoever sees the parked lease checks again (``Dag.check_parked``), as for any task
that waits.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

MODES = ("ok", "any")
"""``ok``: run when every task of the other job succeeded; ``any``: when it finished in any way."""


@dataclass(frozen=True)
class After:
    """The job to wait for, and how it must end."""

    job: str
    mode: str = "ok"

    @property
    def gate(self) -> str:
        """The id of the gate task."""
        return f"after-{self.job}"

    @property
    def dep(self) -> str:
        """How a parked gate names what it waits for: a '/' no task id has, so it reads as a job."""
        return f"job/{self.job}/{self.mode}"


def parse_after(value: str) -> After:
    """``JOB``, ``JOB:ok`` or ``JOB:any``."""
    job, _, mode = value.strip().partition(":")
    mode = mode or "ok"
    if not job or mode not in MODES or "/" in job:
        raise UsageError(f"--after {value}: use JOB, JOB:ok (every task succeeded) or JOB:any (finished in any way)")
    return After(job, mode)


def job_dep(dep: str) -> After | None:
    """The job a parked gate's ``waiting`` entry names, or None for a task of the same job."""
    parts = dep.split("/")
    if len(parts) == 3 and parts[0] == "job" and parts[2] in MODES:
        return After(parts[1], parts[2])
    return None
