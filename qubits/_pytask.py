"""Running one Python task on a node (kind "python": ``submit``; kind "map": ``map``).

Called by ``nodeagent._pyexec`` in the task's own process, or by a pooled worker
(``nodeagent._pyworker``) that runs many tasks one after another. Reads the job's function and params
and the task's items from the spec (see ``qubits._wire`` for how values travel); dataset chunks come
from the node's data cache (``$QUBITS_DATA``), fetched from ``data/{sha256}`` only when missing.

Writes ``$QUBITS_SCRATCH/result``: the return value, pickled (a map task: the list of its items'
results; ``batched``: the function's one value for the chunk). When the function raises, ``result``
holds an error envelope (the exception pickled when it can be, its type, message and the remote
traceback) and ``error.json`` says whether to retry (``retry_exceptions``; by default an exception is
final: a map user wants it raised, not tried three times). Exit status 0 on success, 1 on error.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import jobspaces

from . import _layout as layout
from ._datacache import DataCache
from ._dataset import decode_chunk
from ._wire import decode, dumps, loads

_jobspaces: dict[str, jobspaces.SyncJobspace] = {}
"""Open jobspaces by URL: a pooled worker keeps its connection across tasks."""


def data_cache() -> DataCache:
    """This node's data cache: $QUBITS_DATA, else $QUBITS_CACHE/data, else ~/.cache/qubits/data."""
    root = os.environ.get("QUBITS_DATA")
    if root:
        return DataCache(Path(root))
    return DataCache(Path(os.environ.get("QUBITS_CACHE", "~/.cache/qubits")).expanduser() / "data")


class Fetcher:
    """Blobs through the node's cache; a miss is fetched from the task's jobspace."""

    def __init__(self, cache: DataCache | None = None) -> None:
        self.cache = cache or data_cache()

    def jobspace(self) -> jobspaces.SyncJobspace:
        """The task's jobspace (one connection per process)."""
        url = os.environ["QUBITS_JOBSPACE"]
        js = _jobspaces.get(url)
        if js is None:
            js = _jobspaces[url] = jobspaces.SyncJobspace(jobspaces.open_jobspace(url))
        return js

    def path(self, digest: str) -> Path:
        """The local file of a blob, fetched if needed."""
        if self.cache.touch(digest):
            return self.cache.path(digest)
        data, _ = self.jobspace().get(layout.data_chunk(digest))
        return self.cache.put(digest, data)

    def get(self, digest: str) -> bytes:
        data = self.cache.read(digest)
        if data is not None:
            return data
        return self.path(digest).read_bytes()


def _items(payload: dict[str, Any], fetch: Fetcher) -> Any:
    if "chunk" in payload:
        digest, fmt = str(payload["chunk"]), str(payload.get("format") or "pickle")
        if fmt == "file":
            return decode_chunk(fmt, None, fetch.path(digest))
        return decode_chunk(fmt, fetch.get(digest), None)
    return decode(payload["items"], fetch.get)


def _call(spec: dict[str, Any], fetch: Fetcher) -> Any:
    task, job = spec["task"], spec["job"]
    conf: dict[str, Any] = (job.get("config") or {}).get("map") or {}
    payload: dict[str, Any] = task.get("payload") or {}
    fn = decode(payload.get("fn") or conf["fn"], fetch.get)
    if task.get("kind") == "python":
        args, kwargs = decode(payload["call"], fetch.get)
        if payload.get("refs"):  # futures passed as arguments: their results, read here (see _compose)
            from ._compose import Results, fill

            args, kwargs = fill((args, kwargs), Results(fetch.jobspace()).read)
        return fn(*args, **kwargs)
    extra = () if "params" not in conf else (decode(conf["params"], fetch.get),)
    items = _items(payload, fetch)
    if payload.get("format") == "file":
        items = [items]
    if conf.get("batched"):
        return fn(items, *extra)
    return [fn(item, *extra) for item in items]


def _remote_traceback(exc: BaseException) -> str:
    """The traceback from the user's code down (this module's frames left out)."""
    tb = exc.__traceback__
    here = os.path.abspath(__file__)
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == here:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def envelope(exc: BaseException, tb: str) -> dict[str, Any]:
    """What a client needs to raise the remote exception again."""
    pickled: bytes | None = None
    try:
        data = dumps(exc)
        loads(data)  # an exception whose __init__ takes other args than it stores does not load back
        pickled = data
    except Exception:  # noqa: BLE001 - the type, message and traceback still travel
        pickled = None
    cls = type(exc)
    return {
        "qubits_error": 1,
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "message": str(exc),
        "traceback": tb,
        "exception": pickled,
        "node": os.environ.get("QUBITS_NODE", ""),
    }


def run_python(spec: dict[str, Any], scratch: Path) -> int:
    """Run the task of ``spec`` ({"task": TaskSpec dict, "job": JobSpec dict}); the exit status."""
    conf = (spec["job"].get("config") or {}).get("map") or {}
    try:
        value = _call(spec, Fetcher())
        try:
            data = dumps(value)
        except Exception as exc:  # noqa: BLE001 - reported like any error of the function
            raise TypeError(f"the function's return value does not pickle: {exc}") from exc
    except BaseException as exc:  # noqa: BLE001 - everything the user's code raises is reported
        tb = _remote_traceback(exc)
        sys.stderr.write(tb)
        sys.stderr.flush()
        (scratch / "result").write_bytes(dumps(envelope(exc, tb)))
        error = f"{type(exc).__name__}: {exc}"
        (scratch / "error.json").write_text(
            json.dumps({"error": error[:2000], "traceback": tb[-20000:], "retry": bool(conf.get("retry"))})
        )
        return 1
    (scratch / "result").write_bytes(data)
    return 0
