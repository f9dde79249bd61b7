"""Logs as SLURM users read them (issue 19, defect 9): stdout and stderr interleaved as written by default,
one stream on request, and the logs of a whole job, from the CLI and from Python, with a real agent."""

from __future__ import annotations

from pathlib import Path

import qubits
from tests.agents import AgentProcess, run_cli

# A program writes over time (a few tenths of a second apart); the agent reads both pipes as it goes.
CHATTY = "echo out1; sleep 0.3; echo err1 >&2; sleep 0.3; echo out2; sleep 0.3; echo err2 >&2"
QUIET = "echo only-err >&2"


def test_logs_interleave_both_streams_as_written_and_a_whole_job_reads_task_by_task(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands([CHATTY, QUIET, "true"])
    agent = AgentProcess(local_url, cache=tmp_path / "a", slots=3, exit_when_idle=2)
    try:
        assert job.wait(timeout=60).ok
    finally:
        agent.stop()
    # Python: both streams by default, in the order they were written; one stream on request.
    assert job.logs("t000001") == b"out1\nerr1\nout2\nerr2\n"
    assert job.logs("t000001", stream="stdout") == b"out1\nout2\n"
    assert job.logs("t000001", stream="stderr") == b"err1\nerr2\n"
    assert job.logs(QUIET) == b"only-err\n", "a task that wrote only to stderr shows it"
    # The CLI: the same, and --stdout/--stderr for one stream.
    assert run_cli("logs", job.id, "t000002", "-j", local_url).stdout == "only-err\n"
    assert run_cli("logs", job.id, "t000001", "-j", local_url).stdout == "out1\nerr1\nout2\nerr2\n"
    assert run_cli("logs", job.id, "t000001", "--stdout", "-j", local_url).stdout == "out1\nout2\n"
    assert run_cli("logs", job.id, "t000001", "--stderr", "-j", local_url).stdout == "err1\nerr2\n"
    empty = run_cli("logs", job.id, "t000002", "--stdout", "-j", local_url)
    assert empty.stdout == "" and "t000002 wrote nothing on stdout" in empty.stderr, "no output says so"
    assert run_cli("logs", job.id, "t000001", "-F", "-j", local_url).stdout == "out1\nerr1\nout2\nerr2\n"
    # A whole job: `qubits logs JOB` reads the job (not a task called JOB), each block headed by its task id.
    whole = run_cli("logs", job.id, "-j", local_url)
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout == (f"==> t000001 {CHATTY} (attempt 1) <==\nout1\nerr1\nout2\nerr2\n"
                            f"==> t000002 {QUIET} (attempt 1) <==\nonly-err\n"), "tasks with no output have no block"
    assert job.logs().decode() == whole.stdout
    # One word that is no job is still a task of the last job, as before.
    assert run_cli("logs", "t000002", "-j", local_url).stdout == "only-err\n"
    assert run_cli("logs", "no-such-thing", "-j", local_url).returncode == 4
