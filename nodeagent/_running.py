"""Running what an agent claimed: start it, settle how it ended (commit, retry, release), stop it.

A mixin of ``Agent``, kept apart from the loop that finds and claims work; tests and the benchmark's
simulated agents override ``start_claim`` and ``_run_claim``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import jobspaces
from jobspaces import Jobspace
from qubits.errors import CorruptObject, TamperedJob
from qubits.protocol import (
    CANCEL_CHECK,
    TOMBSTONE_LINGER,
    AttemptEnd,
    Claim,
    LeaseLost,
    LeaseState,
    Outcome,
    Protocol,
    Step,
    UnsafeArchive,
)

from ._execute import Executor
from ._slots import Resources

if TYPE_CHECKING:
    from ._agent import AgentConfig

log = logging.getLogger("qubits.agent")
T = TypeVar("T")


class ClaimRunner:
    """Runs claimed tasks for the agent whose state it shares."""

    config: AgentConfig
    js: Jobspace
    proto: Protocol
    executor: Executor
    running: dict[str, tuple[Claim, asyncio.Task[None]]]
    resources: Resources
    draining: bool
    _kick: asyncio.Event
    _last_work: float
    _burials: set[asyncio.Task[None]]
    _background: set[asyncio.Task[Any]]

    if TYPE_CHECKING:  # provided by Agent

        def count(self, name: str, n: int = 1) -> None: ...

        async def is_cancelled(self, job: str, max_age: float = CANCEL_CHECK) -> bool: ...

        async def quarantine(self, job: str, task: str, chunk: str, exc: Exception, ready_key: str | None = None,
                             claim: Claim | None = None) -> None: ...

    def _in_background(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``work`` alongside; its failure is for whoever awaits it (nobody need)."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_settled)
        return task

    def start_claim(self, claim: Claim, ready_key: str | None = None, cancelled: asyncio.Task[bool] | None = None) -> None:
        """Run a claimed task; ``cancelled``: the check of its job's cancel flag already under way."""
        self.resources.hold(claim.spec)
        task = asyncio.create_task(self._run_claim(claim, ready_key, cancelled))
        self.running[f"{claim.job}/{claim.task}"] = (claim, task)

    async def _run_claim(self, claim: Claim, ready_key: str | None, cancelled_check: asyncio.Task[bool] | None = None) -> None:
        # The ready entry is a hint and our lease decides the task: its DELETE is off the task's path,
        # and finished before anything here writes again (a release puts the entry back).
        forget = self._in_background(self._forget(ready_key)) if ready_key else None
        try:
            try:
                cancelled = await (cancelled_check or self.is_cancelled(claim.job))
                result = None if cancelled else await self.executor.run(claim)
            finally:
                if forget is not None:
                    await forget
            if result is None:
                await self.proto.commit(claim, Outcome.CANCELLED, error="the job was cancelled")
                await self.executor.after_commit(claim, Outcome.CANCELLED)
                return
            await self._settle(claim, result)
        except LeaseLost as exc:
            self.count("lost")
            log.warning("lease lost: %s", exc, extra={"action": "lost", "job": claim.job, "task": claim.task, "attempt": claim.attempt, "node": self.config.name})
        except (CorruptObject, TamperedJob) as exc:
            await self.quarantine(claim.job, claim.task, claim.chunk, exc, claim=claim)
        except UnsafeArchive as exc:
            # The job's code cannot be unpacked safely on any node: fail the task now, saying why.
            log.error("refused the job's code bundle: %s", exc, extra={"action": "error", "job": claim.job, "task": claim.task, "node": self.config.name})
            with contextlib.suppress(LeaseLost, jobspaces.JobspaceError):
                await self.proto.commit(claim, Outcome.FAILED, error=f"refused the job's code bundle: {exc}")
        except jobspaces.JobspaceError as exc:
            log.error("jobspace failed while running: %s", exc, extra={"action": "error", "job": claim.job, "task": claim.task, "node": self.config.name})
            # Hand the task back now rather than let its lease expire (a takeover counts as a lost
            # attempt); only a store that refuses for good counts as a failed one. A committed lease
            # stays as it is: whoever sees it next finishes the decision (dependents included).
            if claim.lease.state is LeaseState.HELD:
                with contextlib.suppress(LeaseLost, jobspaces.JobspaceError):
                    transient = isinstance(exc, jobspaces.TransientError)
                    await self.proto.release(claim, failed=not transient, error=f"the store failed: {exc}")
        except Exception:  # noqa: BLE001 - one task's trouble never stops the agent
            log.exception("task crashed the runner", extra={"action": "error", "job": claim.job, "task": claim.task, "node": self.config.name})
            with contextlib.suppress(LeaseLost, jobspaces.JobspaceError):
                await self.proto.release(claim, failed=True, error="the agent's runner crashed; see the agent log")
        finally:
            self.resources.give_back(claim.spec)
            self.running.pop(f"{claim.job}/{claim.task}", None)
            self._last_work = time.monotonic()
            self._kick.set()

    async def _forget(self, ready_key: str) -> None:
        with contextlib.suppress(jobspaces.JobspaceError):
            await self.js.delete(ready_key)

    async def _settle(self, claim: Claim, result: AttemptEnd) -> None:
        """Commit, retry or drop an attempt, as the retry policy decides from how it ended."""
        decision = self.proto.retry.decide(result, claim.lease, claim.spec, draining=self.draining)
        if decision.step is Step.DROP:
            if result.error == "lease lost":
                self.count("lost")
                log.warning(
                    "lease lost: could not renew within the ttl or it was taken over; the task was stopped",
                    extra={"action": "lost", "job": claim.job, "task": claim.task, "attempt": claim.attempt, "node": self.config.name},
                )
            return  # lease lost or handed back by the executor
        if decision.step is Step.HAND_BACK:
            await self.proto.release(claim, failed=False, error="the agent was stopped")
            return
        if decision.step is Step.RETRY:
            await self.proto.release(claim, failed=True, error=result.error, exit_code=result.exit_code)
            self.count("retries")
            return
        outcome = decision.outcome
        assert outcome is not None
        if decision.failures is None:
            await self.proto.commit(claim, outcome, error=result.error, exit_code=result.exit_code, has_result=result.has_result, value=result.value, linger=True)
        else:  # the last attempt failed
            await self.proto.commit(claim, outcome, error=result.error, exit_code=result.exit_code, failures=decision.failures, linger=True)
        self._bury(claim)
        self.count("commits")
        self.count("succeeded" if outcome is Outcome.SUCCEEDED else "failures" if outcome is Outcome.FAILED else "cancelled")
        await self.executor.after_commit(claim, outcome)

    def _bury(self, claim: Claim) -> None:
        """Delete a committed lease once it has lingered (see TOMBSTONE_LINGER)."""

        async def later() -> None:
            await asyncio.sleep(TOMBSTONE_LINGER)
            with contextlib.suppress(jobspaces.JobspaceError):
                await self.proto.bury(claim.job, claim.task, claim.chunk, claim.spec)
            self._burials.discard(task)

        task = asyncio.create_task(later())
        self._burials.add(task)

    # -- stopping -----------------------------------------------------------------------------------
    async def _release_all(self) -> None:
        for claim, _task in list(self.running.values()):
            self.executor.interrupt(claim)
        await asyncio.gather(*(t for _, t in self.running.values()), return_exceptions=True)

    async def _stop_all(self) -> None:
        for claim, _task in list(self.running.values()):
            self.executor.interrupt(claim, release=False)
        await asyncio.gather(*(t for _, t in self.running.values()), return_exceptions=True)


def _settled(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a background read that failed is not an error of its own
