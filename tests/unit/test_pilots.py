"""The pilots' sbatch script (`qubits slurm agents N --dry-run`) and the verb's usage errors."""

from __future__ import annotations

from tests.agents import run_cli


def test_the_script_is_an_array_of_agents_that_drain_before_the_limit() -> None:
    got = run_cli("slurm", "agents", "3", "--dry-run", "--time", "02:00:00", "--partition", "gpu", "--gpus", "1",
                  "--jobspace", "s3://bucket/work?endpoint=http://minio:9000", "--capability", "lab", env={"AWS_SECRET_ACCESS_KEY": "sekret"})
    assert got.returncode == 0, got.stderr
    script = got.stdout
    for line in ("#SBATCH --array=1-3", "#SBATCH --time=02:00:00", "#SBATCH --signal=B:TERM@120", "#SBATCH --partition=gpu",
                 "#SBATCH --gres=gpu:1"):
        assert line in script.splitlines(), script
    (run,) = [line for line in script.splitlines() if line.startswith("exec ")]
    assert " agent --jobspace 's3://bucket/work?endpoint=http://minio:9000' --exit-when-idle 300 --stop-timeout 90 " in run
    assert "--capability lab --capability slurm" in run and "--gpus 1" in run
    assert run.endswith('--name "slurm-${SLURM_ARRAY_JOB_ID}-${SLURM_ARRAY_TASK_ID}"')
    assert "sekret" not in script, "credentials travel in the environment sbatch exports, never in the script"


def test_usage_errors_say_what_to_do() -> None:
    for args, words in (
        (("slurm", "agents", "--jobspace", "/tmp/x"), "say how many pilots"),
        (("slurm", "agents", "2", "--lead", "20", "--dry-run", "--jobspace", "/tmp/x"), "--lead must be more than 30"),
        (("slurm", "agents", "0", "--dry-run", "--jobspace", "/tmp/x"), "at least 1"),
        (("slurm", "batch.yaml"), "qubits slurm FILE -o DIR"),
    ):
        got = run_cli(*args)
        assert got.returncode == 2 and words in got.stderr and "Traceback" not in got.stderr, (args, got.stderr)
