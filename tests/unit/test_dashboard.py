"""The dashboard's parts without a browser: one read per tick whatever the tabs, what each topic reads,
the request guard (host, token, actions), and the verb's errors."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import pytest

import qubits
from jobspaces import CountingJobspace, open_jobspace, run_sync
from qubits import _layout as layout
from qubits._logs import split
from qubits._records import Done, Lease
from qubits.cli import run
from qubits.dashboard import _read, create_app, public_url
from qubits.dashboard._read import LogReader, Tick, read_dag, read_job
from qubits.dashboard._security import COOKIE, Guard


def _client(url: str) -> tuple[qubits.Client, CountingJobspace]:
    counting = CountingJobspace(open_jobspace(url))
    return qubits.Client(counting), counting


# -- the shared poller ------------------------------------------------------------------------------------------
def test_open_tabs_share_one_read_per_tick_and_no_tab_reads_nothing(memory_url: str) -> None:
    client, counting = _client(memory_url)
    job = client.submit_commands(["echo a", "echo b", "echo c"], name="shared")
    topics = ["jobs", "nodes", f"job/{job.id}", f"dag/{job.id}"]

    async def go() -> None:
        _app, hub = create_app(client, interval=60)
        first = hub.subscribe(topics)
        await hub.tick()  # warms the caches of immutable objects (specs)
        counting.reset()
        await hub.tick()
        one_tab = counting.total()
        assert one_tab > 0
        others = [hub.subscribe(topics) for _ in range(4)]
        assert counting.total() == one_tab  # a new tab gets the shared snapshot: no read of its own
        assert all(q.qsize() == len(topics) for q in others)
        counting.reset()
        await hub.tick()
        assert counting.total() == one_tab, "five tabs cost more than one"
        assert all(q.qsize() == len(topics) for q in others)  # nothing changed: nothing sent again
        client.submit_commands(["echo d"], name="another")
        await hub.tick()
        assert all(q.qsize() == len(topics) + 1 for q in [first, *others])  # the jobs list changed: sent to all
        for q in [first, *others]:
            hub.unsubscribe(q)
        counting.reset()
        await hub.tick()
        assert counting.total() == 0  # no tab open: the dashboard reads nothing

    asyncio.run(go())


def test_an_unknown_topic_is_refused(memory_url: str) -> None:
    client, _ = _client(memory_url)
    _app, hub = create_app(client)
    for bad in ("secrets", "job/", "job/a/b", "log/onlyjob"):
        with pytest.raises(ValueError, match="no such topic"):
            hub.subscribe([bad])


# -- what the topics read ----------------------------------------------------------------------------------------
def test_the_dag_shows_edges_found_at_run_time(memory_url: str) -> None:
    client, _ = _client(memory_url)
    job = client.submit_commands(["echo a", "echo b"], name="dag")
    tasks = sorted(job.tasks())
    run_sync(client.aio.put(layout.wait_edge(job.id, tasks[0], tasks[1]), b""))
    dag = read_dag(Tick(client, {}), job.id)
    assert [n["id"] for n in dag["nodes"]] == tasks and {n["state"] for n in dag["nodes"]} == {"pending"}
    assert dag["edges"] == [[tasks[0], tasks[1], True]]


def test_the_dag_of_a_big_job_colours_its_succeeded_tasks(memory_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_read, "ROWS", 2)  # a "big" job: its status lists only unfinished and unsuccessful tasks
    client, _ = _client(memory_url)
    job = client.submit_commands(["echo a", "echo b", "echo c"], name="big")
    first, *rest = sorted(job.tasks())
    run_sync(client.aio.put(layout.done(job.id, first), Done(job.id, first, "succeeded", 1, "node-a").to_json(), if_absent=True))
    dag = read_dag(Tick(client, {}), job.id)
    assert {n["id"]: n["state"] for n in dag["nodes"]} == {first: "succeeded", **{t: "pending" for t in rest}}


def test_a_log_part_is_read_once(memory_url: str) -> None:
    client, counting = _client(memory_url)
    job = client.submit_commands(["echo a"], name="log")
    (tid,) = job.tasks()
    parts, order = split([("stdout", b"hello "), ("stderr", b"oops "), ("stdout", b"there ")])
    assert order is not None
    run_sync(client.aio.put(layout.log_order(job.id, tid, 1, 0), order))
    run_sync(client.aio.put(f"{layout.run_prefix(job.id, tid, 1)}stdout/000000", parts["stdout"]))
    run_sync(client.aio.put(f"{layout.run_prefix(job.id, tid, 1)}stderr/000000", parts["stderr"]))
    reader = LogReader(client, job.id, tid)
    first = reader(Tick(client, {}))
    # Both streams as the task wrote them (what `qubits logs` shows), and each alone.
    assert first["attempts"] == [{"attempt": 1, "output": "hello oops there ", "stdout": "hello there ", "stderr": "oops "}]
    assert not first["finished"]
    run_sync(client.aio.put(f"{layout.run_prefix(job.id, tid, 1)}stdout/000001", b"world"))
    counting.reset()
    second = reader(Tick(client, {}))
    assert second["attempts"][0]["stdout"] == "hello there world"
    assert counting.counts().get("GET runs") == 1  # only the new part


def test_a_running_task_shows_when_it_started_read_once_from_its_lease(memory_url: str) -> None:
    client, counting = _client(memory_url)
    job = client.submit_commands(["sleep 9", "echo b"], name="running")
    tid = sorted(job.tasks())[0]
    lease = Lease(job.id, tid, "node-a", "tok", 1, 30.0, started=1234.5, wall=1234.5)
    run_sync(client.aio.put(layout.lease(job.id, tid), lease.to_json(), if_absent=True))
    finished: dict[Any, Any] = {}
    starts: dict[Any, Any] = {}
    counting.reset()
    rows = {r["task"]: r for r in read_job(Tick(client, finished, starts), job.id)["rows"]}
    assert rows[tid]["state"] == "running" and rows[tid]["node"] == "node-a" and rows[tid]["started"] == 1234.5
    assert counting.counts()["GET leases"] == 2  # the status's read, and this attempt's start
    counting.reset()
    read_job(Tick(client, finished, starts), job.id)
    assert counting.counts()["GET leases"] == 1  # the start is remembered


def test_pages_never_show_the_jobspace_query_or_credentials() -> None:
    assert public_url("s3://AKIA:secret@bucket/work?endpoint=http://10.0.0.1:9000&secret_key=x") == "s3://bucket/work"
    assert public_url("/tmp/js") == "/tmp/js"
    assert public_url("file:///tmp/js") == "file:///tmp/js"


# -- the guard ---------------------------------------------------------------------------------------------------
def _request(guard: Guard, method: str = "GET", path: str = "/", query: str = "", **headers: str) -> tuple[int, dict[str, str]]:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    guard.app = app
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(),
             "headers": [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(guard(scope, receive, send))
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def test_on_loopback_only_a_loopback_host_is_answered() -> None:
    guard = Guard(None, bind="127.0.0.1", token=None)  # type: ignore[arg-type]
    assert _request(guard, host="127.0.0.1:8265")[0] == 200
    assert _request(guard, host="localhost:8265")[0] == 200
    assert _request(guard, host="attacker.example:8265")[0] == 403  # DNS rebinding


def test_off_loopback_the_token_is_needed_by_header_cookie_or_first_visit() -> None:
    guard = Guard(None, bind="0.0.0.0", token="s3cret")  # type: ignore[arg-type]
    host = {"host": "10.1.2.3:8265"}
    assert _request(guard, **host)[0] == 401
    assert _request(guard, authorization="Bearer nope", **host)[0] == 401
    assert _request(guard, authorization="Bearer s3cret", **host)[0] == 200
    assert _request(guard, cookie=f"other=1; {COOKIE}=s3cret", **host)[0] == 200
    status, headers = _request(guard, path="/jobs/j1", query="token=s3cret", **host)
    assert status == 303 and headers["location"] == "/jobs/j1" and f"{COOKIE}=s3cret" in headers["set-cookie"]
    assert _request(guard, query="token=wrong", **host)[0] == 401


def test_actions_need_the_pages_own_header_and_origin() -> None:
    guard = Guard(None, bind="127.0.0.1", token=None)  # type: ignore[arg-type]
    host = {"host": "127.0.0.1:8265"}
    assert _request(guard, "POST", "/api/jobs/j/cancel", **host)[0] == 403  # a form posted from another site
    assert _request(guard, "POST", "/api/jobs/j/cancel", x_qubits_action="1", origin="http://evil.example", **host)[0] == 403
    status, headers = _request(guard, "POST", "/api/jobs/j/cancel", x_qubits_action="1", origin="http://127.0.0.1:8265", **host)
    assert status == 200 and "frame-ancestors 'none'" in headers["content-security-policy"]


# -- the verb ------------------------------------------------------------------------------------------------------
def test_the_verb_says_what_to_do(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], memory_url: str) -> None:
    assert run(["dashboard"]) == 2
    assert "no jobspace" in capsys.readouterr().err
    assert run(["dashboard", "--jobspace", memory_url, "--interval", "0"]) == 2
    assert run(["dashboard", "--jobspace", memory_url, "--port", "70000"]) == 2
    assert "--port must be between" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert run(["dashboard", "--jobspace", memory_url, "--port", str(taken.getsockname()[1])]) == 2
    assert "pick another --port" in capsys.readouterr().err
    for name in [m for m in sys.modules if m == "qubits.dashboard" or m.startswith("qubits.dashboard.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(qubits, "dashboard", raising=False)
    for name in [m for m in sys.modules if m.split(".")[0] == "starlette"] + ["starlette"]:
        monkeypatch.setitem(sys.modules, name, None)  # the extra is not installed
    assert run(["dashboard", "--jobspace", memory_url]) == 1
    assert "pip install 'qubits[dashboard]'" in capsys.readouterr().err
