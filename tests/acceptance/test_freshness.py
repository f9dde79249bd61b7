"""Per-target freshness by content, with `qubits make` and its agents as real processes: editing one
recipe remakes its targets and their dependents only, a comment edit remakes nothing, an input file a
recipe names remakes its target, early cutoff stops a cascade, `--force` and `--why`. Runs are counted
from a ledger outside the jobspace."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.acceptance.test_qfile import ledger, project
from tests.agents import run_cli

CHAIN = '''
SUFFIX = "!"

def shout(text):
    return text.upper() + SUFFIX

@rule("raw")
def raw(ctx):
    note(ctx)
    ctx.out("raw.txt").write_text(Path(ctx.code, "data/seed.txt").read_text())

@rule("clean", deps=["raw"])
def clean(ctx):
    note(ctx)
    ctx.out("clean.txt").write_text(ctx.input("raw", "raw.txt").read_text().strip())

@rule("loud", deps=["clean"])
def loud(ctx):
    note(ctx)  # a comment
    ctx.out("loud.txt").write_text(shout(ctx.input("clean", "clean.txt").read_text()))

@rule("side")
def side(ctx):
    note(ctx)
    ctx.out("side.txt").write_text("side")

@rule("report", deps=["loud", "side"])
def report(ctx):
    note(ctx)
    ctx.out("report.txt").write_text(ctx.input("loud", "loud.txt").read_text() + ctx.input("side", "side.txt").read_text())

rule("default", deps=["report"])
'''


def _setup(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder = project(tmp_path / "chain", CHAIN)
    (folder / "data").mkdir()
    (folder / "data" / "seed.txt").write_text("hello\n")
    return folder, {"LEDGER": str(tmp_path / "ledger")}


def _make(folder: Path, env: dict[str, str], *args: str) -> str:
    done = run_cli("make", "-C", str(folder), "--agents", "2", *args, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _edit(folder: Path, old: str, new: str) -> None:
    text = (folder / "Qfile").read_text()
    assert old in text
    (folder / "Qfile").write_text(text.replace(old, new))


def _report(folder: Path) -> str:
    """The report last made."""
    runs = (folder / ".qubits" / "jobspace" / "runs").glob("*/report/*/out/report.txt")
    return max(runs, key=lambda p: p.stat().st_mtime).read_text()


def test_editing_one_recipe_remakes_its_targets_and_dependents_and_a_comment_remakes_nothing(tmp_path: Path) -> None:
    folder, env = _setup(tmp_path)
    _make(folder, env)
    everything = Counter({"raw": 1, "clean": 1, "loud": 1, "side": 1, "report": 1})
    assert ledger(tmp_path / "ledger") == everything

    # A comment (and a blank line) in another rule: nothing runs, no job is submitted.
    _edit(folder, "note(ctx)  # a comment", "note(ctx)  # another comment\n")
    out = _make(folder, env)
    assert "nothing to do" in out
    assert ledger(tmp_path / "ledger") == everything

    # The code loud calls (a helper, and a constant it reads) changed: loud and report run, nothing else.
    _edit(folder, 'SUFFIX = "!"', 'SUFFIX = "?"')
    _make(folder, env)
    assert ledger(tmp_path / "ledger") == everything + Counter({"loud": 1, "report": 1})
    assert _report(folder) == "HELLO?side"

    # The recipe of clean changed: clean runs; its output is new, so loud and report run too.
    _edit(folder, ".read_text().strip())", ".read_text().strip() + ' world')")
    _make(folder, env)
    assert ledger(tmp_path / "ledger") == everything + Counter({"loud": 2, "report": 2, "clean": 1})
    assert _report(folder) == "HELLO WORLD?side"

    # Why: report is reused now; after an edit of side's recipe it runs, and says why.
    why = run_cli("make", "-C", str(folder), "--why", "report", env=env)
    assert why.returncode == 0 and "report is reused" in why.stdout, why.stdout + why.stderr
    _edit(folder, 'write_text("side")', 'write_text("SIDE")')
    why = run_cli("make", "-C", str(folder), "--why", "report", env=env)
    assert why.returncode == 0, why.stderr
    assert "report runs:" in why.stdout and "dependency side is not made yet or is made again" in why.stdout
    assert "side runs: its rule's code changed" in why.stdout
    assert ledger(tmp_path / "ledger") == everything + Counter({"loud": 2, "report": 2, "clean": 1})  # --why makes nothing


def test_an_input_file_a_recipe_names_remakes_its_target_and_early_cutoff_stops_the_cascade(tmp_path: Path) -> None:
    folder, env = _setup(tmp_path)
    _make(folder, env)
    base = ledger(tmp_path / "ledger")
    assert base == Counter({"raw": 1, "clean": 1, "loud": 1, "side": 1, "report": 1})

    # raw names data/seed.txt: a change to it remakes raw. Only trailing whitespace changed, which clean
    # strips: clean runs, its output is the same bytes, and loud and report are reused (early cutoff).
    (folder / "data" / "seed.txt").write_text("hello\n\n\n")
    _make(folder, env)
    assert ledger(tmp_path / "ledger") == base + Counter({"raw": 1, "clean": 1})

    # A real change goes all the way up.
    (folder / "data" / "seed.txt").write_text("bye\n")
    _make(folder, env)
    assert ledger(tmp_path / "ledger") == base + Counter({"raw": 2, "clean": 2, "loud": 1, "report": 1})
    assert _report(folder) == "BYE!side"


def test_force_remakes_a_target_and_its_dependents_and_B_everything(tmp_path: Path) -> None:
    folder, env = _setup(tmp_path)
    _make(folder, env)
    base = ledger(tmp_path / "ledger")
    why = run_cli("make", "-C", str(folder), "--why", "loud", "--force", "clean", env=env)
    assert why.returncode == 0 and "loud runs" in why.stdout and "forced" in why.stdout, why.stdout + why.stderr
    # clean's output comes out the same, yet what depends on it is remade: that is what forcing means.
    _make(folder, env, "--force", "clean")
    assert ledger(tmp_path / "ledger") == base + Counter({"clean": 1, "loud": 1, "report": 1})
    _make(folder, env, "-B")
    assert ledger(tmp_path / "ledger") == base + base + Counter({"clean": 1, "loud": 1, "report": 1})
    bad = run_cli("make", "-C", str(folder), "--force", "nope", env=env)
    assert bad.returncode == 2 and "--force nope" in bad.stderr


def _tree_qfile(salt: dict[int, str]) -> str:
    """200 targets: 160 leaves (one rule each), 32 mids of 5 leaves, 7 tops of up to 5 mids, default."""
    lines = []
    for i in range(160):
        lines += [f'@rule("leaf-{i}")', f"def leaf_{i}(ctx):", "    note(ctx)", f'    ctx.out("v").write_text("{i}{salt.get(i, "")}")', ""]
    lines += ['@rule(r"mid-(\\d+)", deps=lambda ctx, j: [f"leaf-{5 * int(j) + k}" for k in range(5)])',
              "def mid(ctx, j):", "    note(ctx)", '    ctx.out("v").write_text(",".join(ctx.input(d, "v").read_text() for d in ctx.deps))', "",
              '@rule(r"top-(\\d+)", deps=lambda ctx, j: [f"mid-{m}" for m in range(5 * int(j), min(32, 5 * int(j) + 5))])',
              "def top(ctx, j):", "    note(ctx)", '    ctx.out("v").write_text(";".join(ctx.input(d, "v").read_text() for d in ctx.deps))', "",
              'rule("default", deps=[f"top-{t}" for t in range(7)])']
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_exact_remake_of_one_leaf_in_a_pipeline_of_200_targets(tmp_path: Path) -> None:
    folder = project(tmp_path / "tree", _tree_qfile({}))
    env = {"LEDGER": str(tmp_path / "ledger")}
    done = run_cli("make", "-C", str(folder), "--agents", "4", env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    first = ledger(tmp_path / "ledger")
    assert sum(first.values()) == 199 and set(first.values()) == {1}  # every target but default (no recipe)
    (folder / "Qfile").write_text(project(tmp_path / "tree2", _tree_qfile({17: "x"})).joinpath("Qfile").read_text())
    done = run_cli("make", "-C", str(folder), "--agents", "4", env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    # Exactly the leaf and its ancestors (leaf-17 -> mid-3 -> top-0; default has no recipe).
    assert ledger(tmp_path / "ledger") - first == Counter({"leaf-17": 1, "mid-3": 1, "top-0": 1})
