"""The parts of map that need no agent: the data cache, datasets, how values travel, the task runner."""

from __future__ import annotations

import base64
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

import jobspaces
import qubits
from qubits import _layout as layout
from qubits import _wire as wire
from qubits._datacache import DataCache, parse_size
from qubits._dataset import decode_chunk
from qubits._futures import RemoteTraceback, remote_exception, with_source
from qubits._pytask import run_python
from qubits._records import Done


def _digest(data: bytes) -> str:
    return wire.digest(data)


# -- the data cache ------------------------------------------------------------------------------------
def test_the_data_cache_evicts_least_recently_used_first_but_never_a_blob_in_use(tmp_path: Path) -> None:
    cache = DataCache(tmp_path, max_bytes=1000)
    blobs = [bytes([i]) * 100 for i in range(3)]
    digests = [_digest(b) for b in blobs]
    for i, (d, b) in enumerate(zip(digests, blobs, strict=True)):
        cache.put(d, b)
        old = time.time() - 3600 + i  # used long ago, oldest first
        os.utime(cache.path(d), (old, old))
    cache.max_bytes = 250
    cache.read(digests[0])  # now the most recently used
    extra = b"x" * 100
    cache.put(_digest(extra), extra)
    held = set(cache.digests())
    assert digests[0] in held and _digest(extra) in held  # used just now: kept
    assert digests[1] not in held and digests[2] not in held
    assert cache.size() <= 250


def test_the_data_cache_refuses_bytes_that_do_not_match_their_digest(tmp_path: Path) -> None:
    cache = DataCache(tmp_path, max_bytes=1 << 20)
    with pytest.raises(ValueError, match="do not match"):
        cache.put(_digest(b"a"), b"b")
    with pytest.raises(ValueError, match="not a sha256"):
        cache.path("../etc/passwd")
    assert cache.read(_digest(b"a")) is None


def test_sizes_parse_with_units() -> None:
    assert parse_size("500M") == 500 << 20 and parse_size("2G") == 2 << 30 and parse_size("1024") == 1024
    with pytest.raises(ValueError, match="like 500M"):
        parse_size("lots")


# -- datasets ------------------------------------------------------------------------------------------
def test_a_dataset_is_cut_into_content_addressed_chunks_that_decode_back() -> None:
    items = [{"n": i, "s": str(i)} for i in range(25)]
    ds = qubits.Dataset(items, chunksize=10)
    assert len(ds) == 25 and [c.count for c in ds.chunks] == [10, 10, 5]
    assert [c.digest for c in qubits.Dataset(list(items), chunksize=10).chunks] == [c.digest for c in ds.chunks]
    assert decode_chunk("pickle", ds.encode(2), None) == items[20:]

    arr = np.arange(30.0).reshape(10, 3)
    rows = qubits.Dataset(arr, chunksize=4)
    assert [c.format for c in rows.chunks] == ["npy"] * 3
    assert np.array_equal(decode_chunk("npy", rows.encode(1), None), arr[4:8])
    assert rows.chunks[0].digest == qubits.Dataset(arr.copy(), chunksize=4).chunks[0].digest
    assert qubits.Dataset(np.zeros((1000, 10))).chunksize == math.ceil(1000 / 16)


def test_a_dataset_uploads_missing_chunks_once(memory_url: str) -> None:
    counting = jobspaces.CountingJobspace(jobspaces.open_jobspace(memory_url))
    ds = qubits.Dataset(list(range(30)), chunksize=10)
    sent = jobspaces.run_sync(ds.upload(counting))
    assert sent == sum(c.size for c in ds.chunks) and counting.counts()["PUT_CREATE data"] == 3
    counting.reset()
    assert jobspaces.run_sync(ds.upload(counting)) == 0 and counting.total() == 0  # remembered: no request
    twin = qubits.Dataset(list(range(30)), chunksize=10)
    assert jobspaces.run_sync(twin.upload(counting)) == 0
    assert counting.counts() == {"HEAD data": 3}  # asked, found, not sent


