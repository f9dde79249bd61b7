"""qubits.map with agents as real processes, on a local directory and on S3 (moto).

Each test states one promise: results come back in order; a remote exception is raised here with
its remote traceback and is not retried; pending items can be cancelled; a dataset is uploaded once
and each agent downloads only the chunks it lacks; agents prefer tasks whose chunks they hold; Python
tasks run in pooled workers (and in their own process when isolated); the examples run on the
embedded default.
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jobspaces
import qubits
from qubits import _layout as layout
from qubits._futures import RemoteTraceback
from qubits._records import Done
from tests.agents import AgentProcess, run_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["local", "s3"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("local_url" if request.param == "local" else "s3_url"))


class Fleet:
    """Agents for one test, each with its own cache folder and request-count file."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.agents: list[AgentProcess] = []

    def start(self, url: str, n: int = 1, *, slots: int = 2, **kw: object) -> list[AgentProcess]:
        out = []
        for _ in range(n):
            i = len(self.agents)
            env = {"QUBITS_COUNT_REQUESTS": str(self.counts_path(i))}
            a = AgentProcess(url, cache=self.cache(i), name=f"a{i}", slots=slots, ttl=2.0, env=env, **kw)  # type: ignore[arg-type]
            self.agents.append(a)
            out.append(a)
        return out

    def cache(self, i: int) -> Path:
        return self.tmp / f"cache-{i}"

    def counts_path(self, i: int) -> Path:
        return self.tmp / f"counts-{i}.json"

    def counts(self, i: int) -> dict[str, object]:
        return dict(json.loads(self.counts_path(i).read_text()))

    def stop(self) -> None:
        for a in self.agents:
            a.stop()


@pytest.fixture
def fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    f = Fleet(tmp_path)
    yield f
    f.stop()


def _wait_present(url: str, names: set[str], timeout: float = 30.0) -> None:
    client = qubits.connect(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if names <= {info.name for info, _age in client.nodes()}:
            return
        time.sleep(0.1)
    raise AssertionError(f"agents {names} did not show up")


# -- the functions mapped (they travel by value: this module is not installed on the "nodes") -------
def square(x: int) -> int:
    return x * x


def add(x: int, p: int) -> int:
    return x + p


def fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"three is not allowed (got {x})")
    return x


