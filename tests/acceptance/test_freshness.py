"""Per-target freshness by content, with `qubits make` and its agents as real processes: editing one
recipe remakes its targets and their dependents only, a comment edit remakes nothing, an input file a
recipe names remakes its target, early cutoff stops a cascade, `--force` and `--why`; exactly one leaf
and its ancestors in a pipeline of 200. Runs are counted from a ledger outside the jobspace. And the
picture of the graph, grown with what a job found, rendered in Chromium."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest

import qubits
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
@pytest.mark.timeout(900)  # 240 task processes (a target that finds its dependencies runs twice) on 2 cores
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


# -- the picture of the graph ----------------------------------------------------------------------------
GROWING = '''
@rule("seed")
def seed(ctx):
    ctx.out("list").write_text("p-1 p-2 p-3")

@rule(r"p-(\\d)")
def part(ctx, n):
    ctx.out("v").write_text(n)

rule("all", deps=lambda ctx: ctx.input("seed", "list").read_text().split())
'''


def test_the_graph_picture_grows_with_what_the_job_finds_and_renders_in_a_browser(tmp_path: Path) -> None:
    folder = project(tmp_path / "grow", GROWING)
    before = run_cli("qubits", "all", "-C", str(folder), "--dot")
    assert before.returncode == 0, before.stderr
    assert '"seed" -> "all";' in before.stdout and '"all" [label="all +"' in before.stdout and "p-1" not in before.stdout
    assert run_cli("make", "all", "-C", str(folder), "--agents", "2").returncode == 0
    after = run_cli("qubits", "all", "-C", str(folder), "--dot", "--job", "last")
    for n in (1, 2, 3):
        assert f'"p-{n}" -> "all";' in after.stdout  # found on the node, drawn now
    page = tmp_path / "graph.html"
    assert run_cli("qubits", "all", "-C", str(folder), "--html", str(page), "--job", "last").returncode == 0
    assert page.read_text().count('class="node succeeded"') == 5
    timeline = tmp_path / "timeline.html"
    done = run_cli("timeline", "-C", str(folder), "-o", str(timeline))
    assert done.returncode == 0, done.stderr
    assert 'href="timeline.graph.html"' in timeline.read_text()
    linked = tmp_path / "timeline.graph.html"
    assert linked.read_text().count('class="node succeeded"') == 5
    pixels = _screenshot(linked, tmp_path / "graph.png")
    assert pixels[(0x2E, 0x9E, 0x44)] > 5 * 1000  # five green boxes of 170 x 24 (less their labels)


def _screenshot(page: Path, png: Path) -> Counter[tuple[int, int, int]]:
    """Render ``page`` in headless Chromium; how many pixels of each colour the screenshot has."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium): the graph was not rendered")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,600",
                    f"--screenshot={png}", page.as_uri()], capture_output=True, timeout=120, check=True)
    return _pixels(png.read_bytes())


def _pixels(data: bytes) -> Counter[tuple[int, int, int]]:
    """Decode an 8-bit RGB or RGBA PNG (what Chromium writes) into colour counts."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, kind = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if tag == b"IHDR":
            width, height, depth, kind = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and kind in (2, 6)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 4 if kind == 6 else 3
    raw, stride = zlib.decompress(idat), width * bpp
    prev, counts, i = bytearray(stride), Counter[tuple[int, int, int]](), 0
    for _ in range(height):
        ftype, line = raw[i], bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 0xFF
            elif ftype == 2:
                line[x] = (line[x] + b) & 0xFF
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        counts.update(tuple(line[x : x + 3]) for x in range(0, stride, bpp))  # type: ignore[misc]
        prev = line
    return counts


def test_targets_found_on_the_node_are_reused_there_by_identity(tmp_path: Path) -> None:
    folder = project(tmp_path / "dynamic", GROWING.replace('ctx.out("v").write_text(n)', 'note(ctx); ctx.out("v").write_text(n)'))
    env = {"LEDGER": str(tmp_path / "ledger")}
    _make(folder, env, "all")
    assert ledger(tmp_path / "ledger") == Counter({"p-1": 1, "p-2": 1, "p-3": 1})
    # A new bundle (a comment): the client cannot know all's dependencies, so a job runs; its nodes
    # find p-1..p-3 made by their identities and run no recipe.
    _edit(folder, "@rule(\"seed\")", "# a comment\n@rule(\"seed\")")
    out = _make(folder, env, "all")
    assert "nothing to do" not in out and ledger(tmp_path / "ledger") == Counter({"p-1": 1, "p-2": 1, "p-3": 1})
    job = qubits.connect(f"file://{folder / '.qubits' / 'jobspace'}").last()
    assert {"p-1", "p-2", "p-3"} <= set(job.results())  # they were tasks of the new job, reused on the node
    _edit(folder, "note(ctx); ", "note(ctx);  ")  # whitespace: the same code
    _edit(folder, 'write_text(n)', 'write_text(n + "!")')
    _make(folder, env, "all")
    assert ledger(tmp_path / "ledger") == Counter({"p-1": 2, "p-2": 2, "p-3": 2})


def test_make_graph_keeps_a_page_that_grows_while_the_job_runs(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    folder = project(tmp_path / "live", GROWING.replace('ctx.out("v").write_text(n)', f'''
    while not Path({str(gate)!r}).exists():
        time.sleep(0.05)
    ctx.out("v").write_text(n)'''))
    page = tmp_path / "graph.html"
    proc = subprocess.Popen([sys.executable, "-m", "qubits.cli", "make", "all", "-C", str(folder), "--agents", "2", "--graph", str(page)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (page.exists() and "p-3" in page.read_text()):  # found on a node while the job runs
            assert time.monotonic() < deadline and proc.poll() is None, "the page never showed the targets found at run time"
            time.sleep(0.2)
        running = page.read_text()
        assert 'http-equiv="refresh"' in running  # the browser reloads it while the job runs
        states = dict(re.findall(r"<title>([\w-]+) · (\w+)</title>", running))
        assert states["seed"] == "succeeded" and {states[f"p-{n}"] for n in (1, 2, 3)} <= {"planned", "running"}
        gate.write_text("")
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    final = page.read_text()
    assert 'http-equiv="refresh"' not in final and final.count('class="node succeeded"') == 5