def test_a_dataset_of_files_hands_out_paths(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        p = tmp_path / f"f{i}.txt"
        p.write_text(f"file {i}")
        paths.append(p)
    ds = qubits.Dataset.files(paths)
    assert len(ds) == 3 and [c.name for c in ds.chunks] == ["f0.txt", "f1.txt", "f2.txt"]
    assert ds.chunks[1].digest == _digest(b"file 1")
    with pytest.raises(qubits.UsageError, match="not a file"):
        qubits.Dataset.files([tmp_path / "nope"])


def test_bad_datasets_are_refused_with_a_reason() -> None:
    with pytest.raises(qubits.UsageError, match="list, a numpy array or files"):
        qubits.Dataset("abc")
    with pytest.raises(qubits.UsageError, match="at least 1"):
        qubits.Dataset([1], chunksize=0)


# -- how functions travel --------------------------------------------------------------------------------
def local_function(x: int) -> int:
    return x + 1


def test_functions_travel_by_reference_when_nodes_can_import_them() -> None:
    assert wire.reference(math.sqrt) == "math:sqrt"
    assert wire.reference(json.dumps) == "json:dumps"
    assert wire.reference("pkg.mod:fn") == "pkg.mod:fn"
    assert wire.reference(local_function) is None  # this test module is not installed on nodes
    assert wire.reference(lambda x: x) is None
    root = Path(__file__).resolve().parents[2]
    assert wire.reference(local_function, code_root=root) == f"{__name__}:local_function"  # synced code
    with pytest.raises(qubits.UsageError, match="module:qualname"):
        wire.reference("no-colon")


def test_big_values_travel_as_blobs_and_small_ones_inline() -> None:
    blobs: wire.Blobs = {}
    small = wire.encode_value([1, 2, 3], blobs)
    big = wire.encode_value(b"x" * (wire.INLINE_MAX + 1), blobs)
    assert "pickle" in small and "data" in big and list(blobs) == [big["data"]]
    assert wire.decode(small, blobs.__getitem__) == [1, 2, 3]
    assert wire.decode(big, blobs.__getitem__) == b"x" * (wire.INLINE_MAX + 1)
    with wire.by_value():
        fn = wire.encode_fn(local_function, blobs)
    assert wire.decode(fn, blobs.__getitem__)(1) == 2


# -- the task runner, in this process ----------------------------------------------------------------------
def _spec(fn: object, payload: dict[str, object], *, params: object = None, batched: bool = False, kind: str = "map") -> dict[str, object]:
    blobs: wire.Blobs = {}
    with wire.by_value():
        conf: dict[str, object] = {"fn": wire.encode_fn(fn, blobs), "batched": batched, "retry": False}
        if params is not None:
            conf["params"] = wire.encode_value(params, blobs)
    return {"task": {"id": "i0", "kind": kind, "payload": payload}, "job": {"id": "j", "config": {"map": conf}}}


def fails(x: int) -> int:
    raise KeyError(f"no {x}")


def test_the_runner_writes_results_and_error_envelopes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUBITS_DATA", str(tmp_path / "data"))
    items = {"items": wire.encode_value([1, 2, 3], {})}
    assert run_python(_spec(local_function, items), tmp_path) == 0
    assert wire.loads((tmp_path / "result").read_bytes()) == [2, 3, 4]

    assert run_python(_spec(lambda xs, p: sum(xs) * p, items, params=10, batched=True), tmp_path) == 0
    assert wire.loads((tmp_path / "result").read_bytes()) == 60

    call = {"call": wire.encode_value(((2, 5), {}), {})}
    assert run_python(_spec(pow, call, kind="python"), tmp_path) == 0
    assert wire.loads((tmp_path / "result").read_bytes()) == 32

    assert run_python(_spec(fails, items), tmp_path) == 1
    env = wire.loads((tmp_path / "result").read_bytes())
    assert env["type"] == "builtins.KeyError" and "in fails" in env["traceback"] and "_pytask" not in env["traceback"]
    assert json.loads((tmp_path / "error.json").read_text())["retry"] is False
    exc = remote_exception(Done("j", "i0", "failed", 1, holder="n1"), env)
    assert isinstance(exc, KeyError) and isinstance(exc.__cause__, RemoteTraceback)
    assert "raise KeyError" in str(exc.__cause__)


def test_the_runner_reads_chunks_through_the_node_cache(tmp_path: Path, memory_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = qubits.Dataset(np.arange(12.0).reshape(6, 2), chunksize=3)
    chunk = ds.chunks[1]
    js = jobspaces.SyncJobspace(jobspaces.open_jobspace(memory_url))
    js.put(layout.data_chunk(chunk.digest), ds.encode(1))
    monkeypatch.setenv("QUBITS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("QUBITS_JOBSPACE", memory_url)
    spec = _spec(lambda block: block.sum(axis=1).tolist(), chunk.payload(), batched=True)
    assert run_python(spec, tmp_path) == 0  # fetched (a miss), then cached
    assert wire.loads((tmp_path / "result").read_bytes()) == [13.0, 17.0, 21.0]
    assert DataCache(tmp_path / "data").has(chunk.digest)
    js.delete(layout.data_chunk(chunk.digest))
    assert run_python(spec, tmp_path) == 0  # served from the cache: the store is not asked


def test_an_exception_that_does_not_unpickle_comes_back_as_task_failed() -> None:
    env = {"qubits_error": 1, "type": "mod.Odd", "message": "odd", "traceback": "Traceback ...\nmod.Odd: odd\n", "exception": b"not a pickle"}
    exc = remote_exception(Done("j", "t", "failed", 1, holder="n1"), env)
    assert isinstance(exc, qubits.TaskFailed) and exc.remote_traceback and "mod.Odd: odd" in str(exc)
    plain = remote_exception(Done("j", "t", "failed", 2, error="timed out after 1s"), None)
    assert isinstance(plain, qubits.TaskFailed) and "timed out" in str(plain)


def test_a_node_traceback_gets_its_source_lines_from_the_client_files() -> None:
    # The node has no copy of a function pickled by value; its traceback names the client's file and
    # line (cloudpickle alone would say "<dynamic-code>"), and the client fills in the source.
    fn = wire.loads(wire.dumps(fails))
    assert fn.__code__.co_filename == fails.__code__.co_filename
    line = fails.__code__.co_firstlineno + 1
    node_tb = f'Traceback (most recent call last):\n  File "{__file__}", line {line}, in fails\nKeyError: \'no 1\'\n'
    assert with_source(node_tb).splitlines()[2] == '    raise KeyError(f"no {x}")'
    assert with_source(with_source(node_tb)) == with_source(node_tb)  # lines already there are kept


def test_a_done_record_whose_inline_result_is_not_base64_is_reported_corrupt() -> None:
    from qubits._records import Done
    from qubits.errors import CorruptObject

    good = Done("j", "t", "succeeded", 1, has_result=True, value=base64.b64encode(b"abc").decode())
    assert Done.from_json(good.to_json()).inline_result() == b"abc"
    assert Done("j", "t", "succeeded", 1, has_result=True).inline_result() is None
    with pytest.raises(CorruptObject, match="not base64"):
        Done("j", "t", "succeeded", 1, has_result=True, value="**not base64**").inline_result()


def test_a_pooled_worker_gives_each_task_exactly_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from nodeagent._pyworker import _set_environ

    monkeypatch.setenv("LEFT_BY_THE_LAST_TASK", "1")
    monkeypatch.setenv("QUBITS_TASK", "t1")
    monkeypatch.delenv("NEW", raising=False)  # so that monkeypatch removes it again afterwards
    target = {**{k: v for k, v in os.environ.items() if k != "LEFT_BY_THE_LAST_TASK"}, "QUBITS_TASK": "t2", "NEW": "x"}
    _set_environ(target)
    assert dict(os.environ) == target
