"""Batch files: every bad file refused with its own message before anything is written; the builder
API and sweeps; the plan (capabilities, files); the dry run's node counts; SLURM scripts; notifications
against a real HTTP server; pull never writes outside DEST."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import jobspaces
import qubits
from qubits import _layout as layout
from qubits._records import NodeInfo
from qubits.batch import Batch, BatchFileError, dry_run, load_batch, plan, submit, to_slurm
from qubits.batch._archive import safe_target
from qubits.batch._notify import send_matrix, send_webhook
from qubits.errors import UsageError
from tests.recorder import recording_server

GOOD = """\
meta:
  namespace: lab
  batch: sweep-1
  capabilities: [python3]
jobs:
  - name: a
    command: echo a
    files: [run.sh]
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho run\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("1,2\n")
    return tmp_path


BAD = [
    ("unknown top key", GOOD + "extra: 1\n", ":9: unknown key 'extra' in the batch file"),
    ("unknown meta key", GOOD.replace("  batch: sweep-1\n", "  batch: sweep-1\n  namspace: x\n"), ":4: unknown key 'namspace' in meta"),
    ("unknown job key", GOOD.replace("    command: echo a\n", "    command: echo a\n    comand: b\n"), ":8: unknown key 'comand' in a job"),
    ("duplicate yaml key", GOOD.replace("  batch: sweep-1\n", "  batch: sweep-1\n  batch: again\n"), ":4: key 'batch' appears twice (first at line 3)"),
    ("bad yaml", "meta: [\n", "not valid YAML"),
    ("missing namespace", GOOD.replace("  namespace: lab\n", ""), "namespace is missing"),
    ("namespace escapes", GOOD.replace("namespace: lab", "namespace: ../etc"), "namespace '../etc' could escape its folder"),
    ("batch escapes", GOOD.replace("batch: sweep-1", "batch: a/b"), "batch name 'a/b' could escape its folder"),
    ("job name escapes", GOOD.replace("name: a", "name: '..'"), "job name '..' could escape its folder"),
    ("duplicate job", GOOD + "  - name: a\n    command: echo b\n", "job name 'a' appears twice (first at line 6)"),
    ("missing file", GOOD.replace("files: [run.sh]", "files: [nope.txt]"), "nope.txt' does not exist"),
    ("alias escapes", GOOD.replace("files: [run.sh]", "files: [{path: run.sh, alias: ../../x}]"), "alias '../../x' would land outside"),
    ("command and script", GOOD.replace("    command: echo a\n", "    command: echo a\n    script: run.sh\n"), "needs exactly one of command: or script:"),
    ("no jobs", GOOD.split("jobs:")[0] + "jobs: []\n", "the batch has no jobs"),
    ("unknown resource", GOOD + "    resources: {tpus: 1}\n", "unknown resource 'tpus'"),
    ("bad matrix room", GOOD.replace("  capabilities: [python3]\n", "  capabilities: [python3]\n  notify: {matrix: ['@me:example.org']}\n"), "is not a room id"),
    ("bad webhook", GOOD.replace("  capabilities: [python3]\n", "  capabilities: [python3]\n  notify: {webhook: [ftp://x]}\n"), "is not an http(s):// URL"),
    ("unknown slurm key", GOOD + "    slurm: {partitoin: gpu}\n", "unknown key 'partitoin' in a job's slurm settings"),
    ("after unknown job", GOOD + "    after: [zzz]\n", "runs after 'zzz', which is not a job"),
    ("init without step", GOOD + "initialize: {files: [run.sh]}\n", "initialize needs a script"),
    ("dependency cycle", GOOD.replace("    files: [run.sh]\n", "    files: [run.sh]\n    after: [b]\n") + "  - name: b\n    command: x\n    after: [a]\n", "cycle: a -> b -> a"),
    ("capabilities not a list", GOOD.replace("capabilities: [python3]", "capabilities: {gpu: 1}"), "meta.capabilities must be a list of strings"),
]


