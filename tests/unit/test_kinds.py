"""Task kinds found by name: the registry resolves a kind's parts only when asked, and says what is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qubits import _kinds as kinds
from qubits.errors import UsageError


def run_notebook(spec: dict[str, Any], scratch: Path) -> int:
    return 0


@pytest.fixture
def notebook() -> Any:
    kinds.register("notebook", kinds.Kind(runner=f"{__name__}:run_notebook"))
    yield
    kinds.KINDS.pop("notebook", None)


def test_the_shipped_kinds_resolve_to_their_front_ends() -> None:
    from qubits._pytask import run_python
    from qubits.batch._commit import after_commit
    from qubits.qfile import submit_targets
    from qubits.qfile._runner import run_target

    assert kinds.runner("python") is run_python and kinds.runner("map") is run_python
    assert kinds.runner("target") is run_target
    assert kinds.after_commit("batch") is after_commit
    assert kinds.submitter("target") is submit_targets
    assert kinds.pooled("python") and not kinds.pooled("target")
    assert not kinds.runs_in_python("shell") and kinds.runner("shell") is None, "the agent runs shell itself"


def test_a_registered_kind_runs_in_python_without_the_agent_knowing_it(notebook: None) -> None:
    assert kinds.runner("notebook") is run_notebook
    assert kinds.runs_in_python("notebook") and not kinds.pooled("notebook")
    assert kinds.after_commit("notebook") is None


def test_an_unknown_kind_is_none_and_a_missing_submitter_says_so() -> None:
    assert kinds.get("no-such-kind") is None and kinds.runner("no-such-kind") is None
    with pytest.raises(UsageError, match="no installed front end submits tasks of kind 'no-such-kind'"):
        kinds.submitter("no-such-kind")
