"""`qubits dashboard` in a real browser (headless Chromium over CDP), with agents running jobs as real
processes: counts change live, a failing task's log shows, cancel from the page cancels the job, the DAG
grows as dependencies are found, every page renders (screenshots checked), and off loopback nothing is
served without the token."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import qubits
from qubits.qfile import submit_targets
from tests.acceptance.test_qfile import _png_summary
from tests.agents import AgentProcess
from tests.browser import Browser, chromium_path

pytestmark = pytest.mark.slow


class Dashboard:
    """``qubits dashboard`` as a process; ``url`` is the address it printed (with ?token= if any)."""

    def __init__(self, jobspace: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qubits.cli", "dashboard", "--jobspace", jobspace, "--port", "0", "--interval", "0.5", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "400"})
        lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.output.append(line)
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 60
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise AssertionError(f"the dashboard printed no address: {''.join(self.output)}") from None
            found = re.search(r" at (http://\S+)", line)
            if found:
                self.url = found.group(1)
                self.base = self.url.split("?", 1)[0].rstrip("/")
                return

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def dashboard() -> Iterator[Callable[..., Dashboard]]:
    started: list[Dashboard] = []

    def start(jobspace: str, *extra: str) -> Dashboard:
        d = Dashboard(jobspace, *extra)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
    for d in started:  # Ctrl-C ends the open event streams and the server quietly
        assert d.proc.returncode == 0 and "Traceback" not in "".join(d.output), "".join(d.output)[-3000:]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if chromium_path() is None:
        pytest.skip("chromium is not installed (apt-get install chromium): the dashboard was not driven")
    b = Browser(tmp_path / "chromium")
    yield b
    b.close()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def start(url: str, name: str, slots: int = 2) -> AgentProcess:
        a = AgentProcess(url, cache=tmp_path / f"cache-{name}", slots=slots, ttl=2.0, name=name)
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


def check_screenshot(b: Browser, path: Path) -> None:
    """The page as a PNG of the window's size with more than a handful of colours (not blank)."""
    width, height, colours = _png_summary(b.screenshot(path))
    assert (width, height) == (1280, 900)
    assert colours > 50, f"{path.name} is nearly blank"


