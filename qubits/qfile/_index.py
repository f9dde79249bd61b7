"""The index of made targets: ``targets/{identity}.json`` names the run whose outputs any job may reuse,
``targets/last/{task}.json`` the identity a target was last made with (``make --why`` compares them).

A target's runner records its identity and output digest in its ``result``. The index entry is written
once that run is decided succeeded: by the dependent or the job's root that reads it, and by ``make``
for every target of a finished job. So an entry always names a committed run (create-only: the first
one stays; a target made again because its output went missing replaces it). Planning on the client
(``assess``) walks the graph from its leaves: a target whose identity has an entry is made already.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import jobspaces
from jobspaces import SyncJobspace

from .. import _layout as layout
from .._defaults import LOOKUP_CONCURRENCY, TARGET_MANIFESTS_READ
from .._records import Done, Outcome
from ._fresh import Identities, explain, identity_of
from ._graph import Node
from ._model import Qfile
from ._tasks import target_task_id


def _get_json(js: SyncJobspace, key: str) -> dict[str, Any] | None:
    try:
        raw = json.loads(js.get(key)[0])
    except (jobspaces.NotFound, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def lookup(js: SyncJobspace, identity: str) -> dict[str, Any] | None:
    """The index entry of ``identity`` ({target, identity, output, job, task, attempt}), or None."""
    return _get_json(js, layout.target_index(identity))


def last(js: SyncJobspace, target: str) -> dict[str, Any] | None:
    """The components of the identity ``target`` was last made with, or None."""
    return _get_json(js, layout.target_last(target_task_id(target)))


def _entry(made: dict[str, Any], run: tuple[str, str, int]) -> dict[str, Any]:
    return {"target": made.get("target"), "identity": made["identity"], "output": made.get("output"),
            "job": run[0], "task": run[1], "attempt": run[2]}


def record(js: SyncJobspace, made: dict[str, Any], run: tuple[str, str, int]) -> dict[str, Any] | None:
    """Index a succeeded run from what its runner recorded (``made``: its result); its entry. A reused
    target's result points at the run that made it; that one is indexed already (None)."""
    identity = made.get("identity")
    if not isinstance(identity, str) or made.get("reused"):
        return None
    entry = _entry(made, run)
    data = json.dumps(entry).encode()
    key = layout.target_index(identity)
    if int(made.get("round") or 0) > 0:
        js.put(key, data)  # made again because the old run's output went missing: this one replaces it
    else:
        try:
            js.put(key, data, if_absent=True)
        except jobspaces.PreconditionFailed:
            return entry  # indexed already (by another dependent, or made by someone else too: the first stays)
    components = made.get("components")
    if isinstance(components, dict) and made.get("target"):
        js.put(layout.target_last(target_task_id(str(made["target"]))), json.dumps(components).encode())
    return entry


def record_job(js: SyncJobspace, job: str) -> int:
    """Index every succeeded target of a finished ``job`` (targets whose dependents failed included),
    and write its manifest (all its entries in one object); how many there were."""
    entries: list[dict[str, Any]] = []
    prefix = layout.done_prefix(job)
    for meta in js.list(prefix):
        try:
            done = Done.from_json(js.get(meta.key)[0], meta.key)
        except jobspaces.NotFound:
            continue
        if done.outcome != Outcome.SUCCEEDED.value:
            continue
        tid = meta.key[len(prefix) : -len(".json")]
        made = _get_json(js, layout.result(job, tid, done.attempt))
        entry = record(js, made, (job, tid, done.attempt)) if made is not None else None
        if entry is not None:
            entries.append(entry)
    write_manifest(js, job, entries)
    return len(entries)


def write_manifest(js: SyncJobspace, job: str, entries: list[dict[str, Any]]) -> None:
    if entries:
        js.put(layout.target_manifest(job), json.dumps({e["identity"]: e for e in entries}).encode())


def manifests(js: SyncJobspace) -> dict[str, dict[str, Any]]:
    """Index entries from the manifests of the newest jobs (TARGET_MANIFESTS_READ), by identity."""
    keys = sorted((m.key for m in js.list(layout.TARGET_MANIFESTS)), reverse=True)[:TARGET_MANIFESTS_READ]
    out: dict[str, dict[str, Any]] = {}
    for key in reversed(keys):  # newest last: its entries win
        raw = _get_json(js, key)
        out.update({k: v for k, v in (raw or {}).items() if isinstance(v, dict)})
    return out


