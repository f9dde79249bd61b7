"""Cleaning a jobspace: finished jobs older than a cutoff, with every object they left behind.

A job is finished when every task (dynamic ones included) has its done record; nothing else counts,
so a job still running — or still being submitted — is never touched. A finished job that a kept job
reuses (a Qfile job reads earlier jobs' outputs) is kept too. For a removed job everything goes:
``jobs/{job}/``, ``done/{job}/``, ``runs/{job}/``, ``leases/{job}/``, ``quarantine/{job}/``,
``fleet/{job}/``, its ``ready/`` entries and the index entries of the Qfile targets it made (its
manifest ``targets/jobs/{job}.json`` names them); then code bundles no kept job uses, and presence records
of agents not seen since the cutoff. ``data/`` chunks are shared by content across jobs and stay.

Removal is resumable: ``jobs/{job}/gc`` is written first and the job spec is deleted last, so an
interrupted gc leaves a job the next gc finishes removing (and that nobody mistakes for running).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import jobspaces
from jobspaces import Jobspace, ObjectMeta

from . import _layout as layout

log = logging.getLogger("qubits.gc")

PARALLEL_DELETES = 32


@dataclass
class JobVerdict:
    """What gc decided about one job."""

    job: str
    name: str = ""
    finished: bool = False
    last: float = 0.0
    """Wall time of its last activity (its newest done record, or its spec)."""
    remove: bool = False
    reason: str = ""
    objects: int = 0


@dataclass
class GcReport:
    """What a gc removed (or would remove, with ``dry_run``)."""

    dry_run: bool
    jobs: list[JobVerdict] = field(default_factory=list)
    bundles: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    objects: int = 0

    @property
    def removed(self) -> list[JobVerdict]:
        return [j for j in self.jobs if j.remove]

    @property
    def kept(self) -> list[JobVerdict]:
        return [j for j in self.jobs if not j.remove]

    def to_dict(self) -> dict[str, object]:
        return {"dry_run": self.dry_run, "objects": self.objects, "bundles": self.bundles, "nodes": self.nodes,
                "jobs": [j.__dict__ for j in self.jobs]}


async def _delete_all(js: Jobspace, keys: list[str]) -> None:
    gate = asyncio.Semaphore(PARALLEL_DELETES)

    async def one(key: str) -> None:
        async with gate:
            await js.delete(key)

    await asyncio.gather(*(one(k) for k in keys))


async def _made_by(js: Jobspace, job: str) -> list[str]:
    """The index entries of Qfile targets that ``job`` made (from its manifest) that still name it,
    and the manifest: once its outputs are gone, no make may reuse them."""
    key = layout.target_manifest(job)
    try:
        manifest = json.loads((await js.get(key))[0])
    except (jobspaces.NotFound, ValueError):
        return []
    out = [key]
    for identity, entry in manifest.items() if isinstance(manifest, dict) else ():
        try:
            current = json.loads((await js.get(layout.target_index(str(identity))))[0])
        except (jobspaces.NotFound, ValueError, jobspaces.InvalidKey):
            continue
        if isinstance(current, dict) and isinstance(entry, dict) and current.get("job") == job:
            out.append(layout.target_index(str(identity)))
    return out


async def _remove(js: Jobspace, job: str, under: list[str], ready: list[str], *, dry_run: bool = False) -> int:
    """Delete every object of ``job``, given its keys under ``jobs/{job}/`` and its ready entries; the
    number of objects. Resumable: the gc mark is written first and the job spec deleted last."""
    doomed = list(ready)
    for prefix in (layout.done_prefix(job), layout.runs_prefix(job), layout.lease_prefix(job), layout.quarantine_prefix(job), layout.fleet_prefix(job)):
        doomed += [m.key async for m in js.list(prefix)]
    doomed += await _made_by(js, job)
    last = [layout.job_spec(job), layout.gc_mark(job)]
    doomed += [k for k in under if k not in last]
    count = len(doomed) + sum(1 for k in under if k in last)
    if not dry_run:
        await js.put(layout.gc_mark(job), json.dumps({"wall": time.time()}).encode())
        await _delete_all(js, doomed)
        await js.delete(layout.job_spec(job))
        await js.delete(layout.gc_mark(job))
        log.info("removed job", extra={"action": "gc", "job": job, "count": count})
    return count


async def remove_job(js: Jobspace, job: str) -> int:
    """Delete ``job`` and every object it wrote (specs, leases, done records, logs, outputs, ready entries,
    fleet records); the number of objects. The caller makes sure it is not running."""
    under = [m.key async for m in js.list(layout.job_prefix(job))]
    ready = []
    async for meta in js.list("ready/"):
        try:
            if layout.parse_ready(meta.key)[1] == job:
                ready.append(meta.key)
        except ValueError:
            continue
    return await _remove(js, job, under, ready)


async def collect(js: Jobspace, older_than: float, *, dry_run: bool = False, now: float | None = None) -> GcReport:
    """Remove finished jobs whose last activity is more than ``older_than`` seconds ago."""
    now = time.time() if now is None else now
    cutoff = now - older_than
    report = GcReport(dry_run)
    under: dict[str, list[ObjectMeta]] = defaultdict(list)
    async for meta in js.list("jobs/"):
        under[meta.key.split("/")[1]].append(meta)
    specs: dict[str, dict[str, object]] = {}
    verdicts: dict[str, JobVerdict] = {}
    for job, metas in sorted(under.items()):
        keys = {m.key: m for m in metas}
        verdict = JobVerdict(job)
        verdicts[job] = verdict
        spec_meta = keys.get(layout.job_spec(job))
        if spec_meta is not None:
            try:
                specs[job] = json.loads((await js.get(spec_meta.key))[0])
                verdict.name = str(specs[job].get("name") or "")
            except (jobspaces.NotFound, ValueError):
                pass
        if layout.gc_mark(job) in keys:
            verdict.finished, verdict.remove, verdict.reason = True, True, "an earlier gc was interrupted"
            continue
        seal_meta = keys.get(layout.seal(job))
        if spec_meta is None or seal_meta is None:
            verdict.reason = "not sealed: still being submitted, or its submit never finished"
            continue
        try:
            seal = json.loads((await js.get(seal_meta.key))[0])
            total = int(seal["task_count"])
        except (jobspaces.NotFound, ValueError, KeyError, TypeError):
            verdict.reason = "its seal cannot be read"
            continue
        total += sum(1 for k in keys if k.startswith(layout.dynamic_prefix(job)))
        done = [m async for m in js.list(layout.done_prefix(job))]
        verdict.finished = len(done) >= total
        verdict.last = max([spec_meta.mtime, *(m.mtime for m in done)])
        if not verdict.finished:
            verdict.reason = f"running: {len(done)} of {total} tasks decided"
        elif verdict.last > cutoff:
            verdict.reason = "finished too recently"
        else:
            verdict.remove = True
    # A kept job may read the outputs of earlier ones (Qfile reuse): those stay too.
    for job, verdict in verdicts.items():
        if verdict.remove:
            continue
        config = specs.get(job, {}).get("config")
        config = config if isinstance(config, dict) else {}
        fresh = config.get("fresh")
        fresh = fresh if isinstance(fresh, dict) else {}
        read = [*(config.get("reuse") or []), *(v[0] for v in fresh.values() if isinstance(v, list) and v)]
        for earlier in read:
            other = verdicts.get(str(earlier))
            if other is not None and other.remove and other.reason != "an earlier gc was interrupted":
                other.remove, other.reason = False, f"reused by job {job}"
    removed = {j for j, v in verdicts.items() if v.remove}
    ready: dict[str, list[str]] = defaultdict(list)
    if removed:
        async for meta in js.list("ready/"):
            try:
                job = layout.parse_ready(meta.key)[1]
            except ValueError:
                continue
            if job in removed:
                ready[job].append(meta.key)
    for job in sorted(removed):
        verdict = verdicts[job]
        verdict.objects = await _remove(js, job, [m.key for m in under[job]], ready[job], dry_run=dry_run)
        report.objects += verdict.objects
    report.jobs = [verdicts[j] for j in sorted(verdicts)]
    # Code bundles that no kept job uses, and presence of agents gone since the cutoff.
    used = {str(s.get("code")) for j, s in specs.items() if j not in removed and s.get("code")}
    stale: list[str] = []
    async for meta in js.list("code/"):
        digest = meta.key[len("code/"):].removesuffix(".tar.gz")
        if digest not in used and meta.mtime <= cutoff:
            stale.append(meta.key)
            report.bundles.append(digest)
    async for meta in js.list("nodes/"):
        if meta.mtime <= cutoff:
            stale.append(meta.key)
            report.nodes.append(meta.key[len("nodes/"):].removesuffix(".json"))
    report.objects += len(stale)
    if not dry_run:
        await _delete_all(js, stale)
    return report