@pytest.mark.parametrize(("case", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_batch_files_are_refused_with_their_own_message(tmp_path: Path, memory_url: str, case: str, text: str, message: str) -> None:
    project = _project(tmp_path)
    path = project / "batch.yaml"
    path.write_text(text)
    with pytest.raises(BatchFileError) as err:
        submit(qubits.connect(memory_url), load_batch(path))
    assert any(m in str(err.value) for m in message.split("|")), str(err.value)
    assert str(path) in str(err.value), "the message names the file"
    assert isinstance(err.value, UsageError)
    js = jobspaces.SyncJobspace(jobspaces.open_jobspace(memory_url))
    assert js.list("") == [], "nothing uploaded"


def test_every_bad_case_has_its_own_message() -> None:
    assert len(BAD) >= 10
    assert len({m for _, _, m in BAD}) == len(BAD)


def test_cli_refuses_a_bad_file_with_exit_2_and_the_line(tmp_path: Path) -> None:
    from qubits.cli import run

    project = _project(tmp_path)
    (project / "b.yaml").write_text(GOOD.replace("  batch: sweep-1\n", "  batch: sweep-1\n  bacth: x\n"))
    assert run(["batch", "submit", str(project / "b.yaml"), "--jobspace", f"file://{tmp_path / 'js'}"]) == 2
    assert not (tmp_path / "js").exists() or not any((tmp_path / "js").rglob("*.json"))


def test_sweep_builds_one_job_per_grid_point_and_round_trips_through_yaml(tmp_path: Path) -> None:
    project = _project(tmp_path)
    b = Batch("lab", "grid", capabilities=["python3"], base=project)
    b.initialize(script="run.sh")
    jobs = b.sweep("run-{alpha}-{n}", {"alpha": [0.1, 0.2], "n": [10, 100, 1000]},
                   command="python3 run.py --alpha {alpha} --n {n}", files=[("data/x.csv", "in-{n}.csv")],
                   resources={"cpus": 2})
    assert [j.name for j in jobs] == ["run-0.1-10", "run-0.1-100", "run-0.1-1000", "run-0.2-10", "run-0.2-100", "run-0.2-1000"]
    assert jobs[4].command == "python3 run.py --alpha 0.2 --n 100"
    assert jobs[4].env == {"PARAM_alpha": "0.2", "PARAM_n": "100"}
    assert jobs[4].files[0].alias == "in-100.csv"
    out = b.write(project / "sub" / "batch.yaml")
    raw = yaml.safe_load(out.read_text())
    assert raw["jobs"][0]["files"] == [{"path": "../data/x.csv", "alias": "in-10.csv"}], "paths relative to the file"
    again = load_batch(out)
    assert [j.name for j in again.jobs] == [j.name for j in jobs]
    assert again.jobs[4].files[0].path.resolve() == (project / "data" / "x.csv").resolve()
    assert again.init is not None and again.init.script is not None
    with pytest.raises(BatchFileError, match="does not fit the grid"):
        b.sweep("x-{beta}", {"alpha": [1]}, command="true")


def test_plan_unites_capabilities_and_ships_files_once_by_content(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "same.sh").write_text((project / "run.sh").read_text())
    b = Batch("lab", "p", capabilities=["python3"], base=project)
    b.job("a", script="run.sh", capabilities=["gpu"], resources={"gpus": 1})
    b.job("b", command="cat in/x.csv", files=[("data", "in"), "same.sh"])
    p = plan(b)
    a, bb = p.tasks
    assert a.kind == "shell" and a.command == "./run.sh" and a.requires == ["gpu", "python3"] and a.resources == {"gpus": 1.0}
    assert bb.requires == ["python3"]
    assert [f["alias"] for f in bb.payload["files"]] == ["in/x.csv", "same.sh"]
    assert len(p.uploads) == 2, "run.sh and same.sh are equal bytes: stored once"
    assert p.job.kind == "batch" and p.job.name == "lab/p"


def test_dry_run_counts_live_nodes_that_fit_each_job(tmp_path: Path, memory_url: str) -> None:
    project = _project(tmp_path)
    client = qubits.connect(memory_url)
    js = jobspaces.SyncJobspace(client.aio)
    for name, caps, res in [("n1", ["python3"], {}), ("n2", ["python3", "gpu"], {"gpus": 1.0}), ("n3", ["gpu"], {"gpus": 2.0})]:
        js.put(layout.node(name), NodeInfo(name, "h", 1, "0", capabilities=caps, resources=res).to_json())
    js.put(layout.node("gone"), NodeInfo("gone", "h", 1, "0", capabilities=["python3", "gpu"], stopped=True).to_json())
    b = Batch("lab", "d", capabilities=["python3"], base=project)
    b.job("cpu", command="true", files=["run.sh"])
    b.job("gpu", command="true", capabilities=["gpu"], resources={"gpus": 1})
    b.job("big", command="true", resources={"gpus": 4})
    report = dry_run(client, b)
    assert [(j["name"], len(j["runnable"]), j["live_nodes"]) for j in report["jobs"]] == [("cpu", 2, 3), ("gpu", 1, 3), ("big", 0, 3)]
    assert report["uploads"][0]["stored"] is False
    assert [m.key for m in js.list("") if not m.key.startswith("nodes/")] == [], "a dry run writes nothing"
    from qubits.cli import run

    (project / "b.yaml").write_text(yaml.safe_dump(b.to_dict(project)))
    proc = subprocess.run([sys.executable, "-m", "qubits.cli", "batch", "submit", str(project / "b.yaml"), "--dry-run"], capture_output=True, text=True)
    assert proc.returncode == 0 and "runnable on" not in proc.stderr, "without a jobspace there are no node counts"
    assert run(["batch", "submit", str(project / "b.yaml"), "--dry-run", "--jobspace", memory_url]) == 0


def test_slurm_scripts_parse_and_carry_dependencies(tmp_path: Path) -> None:
    project = _project(tmp_path)
    b = Batch("lab", "s", base=project, slurm={"account": "mylab"})
    b.initialize(script="run.sh")
    b.sweep("p{i}", {"i": [1, 2, 3]}, command="echo {i} > $QUBITS_OUTPUT/v", resources={"cpus": 1})
    b.job("big", command="echo big", resources={"cpus": 2, "memory": 1.5}, timeout=90, slurm={"partition": "debug"})
    b.job("sum", command="cat ../p1/out/v", after=["p1", "big"])
    to_slurm(b, tmp_path / "out")
    out = tmp_path / "out"
    array = (out / "array.sbatch").read_text()
    assert "#SBATCH --array=0-2" in array and "#SBATCH --account=mylab" in array and "#SBATCH --cpus-per-task=1" in array
    big = (out / "jobs" / "big.sbatch").read_text()
    assert "#SBATCH --mem=1536M" in big and "#SBATCH --time=00:01:30" in big and "#SBATCH --partition=debug" in big
    submit_sh = (out / "submit.sh").read_text()
    assert "--dependency=afterok:$INIT array.sbatch" in submit_sh
    assert "--dependency=afterok:$INIT:${ARRAY}_0:$JOB_big jobs/sum.sbatch" in submit_sh
    assert submit_sh.index("JOB_big=") < submit_sh.index("JOB_sum=")
    assert (out / "jobs.txt").read_text() == "p1\np2\np3\n"
    for script in out.rglob("*.s*"):
        if script.suffix in (".sh", ".sbatch"):
            assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script
    with pytest.raises(BatchFileError, match="one word without spaces"):
        to_slurm(_with_bad_slurm(project), tmp_path / "bad")


def _with_bad_slurm(project: Path) -> Batch:
    b = Batch("lab", "bad", base=project)
    b.job("a", command="true", slurm={"partition": "gpu\n#SBATCH --evil"})
    return b


def test_webhook_retries_a_503_and_matrix_puts_with_the_token() -> None:
    with recording_server(fail_first=1) as rec:
        send_webhook(rec.url + "/hook/secret", {"event": "batch.finished"})
        assert [r.status for r in rec.requests] == [503, 200]
        assert rec.accepted("POST")[0].json() == {"event": "batch.finished"}
    with recording_server() as rec:
        send_matrix("!room:example.org", "hello", "txn-1", homeserver=rec.url, token="tok")
        (req,) = rec.accepted("PUT")
        assert req.path == "/_matrix/client/v3/rooms/%21room%3Aexample.org/send/m.room.message/txn-1"
        assert req.headers["Authorization"] == "Bearer tok"
        assert req.json() == {"msgtype": "m.text", "body": "hello"}


def test_pull_refuses_paths_outside_dest(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(tmp_path)
    assert safe_target(dest, "lab/b/j/out/x") == dest.resolve() / "lab/b/j/out/x"
    for bad in ["../x", "/etc/passwd", "lab/../../x", "link/escape", ""]:
        with pytest.raises(UsageError, match="refusing"):
            safe_target(dest, bad)


def test_template_is_a_valid_batch_once_its_files_exist(tmp_path: Path) -> None:
    from qubits.cli._batch import TEMPLATE

    (tmp_path / "build.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.py").write_text("print(1)\n")
    (tmp_path / "data").mkdir()
    for i in (1, 2):
        (tmp_path / "data" / f"input-{i}.csv").write_text("x\n")
    (tmp_path / "batch.yaml").write_text(TEMPLATE)
    b = load_batch(tmp_path / "batch.yaml")
    assert [j.name for j in b.jobs] == ["job-1", "job-2"] and b.jobs[1].after == ["job-1"]
    assert json.dumps(plan(b).job.config)
    assert textwrap.dedent(TEMPLATE) == TEMPLATE


def test_the_documented_batch_file_loads_with_its_bare_on_key(tmp_path: Path) -> None:
    """docs/batch.md's example and the template's notify section say `on:` unquoted; YAML 1.1 reads that
    key as the boolean True, which once failed the load with "key True must be a string"."""
    from qubits.cli._batch import TEMPLATE

    docs = (Path(__file__).resolve().parents[2] / "docs" / "batch.md").read_text()
    example = docs.split("## The batch file", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "\n    on: [batch, failure]" in example
    for name in ("build.sh", "run.py", "run.sh", "data/in-1.csv", "src/x.py", "data/input-1.csv", "data/input-2.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    # The example shows every key of one job; its `after:` names a job the snippet leaves out.
    (tmp_path / "doc.yaml").write_text("".join(ln for ln in example.splitlines(True) if "after: [job-0]" not in ln))
    b = load_batch(tmp_path / "doc.yaml")
    assert b.notify.events == ["batch", "failure"]
    # The template with its notify section switched on, as a user would.
    lines = [ln.replace("  # ", "  ", 1) if ln.startswith(("  # notify:", "  #   ")) else ln for ln in TEMPLATE.splitlines()]
    text = "\n".join(lines) + "\n"
    assert "\n    on: [batch, failure]" in text
    (tmp_path / "batch.yaml").write_text(text)
    assert load_batch(tmp_path / "batch.yaml").notify.events == ["batch", "failure"]
