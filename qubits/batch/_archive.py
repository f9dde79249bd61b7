"""Results of batches, archived per ``namespace/batch/job/`` in the jobspace, and pulled back.

    archive/{namespace}/{batch}/{job}/out/…        files the job wrote to $QUBITS_OUTPUT
    archive/{namespace}/{batch}/{job}/stdout.log   its standard output (the winning attempt's)
    archive/{namespace}/{batch}/{job}/stderr.log   its standard error
    archive/{namespace}/{batch}/{job}/result.json  outcome, attempt, node, exit code, error, and the
                                                   size and sha256 of every file above
    archive/{namespace}/{batch}/_init/{node}.log   output of the init step on each node

The agent that commits a task writes its archive from the winning attempt's objects
(``runs/{job}/{task}/{attempt}/``) right after the commit, so only decided outcomes are archived and a
zombie attempt never writes here. A batch submitted again under the same name replaces each job's
folder as its jobs finish. ``pull`` downloads with include/exclude regexes, skips files already
present with equal size and sha256 (so it resumes), and refuses any path that would leave DEST.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jobspaces
from jobspaces import Jobspace, run_sync

from .. import _layout as layout
from .._client import Client
from .._records import JobSpec
from ..errors import NotFoundError, UsageError
from ._distribute import source_of
from ._model import NAME

ARCHIVE = layout.ARCHIVE


def job_prefix(namespace: str, batch: str, job: str) -> str:
    """The archive folder of one batch job."""
    return f"{layout.archive_prefix(namespace, batch)}{job}/"


def batch_of(spec: JobSpec) -> dict[str, Any]:
    """The batch section of a batch job's config; UsageError if the job is not a batch."""
    cfg = spec.config.get("batch") if spec.kind == "batch" else None
    if not isinstance(cfg, dict):
        raise UsageError(f"job {spec.id} is not a batch (kind {spec.kind!r})")
    return cfg


async def archive_task(
    js: Jobspace, spec: JobSpec, task: str, *, outcome: str, attempt: int, holder: str,
    exit_code: int | None, error: str | None, name: str | None = None,
) -> str:
    """Copy one decided attempt's outputs and logs into the archive; returns the job's archive folder."""
    cfg = batch_of(spec)
    prefix = job_prefix(cfg["namespace"], cfg["batch"], name or task)
    run = layout.run_prefix(spec.id, task, attempt)
    files: dict[str, dict[str, Any]] = {}
    streams: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    async for meta in js.list(run):
        rest = meta.key[len(run):]
        kind, _, rel = rest.partition("/")
        if kind == "out" and rel:
            data, _ = await js.get(meta.key)
            await js.put(f"{prefix}out/{rel}", data)
            files[f"out/{rel}"] = _fingerprint(data)
        elif kind in streams:
            streams[kind].append((await js.get(meta.key))[0])  # parts list in name order
    for stream, parts in streams.items():
        data = b"".join(parts)
        await js.put(f"{prefix}{stream}.log", data)
        files[f"{stream}.log"] = _fingerprint(data)
    result = {
        "namespace": cfg["namespace"], "batch": cfg["batch"], "job": name or task, "qubits_job": spec.id,
        "task": task, "outcome": outcome, "attempt": attempt, "node": holder, "exit_code": exit_code,
        "error": error, "archived": time.time(), "files": files,
    }
    await js.put(f"{prefix}result.json", json.dumps(result, indent=1, sort_keys=True).encode())
    async for meta in js.list(prefix):  # files of an earlier run of this batch name that this one did not make
        rel = meta.key[len(prefix):]
        if rel != "result.json" and rel not in files:
            await js.delete(meta.key)
    return prefix


