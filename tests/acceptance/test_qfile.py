"""Qfile pipelines with agents as real processes: dependencies found on nodes, a diamond made once,
failures that stop only their dependents, decline, missing outputs made again, cycles named, reruns
that redo nothing, the example pipeline on a local directory and on S3, and the timeline in a browser."""

from __future__ import annotations

import shutil
import struct
import subprocess
import textwrap
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import jobspaces
import qubits
from qubits import _layout as layout
from qubits._records import Lease
from qubits.qfile import outputs, submit_targets
from qubits.qfile._tasks import ROOT, target_task_id
from tests.agents import AgentProcess, run_cli
from tests.tools import tool_missing

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline"

# Recipes append "target round node" to $LEDGER, so a test can count what really ran.
PRELUDE = '''
import os, time
from pathlib import Path
from qubits.qfile import conf, rule

def note(ctx):
    with open(os.environ["LEDGER"], "a") as f:
        f.write(f"{ctx.target} {ctx.round} {ctx.node}\\n")

def meet(ctx, me, other):
    """Rendezvous: passes only if ``other`` runs at the same time as ``me`` (on another agent)."""
    folder = Path(os.environ["LEDGER"]).parent
    (folder / f"started-{me}").write_text(ctx.node or "")
    deadline = time.monotonic() + 60
    while not (folder / f"started-{other}").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{other} never ran while {me} did")
        time.sleep(0.05)
'''


def project(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Qfile").write_text(PRELUDE + textwrap.dedent(body))
    return folder


def ledger(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(line.split()[0] for line in path.read_text().splitlines() if line.strip())


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., list[AgentProcess]]]:
    """Start agents (real processes) with $LEDGER set; all stopped after the test."""
    started: list[AgentProcess] = []

    def start(url: str, n: int = 1, *, names: tuple[str, ...] = (), env: dict[str, str] | None = None) -> list[AgentProcess]:
        out = []
        for i in range(n):
            name = names[i] if i < len(names) else f"agent{len(started)}"
            a = AgentProcess(url, cache=tmp_path / f"cache-{name}", slots=1, ttl=2.0, name=name,
                             env={"LEDGER": str(tmp_path / "ledger"), **(env or {})})
            started.append(a)
            out.append(a)
        return out

    yield start
    for a in started:
        a.stop()


def run(url: str, folder: Path, targets: list[str], agents: Callable[..., list[AgentProcess]], n: int = 2) -> qubits.Job:
    job = submit_targets(targets, project=folder, jobspace=url)
    agents(url, n)
    job.wait(timeout=120)
    return job


def outcomes(job: qubits.Job) -> dict[str, str]:
    return {tid: d.outcome for tid, d in job.results().items()}


# -- the example, on a local directory and on S3 -----------------------------------------------------------
@pytest.mark.parametrize(("store", "day", "hours"), [("local", "2024-03-02", 22), ("s3", "2024-03-01", 24)])
def test_the_example_pipeline_grows_on_the_nodes_and_completes(store: str, day: str, hours: int, request: pytest.FixtureRequest, agents, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = str(request.getfixturevalue("local_url" if store == "local" else "s3_url"))
    folder = tmp_path / "pipeline"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".qubits", "__pycache__"))
    job = submit_targets([f"report-{day}"], project=folder, jobspace=url)
    assert job.spec().task_count == 1  # the client submitted only the entry: the rest is found on nodes
    agents(url, 3)
    status = job.wait(timeout=120)
    assert status.ok, status.summary()
    tasks = job.tasks()
    parts = sorted(t for t in tasks if t.startswith(f"part-{day}-"))
    # One part per hour the ingest found (2024-03-02 had an outage at 03:00 and 04:00), added at run time.
    assert len(parts) == hours and all(tasks[t][0] == "x" for t in parts)
    (report,) = outputs(job)
    assert report.target == f"report-{day}" and report.files == [f"report-{day}.txt"]
    js = jobspaces.SyncJobspace(job.client.aio)
    text = js.get(report.prefix + f"report-{day}.txt")[0].decode()
    assert f"Sensor report for {day} ({hours} hours)" in text and text.count("\n") > hours
    assert len({d.holder for tid, d in job.results().items() if tid in parts}) >= 2  # spread over agents


