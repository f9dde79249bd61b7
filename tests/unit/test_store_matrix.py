"""The store-matrix plugin (tests/matrix.py): it counts a conformance run's outcomes per store and writes
the table between the markers of docs/stores.md, leaving the rest of the page alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.matrix import END, START, StoreMatrix


def report(nodeid: str, when: str, outcome: str, **extra: Any) -> pytest.TestReport:
    longrepr = ("file", 1, "Skipped: azurite unavailable: not installed") if outcome == "skipped" else None
    rep = pytest.TestReport(nodeid, ("f", 1, "t"), {}, outcome, longrepr, when)  # type: ignore[arg-type]
    for name, value in extra.items():
        setattr(rep, name, value)
    return rep


def test_rows_are_counted_and_written_between_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "stores.md"
    doc.write_text(f"# Stores\n\nbefore\n{START}\nold table\n{END}\nafter\n")
    matrix = StoreMatrix(doc)
    base = "tests/integration/test_conformance.py::"
    for rep in (
        report(base + "TestFakeGcs::test_a", "call", "passed"),
        report(base + "TestFakeGcs::test_b[x]", "call", "passed"),
        report(base + "TestMoto::test_race_large_bodies[cas]", "call", "skipped", wasxfail="not atomic"),
        report(base + "TestMoto::test_c", "call", "failed"),
        report(base + "TestAzurite::test_a", "setup", "skipped"),
        report(base + "TestFakeGcs::test_a", "setup", "passed"),  # setups that pass are not counted
        report("tests/unit/test_x.py::TestMoto::test_a", "call", "passed"),  # not the conformance file
    ):
        matrix.pytest_runtest_logreport(rep)
    matrix.pytest_sessionfinish(None)  # type: ignore[arg-type]
    text = doc.read_text()
    assert text.startswith("# Stores\n\nbefore\n") and text.endswith(f"{END}\nafter\n") and "old table" not in text
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["GCS (`gs://`)"].endswith("| 2 | 2 | 0 | 0 | 0 |")
    assert rows["S3 (`s3://`)"].endswith("| 2 | 0 | 1 | 1 | 0 |")
    assert "| 1 | 0 | 0 | 0 | 1 (Skipped: azurite unavailable: not installed) |" in rows["Azure Blob (`az://`)"]
    assert "memory" not in "".join(rows), "a store the run did not reach has no row"