class OddError(Exception):
    """An exception that pickles but does not unpickle (its __init__ wants two arguments)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


def raises_odd(x: int) -> int:
    raise OddError(x, 0)


def sleepy(x: int, marker: str) -> int:
    with open(marker, "a") as fh:
        fh.write(f"{x}\n")
    time.sleep(0.4)
    return x


def chunk_total(items: list[int], p: int) -> int:
    return sum(items) * p


def slow_identity(x: int) -> int:
    time.sleep(0.005)
    return x


def pid(_x: object) -> int:
    return os.getpid()


def ticker(n: int, marker: str) -> int:
    for i in range(n):
        print(f"tick {i}", flush=True)
        with open(marker, "a") as fh:
            fh.write(f"{i} {os.getpid()}\n")
        time.sleep(0.1)
    return n


# -- results, errors -------------------------------------------------------------------------------
def test_results_come_back_in_order(url: str, fleet: Fleet) -> None:
    fleet.start(url, 2)
    m = qubits.map(square, range(25), jobspace=url)
    assert len(m) == 25
    assert m.results(timeout=120) == [x * x for x in range(25)]
    grouped = qubits.map(add, range(23), params=100, chunksize=5, jobspace=url)
    assert grouped.tasks == 5
    assert grouped.results(timeout=120) == [x + 100 for x in range(23)]
    assert [f.result() for f in grouped[20:]] == [120, 121, 122]


def blob(x: int) -> bytes:
    return bytes([x]) * (10_000 if x % 2 else 10)


def test_small_results_travel_in_done_records_and_large_ones_in_their_own_objects(url: str, fleet: Fleet) -> None:
    """A map of small values costs no result object (no PUT on the agent, no GET here); a value past
    INLINE_RESULT_MAX still comes back whole, through its own object."""
    fleet.start(url, 1)
    m = qubits.map(blob, range(6), jobspace=url)
    assert m.results(timeout=120) == [blob(x) for x in range(6)]
    js = jobspaces.SyncJobspace(jobspaces.open_jobspace(url))
    objects = {meta.key.split("/")[2] for meta in js.list(f"runs/{m.job.id}/") if meta.key.endswith("/result")}
    assert objects == {"i0000001", "i0000003", "i0000005"}
    for x in range(6):
        done = Done.from_json(js.get(layout.done(m.job.id, f"i{x:07d}"))[0])
        assert done.has_result
        assert (done.value is None) == bool(x % 2), f"item {x}: inline value {done.value!r}"


def test_a_remote_exception_is_raised_with_its_remote_traceback_and_not_retried(url: str, fleet: Fleet) -> None:
    fleet.start(url, 1)
    m = qubits.map(fails_on_three, range(6), jobspace=url)
    with pytest.raises(ValueError, match="three is not allowed") as info:
        m[3].result(timeout=120)
    tb = info.value.remote_traceback  # type: ignore[attr-defined]
    assert "fails_on_three" in tb and 'raise ValueError(f"three is not allowed' in tb
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert [m[i].result(timeout=60) for i in (0, 1, 2, 4, 5)] == [0, 1, 2, 4, 5]
    assert isinstance(m[3].exception(), ValueError)
    with pytest.raises(ValueError):
        m.results()
    done = m.job.results()
    failed = [d for d in done.values() if d.outcome == "failed"]
    assert len(failed) == 1 and failed[0].attempt == 1 and not failed[0].attempts  # not retried
    assert "ValueError: three is not allowed" in (failed[0].error or "")
    # An exception that cannot be rebuilt here still comes back, as TaskFailed with the traceback.
    f = qubits.Executor(url).submit(raises_odd, 1)
    with pytest.raises(qubits.TaskFailed, match="OddError") as odd:
        f.result(timeout=120)
    assert "raises_odd" in (odd.value.remote_traceback or "")


def test_pending_items_can_be_cancelled(url: str, fleet: Fleet, tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    fleet.start(url, 1, slots=1)
    m = qubits.map(sleepy, range(8), params=str(marker), jobspace=url)
    cancelled = {i for i in range(3, 8) if m[i].cancel()}
    assert len(cancelled) >= 4  # one of them may have started already (an agent picks in random order)
    for i in cancelled:
        assert m[i].cancelled() and m[i].done()
        with pytest.raises(qubits.Cancelled):
            m[i].result(timeout=5)
    for i in set(range(8)) - cancelled:
        assert m[i].result(timeout=120) == i
    m.wait(timeout=60)
    ran = {int(line) for line in marker.read_text().split()}
    assert ran == set(range(8)) - cancelled  # a cancelled item never ran
    outcomes = {tid: d.outcome for tid, d in m.job.results().items()}
    assert sorted(outcomes.values()).count("cancelled") == len(cancelled)


# -- datasets ----------------------------------------------------------------------------------------
def test_a_dataset_travels_once_and_agents_fetch_only_the_chunks_they_lack(url: str, fleet: Fleet) -> None:
    fleet.start(url, 2)
    counting = jobspaces.CountingJobspace(jobspaces.open_jobspace(url))
    client = qubits.connect(counting)
    data = list(range(80))
    ds = qubits.Dataset(data, chunksize=10)
    assert len(ds.chunks) == 8

    first = qubits.map(chunk_total, ds, params=1, batched=True, jobspace=client).results(timeout=120)
    assert first == [sum(data[i : i + 10]) for i in range(0, 80, 10)]
    uploaded = counting.counts()
    assert uploaded.get("PUT_CREATE data") == 8
    assert uploaded.get("GET done") == 8 and "GET runs" not in uploaded  # each record read once; results ride in them

    counting.reset()
    second = qubits.map(chunk_total, ds, params=3, batched=True, jobspace=client).results(timeout=120)
    assert second == [3 * v for v in first]  # params travel with every call...
    again = counting.counts()
    assert not any(k.endswith(" data") for k in again), again  # ...the data does not: no PUT, not even a HEAD

    counting.reset()
    twin = qubits.Dataset(list(data), chunksize=10)  # equal data, as a new process would make it
    assert [c.digest for c in twin.chunks] == [c.digest for c in ds.chunks]
    qubits.map(chunk_total, twin, params=1, batched=True, jobspace=client).results(timeout=120)
    assert counting.counts().get("HEAD data") == 8 and "PUT_CREATE data" not in counting.counts()

    fleet.stop()
    fetched = 0
    for i in range(2):
        counts = fleet.counts(i)
        gets = dict(counts["counts"]).get("GET data", 0)  # type: ignore[call-overload]
        held = [p.name for p in (fleet.cache(i) / "data").iterdir() if not p.name.startswith(".")]
        agent = dict(counts["agent"])  # type: ignore[call-overload]
        # Every download left a chunk this agent did not have: none was fetched twice.
        assert gets == agent.get("data_downloads", 0) == len(held) <= 8
        fetched += gets
    assert fetched >= 8  # every chunk reached some agent, over three maps of eight tasks each


def test_agents_prefer_tasks_whose_chunks_they_hold(url: str, fleet: Fleet) -> None:
    ds = qubits.Dataset(list(range(400)), chunksize=10)
    chunks = ds.chunks
    holder: dict[str, str] = {}
    for i, chunk in enumerate(chunks):  # a0 holds the even chunks, a1 the odd ones
        agent = i % 2
        folder = fleet.cache(agent) / "data"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / chunk.digest).write_bytes(ds.encode(i))
        holder[chunk.digest] = f"a{agent}"
    # Both agents must see the job at once: an idle agent on an object store looks for work every 5 s,
    # and the one that woke first would rightly take the other's share meanwhile (CI: 30 of 40 local).
    fleet.start(url, 2, slots=1, extra=("--max-idle-poll", "0.2"))
    _wait_present(url, {"a0", "a1"})
    m = qubits.map(slow_identity, ds, jobspace=url)
    assert m.results(timeout=240) == list(range(400))
    done = m.job.results()
    tasks = m.job.tasks()
    local = sum(1 for tid, d in done.items() if holder[tasks[tid][1].payload["chunk"]] == d.holder)
    assert len(done) == 40
    print(f"{local} of {len(done)} tasks ran where their chunk was")
    assert local >= 0.8 * len(done), f"only {local} of {len(done)} tasks ran where their chunk was"
    fleet.stop()
    remote = sum(int(dict(fleet.counts(i)["agent"]).get("map_remote", 0)) for i in range(2))  # type: ignore[call-overload]
    assert remote == len(done) - local  # the agents' own count agrees


# -- submit, as_completed, reduce, async ------------------------------------------------------------------
def test_submit_as_completed_reduce_and_async(local_url: str, fleet: Fleet) -> None:
    fleet.start(local_url, 1)
    ex = qubits.Executor(local_url)
    f = ex.submit(pow, 2, 10)  # a builtin: travels by reference
    assert f.result(timeout=120) == 1024 and f.done() and f.exception() is None
    m = qubits.map(square, range(10), jobspace=local_url, chunksize=3)
    seen = [fut.result() for fut in qubits.as_completed(m, timeout=120)]
    assert sorted(seen) == [x * x for x in range(10)]
    assert qubits.reduce(operator.add, m, ordered=False) == sum(x * x for x in range(10))
    assert qubits.reduce(operator.add, m, 1000) == 1000 + sum(x * x for x in range(10))

    async def main() -> tuple[list[int], int, int]:
        results = await qubits.map_async(add, range(5), params=1, jobspace=local_url)
        one = await ex.submit_async(square, 12)
        fut = ex.submit(square, 3)
        return results, one, await fut

    assert asyncio.run(main()) == ([1, 2, 3, 4, 5], 144, 9)


# -- the worker pool ---------------------------------------------------------------------------------
def test_python_tasks_reuse_pooled_workers_unless_isolated(local_url: str, fleet: Fleet) -> None:
    fleet.start(local_url, 1, slots=1)
    pooled = set(qubits.map(pid, range(6), jobspace=local_url).results(timeout=120))
    assert len(pooled) == 1  # one slot, one long-lived worker
    isolated = qubits.map(pid, range(4), jobspace=local_url, isolate=True).results(timeout=120)
    assert len(set(isolated)) == 4 and not set(isolated) & pooled
    # A timeout kills the pooled worker; the next task gets a fresh one.
    slow = qubits.Executor(local_url, timeout=1.0, max_attempts=1).submit(time.sleep, 30)
    with pytest.raises(qubits.TaskFailed, match="timed out"):
        slow.result(timeout=120)
    after = set(qubits.map(pid, range(3), jobspace=local_url).results(timeout=120))
    assert len(after) == 1 and not after & pooled


def test_a_paused_pooled_task_stops_keeps_its_lease_and_finishes_after_resume(local_url: str, fleet: Fleet, tmp_path: Path) -> None:
    marker = tmp_path / "ticks"
    fleet.start(local_url, 1, slots=1)
    m = qubits.map(ticker, [25], params=str(marker), jobspace=local_url)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    env = {"QUBITS_CACHE": str(fleet.cache(0))}
    assert run_cli("agent", "pause", env=env).returncode == 0
    time.sleep(0.5)
    before = marker.read_text().splitlines()
    worker = int(before[-1].split()[1])
    assert Path(f"/proc/{worker}/stat").read_text().split(")")[1].split()[0] == "T"  # SIGSTOPped
    time.sleep(3.0)  # two lease ttls: still held, renewed by the agent
    assert marker.read_text().splitlines() == before
    assert m.job.status().counts.get("running") == 1
    assert run_cli("agent", "resume", env=env).returncode == 0
    assert m.results(timeout=60) == [25]
    (done,) = m.job.results().values()
    assert done.attempt == 1
    assert b"tick 24" in m.job.logs(done.task)  # a pooled task's output is its own log


def test_cancelling_a_map_stops_its_running_task(local_url: str, fleet: Fleet) -> None:
    fleet.start(local_url, 1, slots=1)
    m = qubits.map(time.sleep, [30, 30, 30], jobspace=local_url)
    deadline = time.monotonic() + 60
    client = qubits.connect(local_url)
    while not client.aio_list(f"leases/{m.job.id}/") and time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    m.cancel()
    m.wait(timeout=60)
    assert time.monotonic() - started < 25  # the running sleep(30) was stopped
    assert set(m.counts()) == {"cancelled"}
    assert qubits.map(square, [7], jobspace=local_url).results(timeout=60) == [49]


def test_functions_in_synced_code_travel_by_reference(local_url: str, fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "mylib").mkdir(parents=True)
    (project / "mylib" / "__init__.py").write_text("")
    (project / "mylib" / "maths.py").write_text("def cube(x):\n    return x ** 3\n")
    monkeypatch.syspath_prepend(str(project))
    from mylib.maths import cube  # type: ignore[import-not-found]

    fleet.start(local_url, 1)
    m = qubits.map(cube, range(5), jobspace=local_url, code=project)
    assert m.results(timeout=120) == [0, 1, 8, 27, 64]
    spec = m.job.spec()
    assert spec.code and spec.config["map"]["fn"] == {"ref": "mylib.maths:cube"}


# -- the embedded default ------------------------------------------------------------------------------
@pytest.mark.parametrize("example", ["newton_sqrt.py", "matrix_rowsum.py"])
def test_examples_run_on_the_embedded_default(example: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUBITS_")}
    env["QUBITS_CACHE"] = str(tmp_path / "cache")
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / example)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok" in proc.stdout.splitlines()[-1]
    left = [p for p in tmp_path.iterdir() if p.name.startswith("qubits-local-")]
    assert not left  # the local default cleaned up after itself
    assert list((tmp_path / "cache" / "data").iterdir())  # chunks were cached on the "node"


def test_map_data_keys_are_content_addressed(local_url: str, fleet: Fleet) -> None:
    fleet.start(local_url, 1)
    arr = __import__("numpy").arange(20.0).reshape(10, 2)
    sums = qubits.map(lambda block: block.sum(axis=1), qubits.Dataset(arr, chunksize=4), batched=True, jobspace=local_url).results(timeout=120)
    assert [float(v) for block in sums for v in block] == [float(a + b) for a, b in arr]
    js = jobspaces.SyncJobspace(jobspaces.open_jobspace(local_url))
    keys = [m.key for m in js.list("data/")]
    assert len(keys) == 3 and all(layout.data_chunk(k.split("/")[1]) == k for k in keys)
