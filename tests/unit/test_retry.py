"""The retry policy alone: what follows each way an attempt can end."""

from __future__ import annotations

import pytest

from qubits._defaults import RETRY_BACKOFF_MAX
from qubits._records import AttemptEnd, Lease, Outcome, TaskSpec
from qubits._retry import Decision, RetryPolicy, Step

SPEC = TaskSpec(id="t", command="true", max_attempts=3, backoff=2.0)


def lease(failures: int) -> Lease:
    return Lease("j", "t", "node-a", "tok", failures + 1, 30.0, failures=failures)


@pytest.mark.parametrize(("end", "failures", "draining", "expected"), [
    (AttemptEnd(None, "lease lost"), 0, False, Decision(Step.DROP)),
    (AttemptEnd(Outcome.SUCCEEDED, None, 0), 2, False, Decision(Step.COMMIT, Outcome.SUCCEEDED)),
    (AttemptEnd(Outcome.CANCELLED, "the job was cancelled"), 0, False, Decision(Step.COMMIT, Outcome.CANCELLED)),
    (AttemptEnd(Outcome.FAILED, "oom", 137, final=True), 0, False, Decision(Step.COMMIT, Outcome.FAILED)),
    (AttemptEnd(Outcome.FAILED, "the agent was stopped", interrupted=True), 0, True, Decision(Step.HAND_BACK)),
    (AttemptEnd(Outcome.FAILED, "the agent was stopped", interrupted=True), 0, False, Decision(Step.RETRY)),
    (AttemptEnd(Outcome.FAILED, "exit 1", 1), 0, False, Decision(Step.RETRY)),
    (AttemptEnd(Outcome.FAILED, "exit 1", 1), 1, False, Decision(Step.RETRY)),
    (AttemptEnd(Outcome.FAILED, "exit 1", 1), 2, False, Decision(Step.COMMIT, Outcome.FAILED, failures=3)),
])
def test_decide(end: AttemptEnd, failures: int, draining: bool, expected: Decision) -> None:
    assert RetryPolicy().decide(end, lease(failures), SPEC, draining=draining) == expected


def test_exhausted_is_the_dead_letter_line() -> None:
    policy = RetryPolicy()
    assert not policy.exhausted(SPEC, 2) and policy.exhausted(SPEC, 3) and policy.exhausted(SPEC, 4)


def test_backoff_grows_with_full_jitter_up_to_its_cap() -> None:
    policy = RetryPolicy()
    for failures, cap in ((1, 2.0), (2, 4.0), (3, 8.0)):
        waits = [policy.backoff(SPEC, failures) for _ in range(50)]
        assert all(cap / 2 <= w <= cap for w in waits)
    assert RETRY_BACKOFF_MAX / 2 <= policy.backoff(TaskSpec(id="t", command="true", backoff=10_000.0), 5) <= RETRY_BACKOFF_MAX