def _fingerprint(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


# -- pull ----------------------------------------------------------------------------------------------
@dataclass
class Entry:
    """One file to pull: its path under DEST, the object(s) it is made of, size and digest if known."""

    rel: str
    keys: list[str]
    size: int | None = None
    sha256: str | None = None


@dataclass
class PullReport:
    """What a pull did (or, in a dry run, would do)."""

    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Already present with equal size and digest."""
    filtered: list[str] = field(default_factory=list)
    """Left out by --include/--exclude."""
    bytes: int = 0


def safe_target(dest: Path, rel: str) -> Path:
    """``dest/rel``, refusing any path that would land outside ``dest`` (absolute, '..', a link out)."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\\" in rel or "\x00" in rel or any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"refusing to write {rel!r}: it would land outside {dest}")
    root = dest.resolve()
    target = (root / rel).resolve()
    if root != target and root not in target.parents:
        raise UsageError(f"refusing to write {rel!r}: it resolves to {target}, outside {dest}")
    return root / rel


def resolve_source(client: Client, source: str | None) -> tuple[str | None, JobSpec | None]:
    """``namespace/batch`` or a job id (default: the last job) → (archive prefix, the job whose
    decided tasks to read directly when their archive is not written yet: the named job, or the
    latest job of that batch). A job that is not a batch has no archive: (None, its spec)."""
    if source and (path := source_of(source)) is not None:  # the batch file itself, as distribute pulls
        from ._load import load_batch

        loaded = load_batch(path)
        source = f"{loaded.namespace}/{loaded.name}"
    if source and "/" in source:
        ns, _, batch = source.partition("/")
        if not NAME.fullmatch(ns) or not NAME.fullmatch(batch):
            raise UsageError(f"{source!r} is not namespace/batch (plain names, no further '/')")
        latest = [s for s in client.jobs() if s.kind == "batch" and s.name == f"{ns}/{batch}"]
        return layout.archive_prefix(ns, batch), (latest[-1] if latest else None)
    job = client.last() if source in (None, "", "last") else client.job(source)
    spec = job.spec()
    if spec.kind != "batch":
        return None, spec
    cfg = batch_of(spec)
    return layout.archive_prefix(cfg["namespace"], cfg["batch"]), spec


def entries(client: Client, prefix: str, spec: JobSpec | None = None) -> list[Entry]:
    """Every file under an archive prefix (``archive/ns/batch/``). For ``spec``'s decided tasks whose
    archive is missing or from an earlier run (the committer archives right after its commit, so for a
    moment after a job is decided — or for good if it died in between), the files come straight from
    the winning attempt's objects instead."""
    js = client.aio
    keys = run_sync(js.list_all(prefix))
    by_job: dict[str, list[jobspaces.ObjectMeta]] = {}
    for meta in keys:
        by_job.setdefault(meta.key[len(prefix):].split("/", 1)[0], []).append(meta)
    manifests: dict[str, dict[str, Any]] = {}
    for name, metas in by_job.items():
        if any(m.key == f"{prefix}{name}/result.json" for m in metas):
            try:
                manifests[name] = json.loads(run_sync(js.get(f"{prefix}{name}/result.json"))[0])
            except (ValueError, jobspaces.NotFound):
                continue
    direct_entries: list[Entry] = []
    if spec is not None:
        for task, (_chunk, t) in run_sync(client.specs.all_tasks(spec.id)).items():
            name = str(t.payload.get("batch_job") or task)
            if manifests.get(name, {}).get("qubits_job") == spec.id:
                continue  # archived from this job already
            attempt = attempt_entries(client, spec.id, task, f"{prefix}{name}/"[len(ARCHIVE):])
            if attempt is None:
                continue  # not decided (or never ran): whatever the archive holds stands
            by_job[name] = []  # the archive's copy is missing or stale: replaced by the attempt's objects
            manifests.pop(name, None)
            direct_entries += attempt
    out: dict[str, Entry] = {}
    for name, metas in by_job.items():
        files = manifests.get(name, {}).get("files", {})
        for meta in metas:
            rel = meta.key[len(prefix) + len(name) + 1:]
            out[meta.key[len(ARCHIVE):]] = Entry(meta.key[len(ARCHIVE):], [meta.key], meta.size, files.get(rel, {}).get("sha256"))
    for e in direct_entries:
        out[e.rel] = e
    return [out[k] for k in sorted(out)]


