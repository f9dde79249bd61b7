"""After a batch task is committed: archive its result, and notify — once per event.

The agent that commits a task of a batch job (kind ``batch``) copies the winning attempt's outputs
and logs to ``archive/{namespace}/{batch}/{job}/`` and then, if the batch asks for notifications:

- for a job event (``job``, or ``failure`` when the job failed), it creates the marker
  ``jobs/{job}/notified/job.{task}`` and sends;
- for the batch event, it lists the done records; if every task is decided, it creates the marker
  ``jobs/{job}/notified/batch`` and sends.

Markers are create-only writes, so when two agents commit the last two tasks at once and both see the
batch complete, exactly one of them wins the marker and sends. A marker is written before sending
(never two senders); its body is then updated with the delivery result. An agent that dies between
its commit and its marker leaves that event unsent (at most once, never twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import jobspaces
from jobspaces import Jobspace
from qubits import _layout as layout
from qubits._protocol import Claim
from qubits._records import Done, JobSpec, Outcome

from ._archive import archive_task, batch_of
from ._notify import batch_event, deliver, job_event

log = logging.getLogger("qubits.agent")


async def after_commit(js: Jobspace, spec: JobSpec, claim: Claim, outcome: Outcome, node: str) -> None:
    """Archive and notify for one decided task of the batch job ``spec`` (the kind's after-commit hook,
    found through ``qubits._kinds``)."""
    cfg = batch_of(spec)
    lease = claim.lease
    name = str(claim.spec.payload.get("batch_job") or claim.task)
    if outcome is not Outcome.CANCELLED:
        prefix = await archive_task(
            js, spec, claim.task, outcome=outcome.value, attempt=lease.attempt, holder=lease.holder,
            exit_code=lease.exit_code, error=lease.error, name=name,
        )
        log.info("archived %s", prefix, extra={"action": "archive", "job": claim.job, "task": claim.task, "node": node})
    if not spec.notify:
        return
    events = cfg.get("events") or []
    if "job" in events or ("failure" in events and outcome is Outcome.FAILED):
        event = job_event(cfg, spec.id, name, outcome.value, lease.holder, lease.attempt, lease.error)
        await send_once(js, spec, f"job.{claim.task}", event, node)
    if "batch" in events:
        decided = await decided_counts(js, spec)
        if decided is not None:
            counts, failed = decided
            await send_once(js, spec, "batch", batch_event(cfg, spec.id, counts, failed), node)


async def decided_counts(js: Jobspace, spec: JobSpec) -> tuple[dict[str, int], list[str]] | None:
    """(outcome counts, failed task names) if every task of the job is decided, else None."""
    keys = [m.key async for m in js.list(layout.done_prefix(spec.id))]
    if len(keys) < spec.task_count:
        return None
    counts: dict[str, int] = {}
    failed = []
    for key in keys:
        try:
            done = Done.from_json((await js.get(key))[0], key)
        except jobspaces.NotFound:
            continue
        counts[done.outcome] = counts.get(done.outcome, 0) + 1
        if done.outcome != Outcome.SUCCEEDED.value:
            failed.append(done.task)
    return counts, sorted(failed)


async def send_once(js: Jobspace, spec: JobSpec, event_key: str, event: dict[str, Any], node: str) -> bool:
    """Send ``event`` if this caller wins its marker; False if someone else sends it."""
    key = layout.notified(spec.id, event_key)
    body: dict[str, Any] = {"by": node, "event": event["event"], "wall": time.time(), "state": "sending"}
    try:
        await js.put(key, json.dumps(body).encode(), if_absent=True)
    except jobspaces.PreconditionFailed:
        return False
    errors = await asyncio.to_thread(deliver, spec.notify, event, f"qubits-{spec.id}-{event_key}")
    body.update(state="failed" if errors else "sent", errors=errors, finished=time.time())
    with contextlib.suppress(jobspaces.JobspaceError):
        await js.put(key, json.dumps(body).encode())
    return True
