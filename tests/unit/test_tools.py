"""The README's `python -m pytest` on a fresh machine: a test whose system tool is missing skips with the
reason, and under CI (CI=true) fails instead (issue 19, item 22). Checked on a test of its own, run by a
pytest process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

NEEDS = """
from tests.tools import require_tools

def test_needs_a_tool_nobody_has():
    require_tools("qubits-no-such-tool", install="apt-get install -y qubits-no-such-tool")
"""


def _pytest(folder: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(folder / "test_needs.py")],
                          capture_output=True, text=True, env=env, cwd=folder, timeout=120)


def test_a_missing_tool_skips_with_its_reason_and_fails_under_ci(tmp_path: Path) -> None:
    (tmp_path / "test_needs.py").write_text(NEEDS)
    fresh = _pytest(tmp_path, None)
    assert fresh.returncode == 0, fresh.stdout
    assert "1 skipped" in fresh.stdout and "needs qubits-no-such-tool (apt-get install -y qubits-no-such-tool)" in fresh.stdout
    ci = _pytest(tmp_path, "true")
    assert ci.returncode == 1 and "1 failed" in ci.stdout, ci.stdout
    assert "CI=true" in ci.stdout


def test_every_tool_check_in_the_tests_goes_through_the_shared_helper() -> None:
    """No test decides on its own to skip (or fail) for a missing program: grep for the old spellings."""
    offenders = []
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name in ("tools.py", "test_tools.py"):
            continue
        lines = path.read_text().splitlines()
        for line_no, line in enumerate(lines, 1):
            after = lines[line_no] if line_no < len(lines) else ""
            if "shutil.which(" in line and ("pytest.skip" in after or "pytest.fail" in after):
                offenders.append(f"{path.relative_to(ROOT)}:{line_no}")
            if "skipif" in line and ("FAKETIME" in line or "faketime" in line):
                offenders.append(f"{path.relative_to(ROOT)}:{line_no}")
    assert not offenders, offenders