# -- DAG semantics --------------------------------------------------------------------------------------------
def test_a_diamond_makes_each_target_once_and_runs_branches_in_parallel(local_url: str, agents, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = project(tmp_path / "diamond", '''
        @rule("a")
        def a(ctx): note(ctx); ctx.out("a.txt").write_text("a")

        @rule("b", deps=["a"])
        def b(ctx): note(ctx); meet(ctx, "b", "c"); ctx.out("b.txt").write_text(ctx.input("a", "a.txt").read_text() + "b")

        @rule("c", deps=["a"])
        def c(ctx): note(ctx); meet(ctx, "c", "b"); ctx.out("c.txt").write_text(ctx.input("a", "a.txt").read_text() + "c")

        @rule("d", deps=["b", "c"])
        def d(ctx): note(ctx); ctx.out("d.txt").write_text(ctx.input("b", "b.txt").read_text() + ctx.input("c", "c.txt").read_text())
    ''')
    job = run(local_url, folder, ["d"], agents, n=2)
    assert outcomes(job) == {ROOT: "succeeded", "a": "succeeded", "b": "succeeded", "c": "succeeded", "d": "succeeded"}
    assert ledger(tmp_path / "ledger") == Counter({"a": 1, "b": 1, "c": 1, "d": 1})
    assert (tmp_path / "started-b").read_text() != (tmp_path / "started-c").read_text()  # two agents at once
    (d,) = outputs(job, ["d"])
    assert jobspaces.SyncJobspace(job.client.aio).get(d.prefix + "d.txt")[0] == b"abac"


FAILING = '''
    @rule("good")
    def good(ctx): note(ctx)

    @rule("bad", retries=0)
    def bad(ctx):
        note(ctx)
        if not (Path(os.environ["LEDGER"]).parent / "mended").exists():
            raise RuntimeError("bad input on purpose")

    @rule("after-bad", deps=["bad"])
    def after_bad(ctx): note(ctx)

    @rule("flaky", retries=1)
    def flaky(ctx):
        note(ctx)
        if ctx.attempt == 1:
            raise RuntimeError("flaky on its first attempt")

    @rule("after-good", deps=["good", "flaky"])
    def after_good(ctx): note(ctx)

    rule("default", deps=["after-bad", "after-good"])
'''


def test_a_failing_branch_marks_only_its_dependents_and_make_exits_1(tmp_path: Path) -> None:
    folder = project(tmp_path / "failing", FAILING)
    env = {"LEDGER": str(tmp_path / "ledger")}
    done = run_cli("make", "-C", str(folder), "--agents", "2", env=env)
    assert done.returncode == 1, done.stderr
    assert "bad input on purpose" in done.stderr
    client = qubits.connect(f"file://{folder / '.qubits' / 'jobspace'}")
    job = client.last()
    assert outcomes(job) == {
        ROOT: "upstream_failed", "default": "upstream_failed", "after-bad": "upstream_failed",
        "bad": "failed", "good": "succeeded", "after-good": "succeeded", "flaky": "succeeded",
    }
    assert ledger(tmp_path / "ledger") == Counter({"good": 1, "bad": 1, "after-good": 1, "flaky": 2})

    # The page shows every attempt, the failure with its error; it renders in a real browser.
    page = tmp_path / "timeline.html"
    shown = run_cli("timeline", job.id, "-C", str(folder), "-o", str(page))
    assert shown.returncode == 0, shown.stderr
    html = page.read_text()
    attempts = [a["outcome"] for d in job.results().values() for a in [*d.attempts, {"outcome": d.outcome, "holder": d.holder}] if a.get("holder")]
    ran = [o for o in attempts if o not in ("upstream_failed", "cancelled")]
    assert html.count('class="bar ') == len(attempts) + len(ran)  # every attempt by task; those that ran by node too
    assert "bad input on purpose" in html and "upstream_failed" in html
    assert "flaky on its first attempt" in html and "1 task(s) retried" in html  # a retry is visible

    # Mend the input (not the code): make again makes only what did not succeed.
    (tmp_path / "mended").write_text("")
    again = run_cli("make", "-C", str(folder), "--agents", "2", env=env)
    assert again.returncode == 0, again.stderr
    assert ledger(tmp_path / "ledger") == Counter({"good": 1, "bad": 2, "after-good": 1, "after-bad": 1, "flaky": 2})
    assert "results:" in again.stdout
    # And once more: nothing to do, nothing runs, the same job.
    third = run_cli("make", "-C", str(folder), "--agents", "2", env=env)
    assert third.returncode == 0 and "nothing to do" in third.stderr
    assert ledger(tmp_path / "ledger") == Counter({"good": 1, "bad": 2, "after-good": 1, "after-bad": 1, "flaky": 2})
    assert client.last().id != job.id and len(client.jobs()) == 2
    _render_in_browser(page, tmp_path / "timeline.png")  # last: it skips where there is no chromium


def _render_in_browser(page: Path, png: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        tool_missing("chromium is not installed (apt-get install chromium): the timeline was not rendered")
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,700",
         f"--screenshot={png}", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )
    width, height, colours = _png_summary(png.read_bytes())
    assert (width, height) == (1200, 700)
    assert colours > 50, "the screenshot is nearly blank"


def _png_summary(data: bytes) -> tuple[int, int, int]:
    """Width, height and how many different byte values the pixels have (a blank page has a handful)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


# -- decline and missing outputs ------------------------------------------------------------------------------
def test_a_declined_target_is_made_by_another_node(local_url: str, agents, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = project(tmp_path / "picky", '''
        @rule("work")
        def work(ctx):
            if ctx.node == "picky":
                ctx.decline("not on this node")
            note(ctx)
    ''')
    job = submit_targets(["work"], project=folder, jobspace=local_url)
    agents(local_url, 1, names=("picky",))
    js = jobspaces.SyncJobspace(job.client.aio)
    deadline = time.monotonic() + 60
    while True:  # wait until picky has declined it
        try:
            lease = Lease.from_json(js.get(layout.lease(job.id, "work"))[0])
            if any(h["outcome"] == "released" for h in lease.history):
                break
        except jobspaces.NotFound:
            pass
        assert time.monotonic() < deadline, "picky never declined"
        time.sleep(0.1)
    agents(local_url, 1, names=("able",))
    assert job.wait(timeout=60).ok
    done = job.results()["work"]
    assert done.holder == "able"
    assert [(h["holder"], h["outcome"], h["error"]) for h in done.attempts] == [("picky", "released", "not on this node")]
    assert ledger(tmp_path / "ledger") == Counter({"work": 1})


def test_a_missing_output_makes_the_dependency_again(local_url: str, agents, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = project(tmp_path / "missing", '''
        @rule("produce")
        def produce(ctx):
            note(ctx)
            if ctx.round > 0:  # the first round "loses" its file
                ctx.out("data.txt").write_text(f"round {ctx.round}")

        @rule("consume", deps=["produce"])
        def consume(ctx):
            note(ctx)
            ctx.out("used.txt").write_text(ctx.input("produce", "data.txt").read_text())
    ''')
    job = run(local_url, folder, ["consume"], agents)
    assert outcomes(job) == {ROOT: "succeeded", "produce": "succeeded", target_task_id("produce", 1): "succeeded", "consume": "succeeded"}
    assert ledger(tmp_path / "ledger") == Counter({"produce": 2, "consume": 2})
    js = jobspaces.SyncJobspace(job.client.aio)
    assert js.exists(layout.invalid(job.id, "produce"))
    (used,) = outputs(job, ["consume"])
    assert js.get(used.prefix + "used.txt")[0] == b"round 1"


def test_an_output_deleted_after_its_job_is_made_again_by_the_next_make(tmp_path: Path) -> None:
    folder = project(tmp_path / "gone", '''
        @rule("produce")
        def produce(ctx): note(ctx); ctx.out("data.txt").write_text("data")

        @rule(r"use-(\\d)", deps=["produce"])
        def use(ctx, n): note(ctx); ctx.out("x").write_text(ctx.input("produce", "data.txt").read_text() + n)
    ''')
    env = {"LEDGER": str(tmp_path / "ledger")}
    assert run_cli("make", "-C", str(folder), "use-1", "--agents", "1", env=env).returncode == 0
    for path in (folder / ".qubits" / "jobspace" / "runs").glob("*/produce/*/out/data.txt"):
        path.unlink()
    second = run_cli("make", "-C", str(folder), "use-2", "--agents", "1", env=env)
    assert second.returncode == 0, second.stderr
    assert ledger(tmp_path / "ledger") == Counter({"produce": 2, "use-1": 1, "use-2": 2})


# -- cycles and broken Qfiles --------------------------------------------------------------------------------
def test_a_cycle_found_on_the_nodes_fails_naming_it(local_url: str, agents, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = project(tmp_path / "cycle", '''
        @rule("seed")
        def seed(ctx): ctx.out("next").write_text("b")

        rule("a", deps=lambda ctx: [ctx.input("seed", "next").read_text()])
        rule("b", deps=["a"])
    ''')
    job = run(local_url, folder, ["a"], agents)
    results = job.results()
    assert results["b"].outcome == "failed" and "dependency cycle: b -> a -> b" in (results["b"].error or "")
    assert results["a"].outcome == "upstream_failed" and results[ROOT].outcome == "upstream_failed"
    assert len(results["b"].attempts) == 0  # no retries: a cycle does not mend itself


def test_a_static_cycle_and_a_broken_qfile_are_refused_before_submitting(tmp_path: Path) -> None:
    folder = project(tmp_path / "static", 'rule("x", deps=["y"])\nrule("y", deps=["x"])\nrule("default", deps=["x"])\n')
    for verb in ("qubits", "make"):
        done = run_cli(verb, "-C", str(folder))
        assert done.returncode == 2 and "dependency cycle: x -> y -> x" in done.stderr, done.stderr
    assert not (folder / ".qubits" / "jobspace" / "jobs").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "Qfile").write_text("from qubits.qfile import rule\n\nrule('x', deps=[)\n")
    done = run_cli("make", "-C", str(broken))
    assert done.returncode == 2 and f"{broken / 'Qfile'}:3" in done.stderr.replace("\n", "")


def test_a_qfile_that_fails_to_load_on_the_node_fails_without_retries(local_url: str, agents, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = project(tmp_path / "nodeonly", '''
        if os.environ.get("QUBITS_NODE"):
            raise ImportError("a module this node lacks")
        rule("x")
    ''')
    job = run(local_url, folder, ["x"], agents, n=1)
    root = job.results()[ROOT]
    assert root.outcome == "failed" and "Qfile:" in (root.error or "") and "a module this node lacks" in (root.error or "")
    assert root.attempts == []


def test_conf_and_qubits_verbs(tmp_path: Path) -> None:
    folder = project(tmp_path / "verbs", '''
        conf.profile("dist", jobspace="s3://bucket/prefix", nodes=[["n1", 4]])
        rule("a")
        rule(r"b-(\\d)", deps=["a"])
        rule("c", deps=lambda ctx: [ctx.input("a", "list").read_text()])
        rule("default", deps=["b-1", "c"])
    ''')
    conf = run_cli("conf", "-C", str(folder), "-p", "dist", "--json")
    assert conf.returncode == 0, conf.stderr
    assert '"jobspace": "s3://bucket/prefix"' in conf.stdout and '"profile": "dist"' in conf.stdout
    graph = run_cli("qubits", "-C", str(folder))
    assert graph.stdout.splitlines() == ["-\ta", "-\tb-1\ta", "-\tc\ta + (decided on the node at run time)", "-\tdefault\tb-1 c"]
    assert run_cli("conf", "-C", str(folder), "-p", "nope").returncode == 2