# -- live counts, a failing task's log, every page ---------------------------------------------------------------
@pytest.mark.parametrize("store", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_the_dashboard_follows_a_job_live_and_shows_a_failing_tasks_log(store: str, request: pytest.FixtureRequest, dashboard, browser: Browser, agents, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = str(request.getfixturevalue("local_url" if store == "local" else "s3_url"))
    client = qubits.connect(url)
    commands = [f"sleep 1; echo ok-{i}" for i in range(6)] + ["echo doomed-output; echo boom-on-stderr >&2; exit 3"]
    job = client.submit_commands(commands, name="live-demo", max_attempts=1)
    d = dashboard(url)
    b = browser

    # Before any agent runs: the job is listed with nothing done.
    b.goto(d.url)
    b.wait_for(f"document.querySelector('tr[data-job=\"{job.id}\"][data-done=\"0\"][data-total=\"7\"]')")
    b.js("window.stayed = true")  # gone if the page were reloaded: the counts must arrive live
    check_screenshot(b, tmp_path / "jobs-pending.png")

    agents(url, "dash-agent", slots=2)
    seen: list[int] = []
    deadline = time.monotonic() + 120
    while not seen or seen[-1] < 7:
        assert time.monotonic() < deadline, f"the page never showed the job finished: {seen}"
        done = b.js(f"(document.querySelector('tr[data-job=\"{job.id}\"]') || {{}}).dataset?.done")
        if done is not None and (not seen or int(done) != seen[-1]):
            seen.append(int(done))
        time.sleep(0.2)
    assert seen[0] == 0 and seen[-1] == 7 and len(seen) >= 3, f"the counts did not change step by step: {seen}"
    assert b.js("window.stayed === true")
    b.wait_for(f"document.querySelector('tr[data-job=\"{job.id}\"]').dataset.state === 'failed'")
    check_screenshot(b, tmp_path / "jobs.png")

    # The job's tasks: state, attempt, node and exit code; filter by state.
    b.goto(f"{d.base}/jobs/{job.id}")
    b.wait_for("document.querySelectorAll('tr[data-task]').length === 7")
    failed_row = b.wait_for("(() => { const r = document.querySelector('tr[data-state=\"failed\"]'); return r && r.innerText; })()")
    assert "dash-agent" in failed_row and "\t3\t" in f"\t{failed_row}\t".replace("\t\t", "\t"), failed_row
    b.set_value("#filter", "failed", "change")
    assert b.wait_for("document.querySelectorAll('tr[data-task]').length === 1 && document.querySelector('tr[data-task]').dataset.state") == "failed"
    b.set_value("#filter", "", "change")
    b.set_value("#search", "ok-4")
    assert b.wait_for("document.querySelectorAll('tr[data-task]').length === 1 && document.querySelector('tr[data-task]').innerText").startswith("sleep 1; echo ok-4")
    time.sleep(1.5)  # updates keep arriving: the search stays applied
    assert b.js("document.querySelectorAll('tr[data-task]').length") == 1 and b.js("document.getElementById('search').value") == "ok-4"
    b.set_value("#search", "")
    b.set_value("#filter", "failed", "change")
    b.wait_for("document.querySelectorAll('tr[data-task]').length === 1")
    check_screenshot(b, tmp_path / "tasks.png")
    # Retry what did not succeed, after the confirmation: the page moves to the new job.
    b.js("document.getElementById('retry').click()")
    b.wait_for("document.getElementById('confirm').open")
    b.js("document.getElementById('confirm-yes').click()")
    new_id = b.wait_for(f"location.pathname.startsWith('/jobs/') && !location.pathname.endsWith('{job.id}') && location.pathname.split('/')[2]")
    retried = client.job(new_id)
    assert retried.spec().config["retry_of"] == job.id and retried.spec().task_count == 1
    b.wait_for("document.querySelectorAll('tr[data-task]').length === 1")

    # The failing task's log: its stderr and stdout, and how it ended.
    failing = next(r.task for r in job.status().rows if r.state == "failed")
    b.goto(f"{d.base}/jobs/{job.id}/tasks/{failing}/log")
    b.wait_for("document.querySelector('pre.stderr') && document.querySelector('pre.stderr').textContent.includes('boom-on-stderr')")
    text = b.text()
    assert "doomed-output" in text and "exit code 3" in text and "failed" in text
    check_screenshot(b, tmp_path / "log.png")

    # The DAG (no dependencies: seven tasks), the timeline, the nodes.
    b.goto(f"{d.base}/jobs/{job.id}/dag")
    b.wait_for("document.querySelectorAll('#dag g.node').length === 7")
    check_screenshot(b, tmp_path / "dag.png")
    b.goto(f"{d.base}/jobs/{job.id}/timeline")
    b.wait_for("(document.getElementById('timeline') || {}).srcdoc?.includes('Failures and tasks that never ran')")
    time.sleep(0.5)  # the frame paints
    check_screenshot(b, tmp_path / "timeline.png")
    b.goto(f"{d.base}/nodes")
    b.wait_for("document.querySelector('tr[data-node=\"dash-agent\"]')")
    assert "live" in b.js("document.querySelector('tr[data-node=\"dash-agent\"]').innerText")
    check_screenshot(b, tmp_path / "nodes.png")

    # No credential or endpoint from the jobspace URL reaches a page or the event stream.
    secret = url.split("?", 1)[1] if "?" in url else None
    if secret:
        assert secret not in b.js("document.documentElement.outerHTML")
        with urllib.request.urlopen(f"{d.base}/events?topic=jobs&topic=nodes", timeout=10) as r:
            first = r.read(4096).decode()
        assert "event: jobs" in first or "event: nodes" in first
        assert secret not in first and "endpoint=" not in first


# -- cancel from the page ------------------------------------------------------------------------------------------
def test_cancel_from_the_page_cancels_the_job(local_url: str, dashboard, browser: Browser, agents, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = qubits.connect(local_url)
    job = client.submit_commands(["echo started-$QUBITS_TASK; sleep 60"] * 4, name="to-cancel")
    agents(local_url, "canceller", slots=1)
    d = dashboard(local_url)
    b = browser
    b.goto(f"{d.base}/jobs/{job.id}")
    b.wait_for("document.querySelector('tr[data-state=\"running\"]')", timeout=60)
    # The running task: its node, attempt, and when it started (from its lease).
    running = b.wait_for("(() => { const c = document.querySelector('tr[data-state=\"running\"]').children; return c[5].textContent && [...c].map(x => x.textContent); })()")
    assert running[3] == "canceller" and running[2] == "1" and running[6].endswith("s"), running
    # Its log streams while it runs.
    tid = b.js("document.querySelector('tr[data-state=\"running\"]').dataset.task")
    b.goto(f"{d.base}/jobs/{job.id}/tasks/{tid}/log")
    b.wait_for(f"document.querySelector('pre.stdout')?.textContent.includes('started-{tid}')", timeout=30)
    assert "streaming" in b.js("document.getElementById('outcome').textContent")
    b.goto(f"{d.base}/jobs/{job.id}")
    b.wait_for("document.querySelector('tr[data-state=\"running\"]')")
    b.js("document.getElementById('cancel').click()")
    assert b.wait_for("document.getElementById('confirm').open && document.getElementById('confirm-text').textContent").startswith(f"Cancel job {job.id}?")
    check_screenshot(b, tmp_path / "confirm.png")
    time.sleep(1)
    assert not job.status(rows=0).finished and job.status(rows=0).counts.get("cancelled", 0) == 0  # nothing before the yes
    b.js("document.getElementById('confirm-yes').click()")
    status = job.wait(timeout=60)
    assert status.counts == {"cancelled": 4, "pending": 0}, status.counts
    b.wait_for("document.getElementById('counts').innerText.includes('cancelled 4')")
    assert b.js("document.getElementById('message').textContent").startswith("cancelled:")  # the answer stays on the page
    assert b.js("document.getElementById('cancel').disabled")


# -- the DAG grows as dependencies are found on the nodes ------------------------------------------------------------
QFILE = '''
import time
from qubits.qfile import rule

@rule("seed")
def seed(ctx):
    time.sleep(3)
    for i in range(3):
        ctx.out(f"{i}.txt").write_text(str(i))

@rule(r"part-(\\d)", deps=["seed"])
def part(ctx, i):
    time.sleep(0.5)

def parts(ctx):
    """Known only once seed has run: one part per file it wrote."""
    return ["seed"] + [f"part-{name.removesuffix('.txt')}" for name in ctx.files("seed")]

@rule("report", deps=parts)
def report(ctx):
    print("report of", ctx.deps)
'''


def test_the_dag_grows_as_dependencies_are_found(local_url: str, dashboard, browser: Browser, agents, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "grow"
    folder.mkdir()
    (folder / "Qfile").write_text(textwrap.dedent(QFILE))
    job = submit_targets(["report"], project=folder, jobspace=local_url)
    d = dashboard(local_url)
    b = browser
    b.goto(f"{d.base}/jobs/{job.id}/dag")
    b.wait_for("document.querySelectorAll('#dag g.node').length === 1")
    agents(local_url, "grower", slots=2)
    seen: list[int] = [1]
    deadline = time.monotonic() + 120
    names = "[...document.querySelectorAll('#dag g.node')].map(g => g.querySelector('title').textContent)"
    while not b.js("[...document.querySelectorAll('#dag g.node')].some(g => g.dataset.state === 'succeeded' && g.textContent.startsWith('report'))"):
        assert time.monotonic() < deadline, f"the report never showed as done: {seen} {b.js(names)}"
        n = b.js("document.querySelectorAll('#dag g.node').length")
        if n != seen[-1]:
            seen.append(n)
        time.sleep(0.2)
    n = b.js("document.querySelectorAll('#dag g.node').length")
    if n != seen[-1]:
        seen.append(n)
    # One task at submit (the job's entry, "make report"); then report, then seed (found when report first
    # ran), then the three parts (found once seed had run).
    assert seen == sorted(seen) and seen[0] == 1 and seen[-1] == 6 and len(seen) >= 3, (seen, b.js(names))
    dynamic_edges = b.js("[...document.querySelectorAll('#dag path.edge.dynamic')].map(e => e.dataset.to).length")
    assert dynamic_edges >= 4  # report waits for seed and each part, found at run time
    assert b.js("document.querySelectorAll('#dag g.node[data-dynamic=\"true\"]').length") == 5
    assert "found at run time" in b.text()
    check_screenshot(b, tmp_path / "dag-grown.png")
    assert job.wait(timeout=60).ok


# -- a token off loopback --------------------------------------------------------------------------------------------
def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, str], str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with opener.open(req, timeout=10) as r:
            body = r.read(2000).decode(errors="replace") if "event-stream" not in r.headers.get("content-type", "") else r.read(200).decode()
            return r.status, dict(r.headers), body
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode(errors="replace")


def test_off_loopback_every_request_needs_the_token(local_url: str, dashboard, browser: Browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = qubits.connect(local_url)
    job = client.submit_commands(["true"], name="guarded")
    d = dashboard(local_url, "--bind", "127.0.0.2")
    assert d.base.startswith("http://127.0.0.2:") and "?token=" in d.url
    token = d.url.split("?token=", 1)[1]
    for path in ("/", f"/jobs/{job.id}", "/nodes", "/events?topic=jobs", "/static/dashboard.js"):
        status, _, body = _get(d.base + path)
        assert status == 401 and "token" in body, (path, status, body)
        assert _get(d.base + path, {"Authorization": "Bearer wrong"})[0] == 401
    assert _get(d.base + f"/api/jobs/{job.id}/cancel", {"X-Qubits-Action": "1"}, method="POST")[0] == 401
    status, _, body = _get(d.base + "/", {"Authorization": f"Bearer {token}"})
    assert status == 200 and "qubits" in body
    status, _, body = _get(d.base + "/events?topic=jobs", {"Authorization": f"Bearer {token}"})
    assert status == 200 and body.startswith(": connected")
    # An action without the dashboard's own header is refused even with the token (a forged form post).
    assert _get(d.base + f"/api/jobs/{job.id}/cancel", {"Authorization": f"Bearer {token}"}, method="POST")[0] == 403
    # The first visit with ?token= sets the cookie and drops the token from the address.
    status, headers, _ = _get(d.url)
    assert status == 303 and headers["location"] == "/" and "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    # In the browser: the printed address opens a live page; the token does not stay in the address bar.
    browser.goto(d.url)
    browser.wait_for(f"document.querySelector('tr[data-job=\"{job.id}\"]')")
    assert "token" not in browser.js("location.href")
    check_screenshot(browser, tmp_path / "guarded.png")
    assert d.proc.poll() is None
    # Without --bind, the dashboard listens on 127.0.0.1 and needs no token.
    plain = dashboard(local_url)
    assert plain.base.startswith("http://127.0.0.1:") and "token" not in plain.url
    assert _get(plain.base + "/")[0] == 200
