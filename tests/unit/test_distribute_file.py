"""distribute's batch format read as a qubits batch: both kinds, and its mistakes refused with the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from qubits.batch import load_batch
from qubits.batch._model import BatchFileError

APPTAINER = """\
meta:
  batch_name: sif_sweep
  namespace: lab
  capabilities: [apptainer, gpu]
apptainer:
  initialize:
    sif: {path: solver.sif}
    required_files: [{path: mesh.dat}]
    required_mounts: [/scratch]
  jobs:
    - name: re_100
      required_files: [{path: re_100.json, alias: params.json}]
      slurm: {ntasks: 4, time: "01:00:00", output: out.txt}
slurm:
  partition: short
"""


def _project(tmp_path: Path, text: str) -> Path:
    for name in ("solver.sif", "mesh.dat", "re_100.json", "run.py", "build.py"):
        (tmp_path / name).write_text(name)
    (tmp_path / "distribute-jobs.yaml").write_text(text)
    return tmp_path / "distribute-jobs.yaml"


def test_an_apptainer_batch_runs_its_image_with_distributes_binds(tmp_path: Path) -> None:
    batch = load_batch(_project(tmp_path, APPTAINER))
    assert (batch.namespace, batch.name, batch.capabilities) == ("lab", "sif_sweep", ["apptainer", "gpu"])
    assert batch.init is not None and [f.alias for f in batch.init.files] == ["apptainer.sif", "input/mesh.dat"]
    (job,) = batch.jobs
    assert [f.alias for f in job.files] == ["input/params.json"]
    assert job.command is not None and 'run --nv --app distribute --bind "$PWD/distribute_save:/distribute_save:rw"' in job.command
    assert '"$PWD/_bind_path_0:"/scratch":rw"' in job.command and "mkdir -p _bind_path_0" in job.command
    assert job.slurm == {"ntasks": 4, "time": "01:00:00"} and batch.slurm == {"partition": "short"}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (APPTAINER.replace("apptainer:\n", "python:\n  initialize: {build_file: {path: build.py}}\n  jobs: []\napptainer:\n", 1), "exactly one of python: or apptainer:"),
        (APPTAINER.replace("    required_mounts: [/scratch]\n", "    required_mounts: [scratch]\n"), "absolute paths"),
        (APPTAINER.replace("      slurm:", "      file: {path: run.py}\n      slurm:"), "unknown key 'file' in a apptainer job"),
        (APPTAINER.replace("  batch_name: sif_sweep\n", ""), "batch name"),
        ("meta: {batch_name: b, namespace: n}\npython:\n  initialize: {build_file: {path: build.py}}\n  jobs:\n    - name: j\n", "needs file:"),
    ],
)
def test_mistakes_are_refused_saying_where(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(BatchFileError, match=error):
        load_batch(_project(tmp_path, text))
