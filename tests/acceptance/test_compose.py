"""Composing work from Python with agents as real processes, on a local directory and on S3 (moto):
futures passed as arguments (their results reach the node through the jobspace), ``.then()``,
``gather``, a failed input failing its dependents with the cause, and a task waiting for another
job's task."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import qubits
from qubits import TaskSpec
from tests.agents import AgentProcess


@pytest.fixture(params=["local", "s3"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("local_url" if request.param == "local" else "s3_url"))


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for a in started:
        a.stop()


def start(started: list[AgentProcess], url: str, tmp: Path, n: int = 2) -> None:
    for _ in range(n):
        started.append(AgentProcess(url, cache=tmp / f"cache-{len(started)}", name=f"a{len(started)}", slots=2, ttl=2.0))


def add(x: int, y: int) -> int:
    return x + y


def mul(x: int, y: int) -> int:
    return x * y


def total(values: list[int], extra: dict[str, int]) -> int:
    return sum(values) + sum(extra.values())


def square(x: int) -> int:
    return x * x


def boom(x: int) -> int:
    raise ValueError(f"bad input {x} on purpose")


def test_futures_as_arguments_then_and_gather(url: str, agents: list[AgentProcess], tmp_path: Path) -> None:
    ex = qubits.Executor(url)
    # Submitted before any agent runs: each call must wait for its inputs.
    a = ex.submit(add, 1, 2)
    b = ex.submit(mul, a, 10)
    c = b.then(add, 5)
    squares = ex.map(square, [1, 2, 3], chunksize=2)  # items of a map task holding two
    d = ex.submit(total, [a, b, *squares], extra={"c": c})
    start(agents, url, tmp_path)
    assert qubits.gather([a, b, c, d], timeout=120) == [3, 30, 35, 3 + 30 + 1 + 4 + 9 + 35]
    # The values travelled through the jobspace, not from here: the call holds references and
    # depends on the other jobs' tasks.
    spec = qubits.connect(url).job(d.job).tasks()["call"][1]
    assert sorted(spec.deps) == sorted({qubits.xref(f.job, f._task.task) for f in (a, b, c, squares[0], squares[2])})
    assert spec.payload.get("refs") is True


def test_a_failed_input_fails_its_dependents_with_the_cause(url: str, agents: list[AgentProcess], tmp_path: Path) -> None:
    ex = qubits.Executor(url)
    a = ex.submit(boom, 7)
    b = ex.submit(add, a, 1)
    c = b.then(add, 1)
    ok = ex.submit(add, 1, 1)
    start(agents, url, tmp_path)
    assert ok.result(timeout=120) == 2
    with pytest.raises(ValueError, match="bad input 7"):
        a.result(timeout=120)
    client = qubits.connect(url)
    for f, depth in ((b, 1), (c, 2)):
        with pytest.raises(qubits.TaskFailed, match="bad input 7 on purpose"):
            f.result(timeout=120)
        done = client.job(f.job).results()["call"]
        assert done.outcome == "upstream_failed" and done.error is not None
        assert done.error.count("dependency failed") == depth and "ValueError: bad input 7 on purpose" in done.error


def test_a_task_waits_for_a_task_of_another_job(url: str, agents: list[AgentProcess], tmp_path: Path) -> None:
    client = qubits.connect(url)
    first = client.submit([TaskSpec(id="produce", kind="shell", command="sleep 2; echo made")], dag=True)
    second = client.submit([TaskSpec(id="consume", kind="shell", command="echo used", deps=[qubits.xref(first.id, "produce")])])
    doomed = client.submit([TaskSpec(id="fail", kind="shell", command="exit 3", max_attempts=1)], dag=True)
    after_doomed = client.submit([TaskSpec(id="never", kind="shell", command="echo no", deps=[qubits.xref(doomed.id, "fail")])])
    start(agents, url, tmp_path)
    assert second.wait(timeout=120).ok and first.wait(timeout=60).ok
    produced, consumed = first.results()["produce"], second.results()["consume"]
    assert consumed.started >= produced.finished  # it ran only once the other job's task was done
    after_doomed.wait(timeout=60)
    never = after_doomed.results()["never"]
    assert never.outcome == "upstream_failed" and f"{doomed.id}/fail (failed: " in (never.error or ""), never.error
