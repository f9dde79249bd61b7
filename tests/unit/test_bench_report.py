"""The benchmark's tables render whatever a scenario returns (a run that measured for an hour must not
end in a crash while printing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import _report

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


@pytest.mark.parametrize("name", sorted(n for n in _report.TABLES if n != "requests"))
def test_every_recorded_scenario_prints_and_renders_as_markdown(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    res = json.loads((RESULTS / f"{name}.json").read_text())
    _report.print_table(name, res)
    assert _report.TABLES[name][0] in capsys.readouterr().err
    table = _report.markdown_table(name, res)
    head, rows = _report.TABLES[name][1](res)
    assert len(table.splitlines()) == 2 + len(rows) and rows
