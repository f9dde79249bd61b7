"""The first hour of a new user (issue 19): bad input refused in one line, SLURM's habits (--wrap,
--array, --after), agent options, versions — as a user runs them: processes, exit codes, output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jobspaces
import qubits
from tests.agents import AgentProcess, run_cli


def _one_line_usage_error(proc: object) -> None:
    result = proc  # subprocess.CompletedProcess[str]
    assert result.returncode == 2, (result.returncode, result.stderr)  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]


def test_submit_commands_refuses_bad_files_in_one_line_and_writes_nothing(local_url: str, tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "binary").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe\x00\x01")
    (tmp_path / "empty").write_text("")
    (tmp_path / "comments").write_text("# nothing to run\n\n   \n# still nothing\n")
    for path in ["missing.txt", "folder", "binary", "empty", "comments"]:
        result = run_cli("submit", "-c", str(tmp_path / path), "-j", local_url)
        _one_line_usage_error(result)
        assert result.stdout == ""
    assert run_cli("submit", "-c", "-", "-j", local_url, input="# only a comment\n").returncode == 2
    assert qubits.connect(local_url).jobs() == [], "a refused submit writes no job"
    with pytest.raises(qubits.UsageError, match="no commands"):
        qubits.connect(local_url).submit_commands(["", "# x"])
    assert qubits.connect(local_url).jobs() == []


@pytest.mark.parametrize(
    "args",
    [("--slots", "0"), ("--slots", "-2"), ("--ttl", "-1"), ("--ttl", "0"), ("--stop-timeout", "-5"), ("--cpus", "-1")],
)
def test_agent_refuses_nonsense_options_in_one_line(local_url: str, args: tuple[str, str]) -> None:
    _one_line_usage_error(run_cli("agent", "-j", local_url, *args, timeout=30))


def test_agent_pause_refuses_a_bad_duration_in_one_line(tmp_path: Path) -> None:
    _one_line_usage_error(run_cli("agent", "pause", "--for", "5x", env={"QUBITS_CACHE": str(tmp_path)}))


def test_version_from_the_package_metadata() -> None:
    from importlib.metadata import version

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"qubits {version('qubits')}" == f"qubits {qubits.__version__}"


def test_wrap_and_array_run_one_task_per_index_with_its_index(local_url: str, tmp_path: Path) -> None:
    sub = run_cli("submit", "--wrap", "echo index=$QUBITS_ARRAY_INDEX", "--array", "1-5:2,8", "--max-attempts", "1", "-j", local_url)
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip()
    for bad in ("5-1", "1-x", "1-10%2"):
        _one_line_usage_error(run_cli("submit", "--wrap", "true", "--array", bad, "-j", local_url))
    agent = AgentProcess(local_url, cache=tmp_path / "c", slots=2)
    try:
        assert run_cli("wait", job, "--timeout", "60", "-j", local_url).returncode == 0
        status = json.loads(run_cli("status", job, "--json", "-j", local_url).stdout)
        assert status["counts"]["succeeded"] == 4
        logs = sorted(run_cli("logs", job, t["task"], "-j", local_url).stdout for t in status["tasks"])
        assert logs == ["index=1\n", "index=3\n", "index=5\n", "index=8\n"]
    finally:
        agent.stop()


def test_after_waits_for_the_other_job_and_fails_upstream_under_ok(local_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "first-finished"
    first = run_cli("submit", "--wrap", f"sleep 2; touch {marker}; exit 1", "--max-attempts", "1", "-j", local_url).stdout.strip()
    ok = run_cli("submit", "--wrap", "echo never", "--after", first, "-j", local_url)
    anyway = run_cli("submit", "--wrap", f"test -f {marker}", "--array", "1-3", "--after", f"{first}:any", "-j", local_url)
    assert ok.returncode == 0 and anyway.returncode == 0, ok.stderr + anyway.stderr
    assert run_cli("submit", "--wrap", "true", "--after", "no-such-job", "-j", local_url).returncode == 4
    _one_line_usage_error(run_cli("submit", "--wrap", "true", "--after", f"{first}:maybe", "-j", local_url))
    agent = AgentProcess(local_url, cache=tmp_path / "c", slots=4)
    try:
        assert run_cli("wait", anyway.stdout.strip(), "--timeout", "90", "-j", local_url).returncode == 0, (
            "every task ran after the first job finished (the marker existed)"
        )
        wait = run_cli("wait", ok.stdout.strip(), "--timeout", "60", "--json", "-j", local_url)
        assert wait.returncode == 1
        status = json.loads(run_cli("status", ok.stdout.strip(), "--json", "-j", local_url).stdout)
        rows = {t["task"]: t for t in status["tasks"]}
        assert rows[f"after-{first}"]["state"] == "upstream_failed" and first in rows[f"after-{first}"]["error"]
        assert rows["t000001"]["state"] == "upstream_failed" and first in rows["t000001"]["error"]
    finally:
        agent.stop()


def test_array_and_after_from_python(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    first = client.submit_commands([f"sleep 1; touch {tmp_path / 'm'}"])
    second = client.submit_commands([f"test -f {tmp_path / 'm'} && echo $QUBITS_ARRAY_INDEX"], array=range(3), after=first)
    agent = AgentProcess(local_url, cache=tmp_path / "c", slots=4)
    try:
        status = second.wait(timeout=60)
        assert status.ok, status.summary()
        tasks = [t for t in second.tasks() if t.startswith("t")]
        assert sorted(second.logs(t) for t in tasks) == [b"0\n", b"1\n", b"2\n"]
    finally:
        agent.stop()


def test_connect_with_no_argument_uses_the_local_default_as_map_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUBITS_JOBSPACE", raising=False)
    try:
        client = qubits.connect()
        job = client.submit_commands(["echo from the local default"])
        assert job.wait(timeout=60).ok
        assert job.logs("t000001") == b"from the local default\n"
    finally:
        qubits.shutdown()


def test_make_hands_its_agents_the_whole_s3_url(s3_url: str, tmp_path: Path) -> None:
    """`make -p dist` on an S3 endpoint once started its agents with the URL minus its query: they
    talked to AWS, and make printed nothing for minutes."""
    (tmp_path / "Qfile").write_text(textwrap.dedent(f"""
        from qubits.qfile import conf, rule

        conf.profile("dist", jobspace={s3_url!r})

        @rule("default")
        def default(ctx):
            ctx.out("made.txt").write_text("made")
    """))
    result = run_cli("make", "-C", str(tmp_path), "-p", "dist", "--agents", "1", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    assert made["ok"] and "endpoint=" in made["jobspace"]


def test_local_agents_get_the_url_in_their_environment_never_on_the_command_line(tmp_path: Path) -> None:
    from qubits._local import LocalAgents

    url = "s3://b/p?endpoint=http://127.0.0.1:9&aws_secret_access_key=SEKRET-123"
    fleet = LocalAgents(url, 1, cache=tmp_path / "c", logs=tmp_path / "logs", stem="t", idle_exit=5)
    try:
        pid = fleet.procs[0].pid
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not any(b"SEKRET" in a or b"s3://" in a for a in argv), argv
        assert f"QUBITS_JOBSPACE={url}".encode() in environ
    finally:
        fleet.stop(5)
    js = jobspaces.open_jobspace(url)
    assert "SEKRET" not in js.url and "endpoint=http://127.0.0.1:9" in js.url
    assert js.handoff() == {"QUBITS_JOBSPACE": url}


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://b/p?endpoint=127.0.0.1:5123", "needs its scheme"),
        ("http://lab/work", "cannot live on http://"),
        ("s3://b/p?endpoint=http://127.0.0.1:9&regoin=eu", "'regoin' is not valid"),
        ("s3://b/p?timeout=soon", "are numbers"),
        ("gs://b/p?endpoint=localhost:4443", "needs its scheme"),
    ],
)
def test_a_url_that_cannot_be_right_is_a_usage_error_in_one_line(url: str, says: str) -> None:
    result = run_cli("status", "-j", url, env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}, timeout=60)
    _one_line_usage_error(result)
    assert says in result.stderr


def test_a_server_that_does_not_resolve_is_unreachable_in_one_line() -> None:
    result = run_cli("status", "-j", "ftp://lab.invalid/work", timeout=60)
    assert result.returncode == 3 and "unreachable" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_an_endpoint_that_is_down_is_named_unreachable_and_no_secret_shows(tmp_path: Path) -> None:
    from jobspaces.testing.servers import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    url = f"s3://b/p?endpoint={endpoint}&budget=1&aws_secret_access_key=SEKRET-42"
    result = run_cli("status", "-j", url, env={"AWS_ACCESS_KEY_ID": "x"}, timeout=60)
    assert result.returncode == 3, result.stderr
    assert f"{endpoint} is unreachable" in result.stderr and "SEKRET" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_every_url_option_and_credential_source_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "stores.md").read_text()
    helped = run_cli("--help").stdout
    for word in ("endpoint=", "region=", "timeout=", "budget=", "attempts=", "use_emulator", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "GOOGLE_SERVICE_ACCOUNT",
                 "AZURE_STORAGE_ACCOUNT_KEY", "--profile"):
        assert word.rstrip("=") in docs, word
        assert word in helped, word


def test_the_readmes_python_example_works_as_written(s3_url: str, tmp_path: Path) -> None:
    """The README's "From Python" block, taken from README.md, run as a script in a folder with its
    train.py: the commands find train.py because `code="."` ships the folder."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("**From Python**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    readme_url = "s3://my-bucket/work?endpoint=http://127.0.0.1:9000"
    assert readme_url in block
    (tmp_path / "example.py").write_text(block.replace(readme_url, s3_url))
    (tmp_path / "train.py").write_text("import sys\nprint('trained with seed', sys.argv[-1])\n")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # `python` is this venv's
    agent = AgentProcess(s3_url, cache=tmp_path / "cache", slots=2, env={"PATH": path})
    try:
        result = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        agent.stop()
    assert result.returncode == 0, result.stderr
    assert "2/2 done (succeeded 2)" in result.stdout and "trained with seed 1" in result.stdout, result.stdout
