"""What happens after an attempt: one retry policy, in place of rules spread over the agent and the
protocol (as procrastinate's retry strategy decides from the exception and the job).

``RetryPolicy.decide(end, lease, spec)`` reads how an attempt ended (an ``AttemptEnd``) and the lease it
ran under, and says what to do next: commit the outcome, retry after a backoff, hand the task back
(the agent is stopping), or nothing (the lease was lost). The protocol asks the same policy whether a
task lost too often is out of attempts (the dead letter on takeover) and how long a retry waits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from ._defaults import RETRY_BACKOFF, RETRY_BACKOFF_MAX
from ._records import AttemptEnd, Lease, Outcome, TaskSpec


class Step(StrEnum):
    """What follows an attempt."""

    COMMIT = "commit"
    """Decide the outcome now (a success, a cancel, a final failure, or the last attempt failed)."""
    RETRY = "retry"
    """Release the lease as a failed attempt; another runs after the backoff."""
    HAND_BACK = "hand-back"
    """Release the lease, no attempt counted: the agent is stopping."""
    DROP = "drop"
    """Nothing to write: the lease was lost, or the executor already handed the task back."""


@dataclass(frozen=True)
class Decision:
    """A step, and for a commit the outcome and, after the last failed attempt, the failures to record."""

    step: Step
    outcome: Outcome | None = None
    failures: int | None = None


class RetryPolicy:
    """Retries up to the task's ``max_attempts``, after an exponential backoff with full jitter."""

    def decide(self, end: AttemptEnd, lease: Lease, spec: TaskSpec, *, draining: bool = False) -> Decision:
        """What to do after the attempt that ended as ``end`` under ``lease``."""
        if end.outcome is None:
            return Decision(Step.DROP)
        if end.outcome is Outcome.SUCCEEDED or end.outcome is Outcome.CANCELLED or end.final:
            return Decision(Step.COMMIT, end.outcome)
        if draining and end.interrupted:
            return Decision(Step.HAND_BACK)
        if self.exhausted(spec, lease.failures + 1):
            return Decision(Step.COMMIT, Outcome.FAILED, failures=lease.failures + 1)
        return Decision(Step.RETRY)

    def exhausted(self, spec: TaskSpec, failures: int) -> bool:
        """Whether ``failures`` failed or lost attempts use up the task's attempts (the dead letter)."""
        return failures >= spec.max_attempts

    def backoff(self, spec: TaskSpec, failures: int) -> float:
        """Seconds before the next attempt after ``failures`` failures: exponential with full jitter."""
        base = spec.backoff if spec.backoff is not None else RETRY_BACKOFF
        cap = min(RETRY_BACKOFF_MAX, base * 2 ** max(0, failures - 1))
        return random.uniform(cap / 2, cap)


DEFAULT = RetryPolicy()
"""The policy a ``Protocol`` uses unless it is given another."""
