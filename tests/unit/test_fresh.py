"""Target identities (qubits/qfile/_fresh.py): what changes one and what does not."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import jobspaces
import qubits
from qubits import TaskSpec
from qubits import _layout as layout
from qubits._gc import collect
from qubits._records import Done
from qubits.qfile import load_qfile
from qubits.qfile._fresh import Identities, explain, identity_of, output_digest
from qubits.qfile._index import lookup, record, write_manifest

BASE = '''
from qubits.qfile import conf, rule
import helpers

conf.scale = 2
conf.other = 1
LIMIT = 10

def tidy(text):
    return text.strip()[:LIMIT]

@rule(r"part-(\\d+)", deps=["raw-{0}"])
def part(ctx, n):
    # read the seed
    ctx.out("p").write_text(tidy(open("data/{0}.txt".format(n)).read()) * ctx.config["scale"])

@rule(r"raw-(\\d+)")
def raw(ctx, n):
    ctx.out("r").write_text(helpers.make(n))

rule("sh", "cat data/1.txt > {output}/x")
'''


def _ident(folder: Path, source: str, target: str = "part-1", deps: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    (folder / "Qfile").write_text(textwrap.dedent(source))
    sys.modules.pop("helpers", None)  # each load imports the project's own, as a node's process does
    qf = load_qfile(folder / "Qfile")
    config = qf.resolve()
    comps = Identities(folder, config).components(qf.match(target), deps or {"raw-1": "d1"})
    return identity_of(comps), comps


def _project(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "1.txt").write_text("one")
    (tmp_path / "data" / "2.txt").write_text("two")
    (tmp_path / "helpers.py").write_text("def make(n):\n    return n\n")
    return tmp_path


def test_comments_and_moved_lines_do_not_count_code_it_calls_does(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    base, _ = _ident(folder, BASE)
    assert _ident(folder, BASE.replace("# read the seed", "# another comment\n\n\n"))[0] == base
    assert _ident(folder, "\n\n# moved\n" + BASE)[0] == base
    assert _ident(folder, BASE.replace("conf.other = 1", "conf.other = 3"))[0] == base  # a key it does not read
    assert _ident(folder, BASE.replace("LIMIT = 10", "LIMIT = 11"))[0] != base  # a constant its helper reads
    assert _ident(folder, BASE.replace("text.strip()", "text.lstrip()"))[0] != base  # the helper it calls
    assert _ident(folder, BASE.replace("conf.scale = 2", "conf.scale = 3"))[0] != base  # a config key it reads
    assert _ident(folder, BASE, deps={"raw-1": "d2"})[0] != base  # a dependency's output
    assert _ident(folder, BASE, target="part-2")[0] != base  # its groups


def test_files_it_names_count_by_content_and_project_modules_by_code(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    base, comps = _ident(folder, BASE)
    assert comps["files"] == {"data/1.txt": comps["files"]["data/1.txt"]}  # "data/{0}.txt" filled from the groups
    (folder / "data" / "2.txt").write_text("TWO")
    assert _ident(folder, BASE)[0] == base  # another part's file
    (folder / "data" / "1.txt").write_text("ONE")
    changed, now = _ident(folder, BASE)
    assert changed != base and explain(now, comps) == ["input file data/1.txt changed"]
    raw, _ = _ident(folder, BASE, target="raw-1", deps={})
    (folder / "helpers.py").write_text("# a comment\ndef make(n):\n    return n\n")
    assert _ident(folder, BASE, target="raw-1", deps={})[0] == raw
    (folder / "helpers.py").write_text("def make(n):\n    return n * 2\n")
    assert _ident(folder, BASE, target="raw-1", deps={})[0] != raw
    sh, _ = _ident(folder, BASE, target="sh", deps={})
    (folder / "data" / "1.txt").write_text("uno")
    assert _ident(folder, BASE, target="sh", deps={})[0] != sh  # a shell command's file words


def test_declared_inputs_and_ignored_files(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    source = BASE + 'rule(r"g-(\\d)", lambda ctx, n: None, inputs=["data/{0}.*"])\nconf.ignore = ["data/2.txt"]\n'
    one, comps = _ident(folder, source, target="g-1", deps={})
    assert list(comps["files"]) == ["data/1.txt"]
    (folder / "data" / "1.txt").write_text("changed")
    assert _ident(folder, source, target="g-1", deps={})[0] != one
    two, comps = _ident(folder, source, target="g-2", deps={})
    assert comps["files"] == {}  # left out of the bundle: the nodes never see it
    assert explain(comps, None) == ["it was never made"]


def test_output_digest_is_by_names_and_bytes() -> None:
    a = output_digest([("x", b"1"), ("y", b"2")], {})
    assert a == output_digest([("y", b"2"), ("x", b"1")], {"d": "other"})
    assert a != output_digest([("x", b"1"), ("y", b"3")], {})
    assert output_digest([], {"d": "1"}) != output_digest([], {"d": "2"})  # a target with no files passes its deps on


def test_gc_removes_the_index_entries_of_a_removed_job_and_keeps_jobs_a_kept_job_reads(memory_url: str) -> None:
    client = qubits.connect(memory_url)
    js = jobspaces.SyncJobspace(client.aio)
    old, hinted = client.submit_commands(["true"]), client.submit_commands(["true"])
    for job in (old, hinted):
        for tid in job.tasks():
            js.put(layout.done(job.id, tid), Done(job.id, tid, "succeeded", 1).to_json())
    a = record(js, {"target": "a", "identity": "i-a", "output": "o"}, (old.id, "a", 1))
    b = record(js, {"target": "b", "identity": "i-b", "output": "o"}, (hinted.id, "b", 1))
    b_too = record(js, {"target": "b", "identity": "i-b", "output": "o"}, (old.id, "b", 1))  # made twice: the first entry stays
    assert a and b and b_too
    write_manifest(js, old.id, [a, b_too])
    write_manifest(js, hinted.id, [b])
    # A job still running whose client found a target made by `hinted`: that job stays.
    client.submit([TaskSpec(id="t1", command="true")], kind="qfile", config={"fresh": {"b": [hinted.id, "b", 1]}})
    report = jobspaces.run_sync(collect(client.aio, 0))
    assert {j.job for j in report.removed} == {old.id}
    assert lookup(js, "i-a") is None and not js.exists(layout.target_manifest(old.id))
    assert (lookup(js, "i-b") or {}).get("job") == hinted.id
    assert {j.job: j.reason for j in report.kept}[hinted.id].startswith("reused by job")
