"""What Python users expect of the API's edges (issue 19, item 8): connect() refuses what it cannot use at
once, WaitTimeout is a TimeoutError, Cancelled is a CancelledError, and the version comes from metadata."""

from __future__ import annotations

import concurrent.futures
from importlib.metadata import version
from pathlib import Path

import pytest

import qubits


def test_connect_refuses_what_is_not_a_jobspace_at_once() -> None:
    for wrong in (object(), 42, ["s3://b/p"]):
        with pytest.raises(qubits.UsageError, match="connect\\(\\) takes a jobspace URL"):
            qubits.connect(wrong)  # type: ignore[arg-type]


def test_connect_takes_a_path_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert qubits.connect(tmp_path / "a").url == f"file://{tmp_path / 'a'}"
    monkeypatch.setenv("QUBITS_JOBSPACE", str(tmp_path / "b"))
    assert qubits.connect().url == f"file://{tmp_path / 'b'}"


def test_wait_timeout_is_a_timeout_error_and_cancelled_a_cancelled_error() -> None:
    with pytest.raises(TimeoutError):
        raise qubits.WaitTimeout("job x not finished after 1s")
    assert str(qubits.WaitTimeout()) == "Timed out waiting."
    with pytest.raises(concurrent.futures.CancelledError):
        raise qubits.Cancelled("x was cancelled")
    assert isinstance(qubits.Cancelled(), qubits.QubitsError) and isinstance(qubits.WaitTimeout(), qubits.QubitsError)


def test_version_is_the_installed_distributions() -> None:
    assert qubits.__version__ == version("qubits")