@dataclass
class Verdict:
    """What the client can tell of one target before running anything."""

    target: str
    fresh: bool
    entry: dict[str, Any] | None = None
    """The index entry reused, when fresh."""
    components: dict[str, Any] | None = None
    why: list[str] = field(default_factory=list)


def lookups(js: SyncJobspace, identities: list[str]) -> list[dict[str, Any] | None]:
    """The index entries of ``identities``, read concurrently (LOOKUP_CONCURRENCY at a time)."""
    sem = asyncio.Semaphore(LOOKUP_CONCURRENCY)

    async def one(identity: str) -> dict[str, Any] | None:
        async with sem:
            try:
                raw = json.loads((await js.aio.get(layout.target_index(identity)))[0])
            except (jobspaces.NotFound, ValueError):
                return None
        return raw if isinstance(raw, dict) else None

    async def every() -> list[dict[str, Any] | None]:
        return list(await asyncio.gather(*(one(i) for i in identities)))

    return jobspaces.run_sync(every()) if identities else []


def assess(qfile: Qfile, config: dict[str, Any], nodes: list[Node], js: SyncJobspace, *, explain_: bool = False) -> dict[str, Verdict]:
    """Which of the planned ``nodes`` (dependencies first) are made already, by identity.

    A target is fresh when all its dependencies are and the entry of its identity exists. A target
    whose dependencies are decided on the node, or that depends on one not fresh, is not fresh here
    (its node decides). With ``explain_``, ``why`` says in words what changed since its last make.
    The graph is read a level at a time (a target's level is one more than its deepest dependency's),
    each level's entries at once.
    """
    ids = Identities(qfile.project, config)
    known = manifests(js)
    level: dict[str, int] = {}
    for node in nodes:
        level[node.target] = 1 + max((level[d] for d in node.deps), default=-1)
    by_level: dict[int, list[Node]] = {}
    for node in nodes:
        by_level.setdefault(level[node.target], []).append(node)
    out: dict[str, Verdict] = {}
    for depth in sorted(by_level):
        asked: list[tuple[Node, dict[str, Any]]] = []
        for node in by_level[depth]:
            if node.dynamic:
                out[node.target] = Verdict(node.target, False, why=["its dependencies are decided on the node when it runs (checked there)"])
                continue
            stale = [d for d in node.deps if not out[d].fresh]
            if stale:
                out[node.target] = Verdict(node.target, False, why=[f"dependency {d} is not made yet or is made again" for d in stale])
                continue
            deps = {d: str((out[d].entry or {}).get("output")) for d in node.deps}
            asked.append((node, ids.components(node.match or qfile.match(node.target), deps)))
        identities = [identity_of(c) for _, c in asked]
        unknown = [i for i in identities if i not in known]
        known.update({i: e for i, e in zip(unknown, lookups(js, unknown), strict=True) if e is not None})
        for (node, components), identity in zip(asked, identities, strict=True):
            entry = known.get(identity)
            verdict = Verdict(node.target, entry is not None, entry, components)
            if entry is None and explain_:
                verdict.why = explain(components, last(js, node.target))
            out[node.target] = verdict
    return out

def why(qfile: Qfile, config: dict[str, Any], nodes: list[Node], js: SyncJobspace, target: str, *, force: bool = False, forced: set[str] | None = None) -> list[str]:
    """Why ``make`` runs or reuses ``target`` (one of the planned ``nodes``), in lines of words."""
    forced = forced or set()
    if force:
        return [f"{target} runs: -B makes everything again"]
    if target in forced:
        return [f"{target} runs: it is forced (--force), or depends on a forced target"]
    verdicts = assess(qfile, config, nodes, js, explain_=True)
    v = verdicts[target]
    if v.fresh and v.entry is not None:
        e = v.entry
        return [f"{target} is reused: job {e['job']} made it (task {e['task']}, attempt {e['attempt']}) with the same "
                f"identity {str(e['identity'])[:12]}: same code, config, input files and dependencies' outputs"]
    lines = [f"{target} runs:"] + [f"  {w}" for w in v.why]
    shown = {target}
    todo = [w.split()[1] for w in v.why if w.startswith("dependency ")]
    while todo:
        dep = todo.pop(0)
        if dep in shown or dep not in verdicts:
            continue
        shown.add(dep)
        lines += [f"  {dep} runs: " + "; ".join(verdicts[dep].why)]
        todo += [w.split()[1] for w in verdicts[dep].why if w.startswith("dependency ")]
    if len(lines) > 1 and any(w.startswith("dependency ") for w in v.why):
        lines.append(f"  ({target} is still reused if what its dependencies make again comes out the same: decided on the node)")
    return lines
