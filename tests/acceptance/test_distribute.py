"""distribute's own batch files (distribute-jobs.yaml): submitted with `qubits batch submit`, run by
agents as processes, and pulled back by the same file with `qubits pull distribute-jobs.yaml`."""

from __future__ import annotations

from pathlib import Path

import qubits
from tests.agents import AgentProcess, run_cli

# distribute 0.14's python batch, as its user guide writes one (files as {path: …}, aliases optional).
DISTRIBUTE_JOBS = """\
meta:
  batch_name: sweep
  namespace: lab
  matrix: "@alice:example.org"
  capabilities: [python3]
python:
  initialize:
    build_file:
      path: build.py
    required_files:
      - path: common.txt
  jobs:
    - name: job_1
      file:
        path: run.py
      required_files:
        - path: params_1.txt
          alias: params.txt
    - name: job_2
      file:
        path: run.py
      required_files:
        - path: params_2.txt
          alias: params.txt
"""

BUILD = """\
open("built.txt", "w").write("built once\\n")
"""

RUN = """\
import os, sys
cpus = int(sys.argv[1])
text = open("built.txt").read() + open("input/common.txt").read() + open("input/params.txt").read()
open("distribute_save/result.txt", "w").write(f"{text}cpus>0: {cpus > 0}\\n")
open("distribute_save/big.bin", "wb").write(b"x" * 100)
"""


def test_distributes_example_batch_file_is_submitted_run_and_pulled(local_url: str, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "distribute-jobs.yaml").write_text(DISTRIBUTE_JOBS)
    (project / "build.py").write_text(BUILD)
    (project / "run.py").write_text(RUN)
    (project / "common.txt").write_text("common\n")
    for i in (1, 2):
        (project / f"params_{i}.txt").write_text(f"params {i}\n")
    submitted = run_cli("batch", "submit", str(project / "distribute-jobs.yaml"), "--jobspace", local_url)
    assert submitted.returncode == 0, submitted.stderr
    client = qubits.connect(local_url)
    job = client.last()
    agent = AgentProcess(local_url, cache=tmp_path / "cache", slots=2, name="lab-node", capabilities=("python3",))
    try:
        status = job.wait(timeout=120)
        assert status.ok, status.summary() + agent.log()
    finally:
        agent.stop()
    dest = tmp_path / "results"
    pulled = run_cli("pull", str(project / "distribute-jobs.yaml"), str(dest), "--include", "result", "--jobspace", local_url)
    assert pulled.returncode == 0, pulled.stderr
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["lab/sweep/job_1/out/result.txt", "lab/sweep/job_1/result.json", "lab/sweep/job_2/out/result.txt", "lab/sweep/job_2/result.json"]
    for i in (1, 2):
        assert (dest / f"lab/sweep/job_{i}/out/result.txt").read_text() == f"built once\ncommon\nparams {i}\ncpus>0: True\n"
