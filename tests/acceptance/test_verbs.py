"""Verbs' defaults and exit codes as a new user meets them (issue 19): retry, cancel (a job, one task),
kill and cancel with no argument, wait --json on a timeout, pause with no agent, the agent as root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jobspaces
import qubits
from qubits import _layout as layout
from qubits._records import Done
from tests.agents import AgentProcess, alive_pid, run_cli


def _finish(client: qubits.Client, job: qubits.Job, outcome: str = "succeeded") -> None:
    for tid in job.tasks():
        done = Done(job.id, tid, outcome, 1, holder="test")
        jobspaces.run_sync(client.aio.put(layout.done(job.id, tid), done.to_json(), if_absent=True))


def _jobs(client: qubits.Client) -> list[str]:
    return [s.id for s in client.jobs()]


def test_retry_with_nothing_failed_says_so_and_creates_nothing(local_url: str) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands(["true", "true"])
    _finish(client, job)
    before = _jobs(client)
    for argv in (("retry", job.id, "--failed"), ("retry", job.id)):
        proc = run_cli(*argv, "--jobspace", local_url)
        assert proc.returncode == 4, proc.stderr
        assert "nothing to retry" in proc.stderr and "Traceback" not in proc.stderr
        assert proc.stdout == ""
    assert _jobs(client) == before, "no empty job was created"


def test_retry_without_failed_retries_the_failed_tasks(local_url: str) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands(["false"])
    _finish(client, job, "failed")
    proc = run_cli("retry", job.id, "--jobspace", local_url)
    assert proc.returncode == 0, proc.stderr
    new = client.job(proc.stdout.strip())
    assert list(new.tasks()) == ["t000001"] and new.spec().config["retry_of"] == job.id


def test_cancel_and_kill_need_their_argument_off_a_terminal(local_url: str) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands(["true"])
    proc = run_cli("cancel", "--jobspace", local_url, input="")
    assert proc.returncode == 2 and "qubits cancel JOB" in proc.stderr, proc.stderr
    assert not job.results() and not jobspaces.run_sync(client.aio.exists(layout.cancel(job.id))), "nothing was cancelled"
    proc = run_cli("kill", "--jobspace", local_url, input="")
    assert proc.returncode == 2 and "--all" in proc.stderr, proc.stderr
    assert run_cli("kill", "--all", "--jobspace", local_url).returncode == 0, "the explicit form works"
    assert run_cli("cancel", "last", "--jobspace", local_url).returncode == 0
    assert job.status().counts.get("cancelled") == 1


def _on_a_terminal(argv: list[str], answer: str) -> tuple[int, str]:
    """Run ``qubits ARGV`` with a pseudo-terminal as stdin, answer its question, return (code, stderr)."""
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "qubits.cli", *argv], stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        os.write(master, answer.encode())
        out, err = proc.communicate(timeout=60)
        return proc.returncode, err
    finally:
        os.close(master)
        os.close(slave)


def test_cancel_with_no_job_asks_on_a_terminal(local_url: str) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands(["true"])
    code, err = _on_a_terminal(["cancel", "--jobspace", local_url], "n\n")
    assert code == 1 and f"cancel the last job, {job.id}" in err and "nothing done" in err, err
    assert not job.results()
    code, err = _on_a_terminal(["cancel", "--jobspace", local_url], "y\n")
    assert code == 0, err
    assert job.status().counts.get("cancelled") == 1


def test_wait_json_prints_the_status_when_it_times_out(local_url: str) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands(["true", "true"])
    proc = run_cli("wait", job.id, "--json", "--timeout", "0.5", "--jobspace", local_url)
    assert proc.returncode == 5, proc.stderr
    status = json.loads(proc.stdout)
    assert status["job"] == job.id and status["finished"] is False and status["counts"]["pending"] == 2


def test_pause_and_resume_with_no_agent_exit_not_found(tmp_path: Path) -> None:
    for verb in ("pause", "resume"):
        proc = run_cli("agent", verb, env={"QUBITS_CACHE": str(tmp_path)})
        assert proc.returncode == 4, (verb, proc.stderr)
        assert "no running agent" in proc.stderr


def test_the_agent_refuses_root_as_a_usage_error(local_url: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from qubits.cli import run

    monkeypatch.setenv("QUBITS_CACHE", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert run(["agent", "--jobspace", local_url, "--exit-when-idle", "1"]) == 2


def test_cancel_one_task_pending_or_running_the_others_go_on(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands(["sleep 60 # a", "sleep 60 # b", "echo third"], max_attempts=1)
    agent = AgentProcess(local_url, cache=tmp_path / "c", slots=1, ttl=5)
    try:
        deadline = time.monotonic() + 60
        while not (running := [r for r in job.status().rows if r.state == "running"]):
            assert time.monotonic() < deadline, agent.log()
            time.sleep(0.1)
        if running[0].task == "t000003":  # the agent took the quick one first (ready shards are random)
            while not (running := [r for r in job.status().rows if r.state == "running" and r.task != "t000003"]):
                assert time.monotonic() < deadline, agent.log()
                time.sleep(0.1)
        busy = running[0].task
        idle = "t000002" if busy == "t000001" else "t000001"
        # The pending one, from the CLI, by name: decided at once.
        proc = run_cli("cancel", job.id, "sleep 60 # b" if idle == "t000002" else "sleep 60 # a", "--jobspace", local_url)
        assert proc.returncode == 0, proc.stderr
        assert client.done_record(job.id, idle).outcome == "cancelled"  # type: ignore[union-attr]
        # The running one, from Python: its agent stops it and commits it cancelled.
        started = time.monotonic()
        assert job.cancel(task=busy) == 1
        assert time.monotonic() - started < 10
        status = job.wait(timeout=60)
        assert status.counts == {"cancelled": 2, "succeeded": 1, "pending": 0}
        assert job.logs("t000003") == b"third\n"
        assert not jobspaces.run_sync(client.aio.exists(layout.cancel(job.id))), "the job itself is not cancelled"
        results = job.results()
        assert results[busy].error == "the task was cancelled" and results[busy].attempt == 1
        assert job.cancel(task=busy) == 1, "still cancelled"
        client._done_cache.clear()
        assert job.results()[busy] == results[busy], "decided once: cancelling again changes nothing"
        assert agent.alive()
    finally:
        agent.stop()


def _cli_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "QUBITS_JOBSPACE"}
    return subprocess.run([sys.executable, "-m", "qubits.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_every_verb_finds_the_project_jobspace_from_here_or_from_C(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    (folder / "sub").mkdir(parents=True)
    (folder / "Qfile").write_text("from qubits.qfile import rule\n\n@rule('default')\ndef default(ctx):\n    pass\n")
    client = qubits.connect(f"file://{folder / '.qubits' / 'jobspace'}")
    job = client.submit_commands(["echo from-the-project"], max_attempts=1)
    agent = AgentProcess(client.url, cache=tmp_path / "c", slots=1, exit_when_idle=1)
    try:
        assert job.wait(timeout=60).ok
    finally:
        agent.stop()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd, where in ((folder / "sub", ()), (elsewhere, ("-C", str(folder)))):
        assert _cli_in(cwd, "last", *where).stdout.strip() == job.id
        listed = _cli_in(cwd, "jobs", "--json", *where)
        assert [j["id"] for j in json.loads(listed.stdout)] == [job.id], listed.stderr
        status = _cli_in(cwd, "status", job.id, "--json", *where)
        assert json.loads(status.stdout)["ok"] is True, status.stderr
        assert _cli_in(cwd, "wait", "last", *where).returncode == 0
        assert _cli_in(cwd, "logs", job.id, "t000001", *where).stdout == "from-the-project\n"
        assert _cli_in(cwd, "retry", job.id, *where).returncode == 4, "found the job: nothing failed"
        assert _cli_in(cwd, "nodes", "--json", *where).returncode == 0
        assert _cli_in(cwd, "timeline", "last", "-o", "-", *where).returncode == 0
    outside = _cli_in(elsewhere, "status")
    assert outside.returncode == 2 and "-C DIR" in outside.stderr, "no project here: say how to name one"
    wrong = _cli_in(elsewhere, "status", "-C", str(elsewhere))
    assert wrong.returncode == 2 and "no Qfile" in wrong.stderr


def test_systemd_unit_takes_the_url_from_its_env_file_and_the_printed_steps_install_it(local_url: str, tmp_path: Path) -> None:
    import shlex
    import stat

    work = tmp_path / "w"
    work.mkdir()
    root = tmp_path / "root"
    env = {**os.environ, "COLUMNS": "80", "MY_TOKEN": "s3cr3t-token"}
    argv = [sys.executable, "-m", "qubits.cli", "agent", "systemd", "-o", str(work / "qubits-agent.service"), "-j", local_url, "--slots", "2"]
    plain = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    printed = plain.stderr.split("in their folder:\n", 1)[1].splitlines()
    assert len(printed) == 8 and all(len(line) <= 80 for line in printed), plain.stderr  # whole commands, none cut
    assert "useradd --system" in plain.stderr and "install -d -m 755 /etc/qubits" in plain.stderr
    proc = subprocess.run([*argv, "--env", "MY_TOKEN", "--root", str(root)], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "s3cr3t" not in proc.stdout + proc.stderr
    unit = (work / "qubits-agent.service").read_text()
    assert "s3cr3t" not in unit and "EnvironmentFile=/etc/qubits/agent.env" in unit and "User=qubits" in unit
    env_file = work / "qubits-agent.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert f"QUBITS_JOBSPACE={local_url}\n" in env_file.read_text() and "MY_TOKEN=s3cr3t-token\n" in env_file.read_text()
    # The steps as printed, pasted into a shell, against a temporary root.
    steps = proc.stderr.split("in their folder:\n", 1)[1]
    subprocess.run(["bash", "-euo", "pipefail", "-c", steps], cwd=work, check=True, timeout=60)
    installed = root / "etc" / "qubits" / "agent.env"
    assert stat.S_IMODE(installed.stat().st_mode) == 0o600 and installed.read_text() == env_file.read_text()
    assert (root / "etc" / "systemd" / "system" / "qubits-agent.service").read_text() == unit
    assert (root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "qubits-agent.service").is_symlink()
    user = next(line for line in (root / "etc" / "passwd").read_text().splitlines() if line.startswith("qubits:"))
    assert int(user.split(":")[2]) < 1000, "a system user"
    subprocess.run(["bash", "-euo", "pipefail", "-c", steps], cwd=work, check=True, timeout=60)  # again: idempotent
    # What systemd would run: ExecStart with the environment file's variables finds the jobspace there.
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))[len("ExecStart="):]
    service_env = {k: v for k, v in os.environ.items() if k != "QUBITS_JOBSPACE"}
    for line in installed.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            service_env[key] = value
    service_env["QUBITS_CACHE"] = str(tmp_path / "cache")
    agent = subprocess.run([*shlex.split(exec_start), "--exit-when-idle", "1", "--allow-root", "--name", "from-the-unit"],
                           env=service_env, capture_output=True, text=True, timeout=60)
    assert agent.returncode == 0, agent.stderr
    assert "from-the-unit" in {info.name for info, _age in qubits.connect(local_url).nodes()}


SLOW_QFILE = '''
import os
from qubits.qfile import conf, rule

conf.agents = 1

@rule("default")
def default(ctx):
    ctx.sh("sleep 120 & echo $! > " + os.environ["PIDS"] + "; echo $$ >> " + os.environ["PIDS"] + "; wait")
'''


def _make_running(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int], Path]:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "Qfile").write_text(SLOW_QFILE)
    pids = tmp_path / "pids"
    env = {**os.environ, "PIDS": str(pids), "PYTHONUNBUFFERED": "1"}
    make = subprocess.Popen([sys.executable, "-m", "qubits.cli", "make", "-C", str(folder)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 90
    while len(pids.read_text().split() if pids.exists() else []) < 2:
        assert make.poll() is None and time.monotonic() < deadline, make.communicate()
        time.sleep(0.1)
    from tests.agents import _descendants

    started = _descendants(make.pid)  # its agent, the task's worker, the shell, the sleep
    assert len(started) >= 3
    return make, sorted({*started, *map(int, pids.read_text().split())}), folder


def test_ctrl_c_on_make_says_what_happens_and_a_second_one_stops_everything_now(tmp_path: Path) -> None:
    import select
    import signal

    make, pids, _folder = _make_running(tmp_path)
    assert make.stderr is not None
    fd = make.stderr.fileno()
    os.killpg(make.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    said = ""
    deadline = time.monotonic() + 3
    while "Ctrl-C again" not in said:
        assert time.monotonic() < deadline, f"nothing said within 3 s after Ctrl-C: {said!r}"
        if select.select([fd], [], [], 0.1)[0]:
            said += os.read(fd, 65536).decode(errors="replace")
    assert "stopping: waiting up to 10 s for running tasks" in said
    time.sleep(0.5)
    os.killpg(make.pid, signal.SIGINT)
    stopped = time.monotonic()
    assert make.wait(15) == 130
    left: list[int] = []
    while time.monotonic() - stopped < 3:
        left = [pid for pid in pids if alive_pid(pid)]
        if not left:
            break
        time.sleep(0.1)
    assert not left, f"still running {time.monotonic() - stopped:.1f}s after the second Ctrl-C: {left}"


def test_pull_fetches_the_outputs_of_a_commands_job_and_of_a_qfile_job_with_filters(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands(['echo one > "$QUBITS_OUTPUT/a.txt"; echo log-one', 'mkdir "$QUBITS_OUTPUT/sub"; echo two > "$QUBITS_OUTPUT/sub/b.csv"'])
    agent = AgentProcess(local_url, cache=tmp_path / "c", slots=2, exit_when_idle=1)
    try:
        assert job.wait(timeout=60).ok
    finally:
        agent.stop()
    dest = tmp_path / "dest"
    got = run_cli("pull", job.id, str(dest), "--exclude", r"\.log$", "--jobspace", local_url)
    assert got.returncode == 0, got.stderr
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == [f"{job.id}/t000001/out/a.txt", f"{job.id}/t000002/out/sub/b.csv"]
    assert (dest / job.id / "t000002" / "out" / "sub" / "b.csv").read_text() == "two\n"
    logs = run_cli("pull", job.id, str(dest), "--include", "t000001/stdout", "--jobspace", local_url)
    assert logs.returncode == 0 and (dest / job.id / "t000001" / "stdout.log").read_text() == "log-one\n"
    # A Qfile job, from its project (made here, pulled by target name).
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "Qfile").write_text("from qubits.qfile import conf, rule\nconf.agents = 1\n\n"
                                  "@rule('default')\ndef default(ctx):\n    ctx.out('r.txt').write_text('made')\n")
    made = run_cli("make", "-C", str(folder), env={"QUBITS_JOBSPACE": ""})
    assert made.returncode == 0, made.stderr
    qdest = tmp_path / "qdest"
    pulled = run_cli("pull", "last", str(qdest), "-C", str(folder), "--include", "out/")
    assert pulled.returncode == 0, pulled.stderr
    found = [p for p in qdest.rglob("r.txt")]
    assert len(found) == 1 and found[0].read_text() == "made" and found[0].parent.parent.name == "default"


def test_results_of_a_commands_job_from_python(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands(['echo 42 > "$QUBITS_OUTPUT/answer.txt"; echo done', "echo oops >&2; exit 3"], max_attempts=1)
    agent = AgentProcess(local_url, cache=tmp_path / "c", slots=2, exit_when_idle=1)
    try:
        job.wait(timeout=60)
    finally:
        agent.stop()
    results = job.results()
    assert {t: (d.outcome, d.exit_code) for t, d in results.items()} == {"t000001": ("succeeded", 0), "t000002": ("failed", 3)}
    assert job.outputs("t000001") == {"answer.txt": b"42\n"} and job.outputs("t000002") == {}
    assert job.logs("t000001") == b"done\n" and job.logs("t000002", stream="stderr") == b"oops\n"
    report = job.pull(str(tmp_path / "dest"), include=["answer"])
    assert report.fetched == [f"{job.id}/t000001/out/answer.txt"]


def test_rm_deletes_a_job_and_everything_it_wrote_and_refuses_a_running_one(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    keep = client.submit_commands(["true"])
    _finish(client, keep)
    job = client.submit_commands(['echo x > "$QUBITS_OUTPUT/x"; echo out'], max_attempts=1)
    agent = AgentProcess(local_url, cache=tmp_path / "c", slots=1, exit_when_idle=1)
    try:
        assert job.wait(timeout=60).ok
    finally:
        agent.stop()

    def objects(job_id: str) -> list[str]:
        return [m.key for m in client.aio_list("") if f"/{job_id}/" in m.key or f"/{job_id}." in m.key]

    assert objects(job.id), "it wrote specs, leases, done records, logs and outputs"
    refused = run_cli("rm", job.id, "--jobspace", local_url, input="")
    assert refused.returncode == 2 and "--yes" in refused.stderr and objects(job.id)
    code, err = _on_a_terminal(["rm", job.id, "--jobspace", local_url], "y\n")
    assert code == 0 and "removed job" in err, err
    assert objects(job.id) == [] and [s.id for s in client.jobs()] == [keep.id] and objects(keep.id)
    # A running job: refused unless --force, which cancels it first (its agent stops the task).
    running = client.submit_commands(["sleep 60"])
    agent = AgentProcess(local_url, cache=tmp_path / "c2", slots=1, ttl=5)
    try:
        deadline = time.monotonic() + 60
        while not [r for r in running.status().rows if r.state == "running"]:
            assert time.monotonic() < deadline, agent.log()
            time.sleep(0.1)
        blocked = run_cli("rm", running.id, "--yes", "--jobspace", local_url)
        assert blocked.returncode == 2 and "--force" in blocked.stderr and objects(running.id)
        forced = run_cli("rm", running.id, "--yes", "--force", "--jobspace", local_url)
        assert forced.returncode == 0, forced.stderr
        assert objects(running.id) == []
        time.sleep(3)
        assert objects(running.id) == [], "its agent wrote nothing after the job was deleted"
        assert agent.alive()
    finally:
        agent.stop()
    # From Python.
    again = client.submit_commands(["true"])
    _finish(client, again)
    assert again.remove() > 0 and objects(again.id) == []