def attempt_entries(client: Client, job: str, task: str, base: str) -> list[Entry] | None:
    """The files of a decided task's winning attempt, under ``base``: out/… (what it wrote to
    $QUBITS_OUTPUT), stdout.log and stderr.log; None while the task is not decided (or never ran)."""
    done = client.done_record(job, task)
    if done is None or not done.attempt:
        return None
    run = layout.run_prefix(job, task, done.attempt)
    streams: dict[str, list[jobspaces.ObjectMeta]] = {"stdout": [], "stderr": []}
    files = []
    for meta in run_sync(client.aio.list_all(run)):
        kind, _, rest = meta.key[len(run):].partition("/")
        if kind == "out" and rest:
            files.append(meta)
        elif kind in streams:
            streams[kind].append(meta)
    out = [Entry(f"{base}out/{m.key[len(run) + 4:]}", [m.key], m.size) for m in files]
    return out + [Entry(f"{base}{k}.log", [m.key for m in ms], sum(m.size for m in ms)) for k, ms in streams.items()]


_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._()+,=@-]*")


def job_entries(client: Client, spec: JobSpec) -> list[Entry]:
    """Every decided task's files of any job (commands, Qfile, map …), under ``{job}/{task}/``: the task's
    name where it makes a plain folder name (a Qfile target), else its id (a command line does not)."""
    out: list[Entry] = []
    for task, (_chunk, t) in sorted(run_sync(client.specs.all_tasks(spec.id)).items()):
        folder = t.name if spec.kind == "qfile" and _SEGMENT.fullmatch(t.name or "") else task
        out += attempt_entries(client, spec.id, task, f"{spec.id}/{folder}/") or []
    return out


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pull(
    client: Client, source: str | None, dest: str | os.PathLike[str], *,
    include: Iterable[str] = (), exclude: Iterable[str] = (), dry_run: bool = False,
) -> PullReport:
    """Download a batch's archive into ``dest/namespace/batch/job/…``; or, for any other job, each
    decided task's outputs and logs into ``dest/{job}/{task}/…`` (see ``job_entries``).

    ``include``/``exclude`` are regexes searched in the path ``namespace/batch/job/file``: with any
    include, a file must match one; a file matching any exclude is left out. Files already present with
    equal size (and equal sha256 where the archive records it) are skipped, so an interrupted pull
    resumes. Every path is checked to stay inside ``dest`` before anything is written.
    """
    try:
        inc = [re.compile(p) for p in include]
        exc = [re.compile(p) for p in exclude]
    except re.error as err:
        raise UsageError(f"bad --include/--exclude regex: {err}") from None
    prefix, spec = resolve_source(client, source)
    root = Path(dest)
    if prefix is None:
        assert spec is not None
        items = job_entries(client, spec)
        if not items:
            raise NotFoundError(f"job {spec.id} has no decided task with outputs yet in {client.url}")
    else:
        items = entries(client, prefix, spec)
    if not items:
        raise NotFoundError(f"nothing archived under {prefix} in {client.url} (has a job of this batch finished?)")
    report = PullReport()
    plan = []
    for e in items:
        target = safe_target(root, e.rel)  # refuse before writing anything
        if (inc and not any(p.search(e.rel) for p in inc)) or any(p.search(e.rel) for p in exc):
            report.filtered.append(e.rel)
            continue
        plan.append((e, target))
    for e, target in plan:
        if target.is_file() and e.size is not None and target.stat().st_size == e.size and (
            e.sha256 is None or _sha256_file(target) == e.sha256
        ):
            report.skipped.append(e.rel)
            continue
        report.fetched.append(e.rel)
        if dry_run:
            report.bytes += e.size or 0
            continue
        data = b"".join(run_sync(client.aio.get(k))[0] for k in e.keys)
        target.parent.mkdir(parents=True, exist_ok=True)
        safe_target(root, e.rel)  # again: a folder made meanwhile must not be a link out
        tmp = target.with_name(f".{target.name}.part")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        report.bytes += len(data)
    return report
