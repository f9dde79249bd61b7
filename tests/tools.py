"""The one rule for tests that need a system tool (openssh, tmux, chromium, libfaketime, a server …).

On a fresh machine (the README's `python -m pytest`), a test whose tool is missing is skipped with the
reason and how to install it. Under CI (`CI=true`, as CI services set it) a missing tool is a failure:
CI installs every tool (`.ci/run`), so nothing may be skipped there silently.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether this run is CI's (``CI`` set to true, 1 or yes)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def tool_missing(reason: str) -> NoReturn:
    """Skip the test for a missing tool, or fail it under CI; ``reason`` says what is missing and how to
    install it."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing tool fails the run rather than skipping tests)", pytrace=False)
    pytest.skip(reason)


def require_tools(*names: str, install: str) -> None:
    """Every program in ``names`` must be on PATH, or :func:`tool_missing` (``install``: how to get them)."""
    absent = [name for name in names if shutil.which(name) is None]
    if absent:
        tool_missing(f"needs {', '.join(absent)} ({install})")


def require(reason: str | None) -> None:
    """:func:`tool_missing` with ``reason`` unless it is None (for checks that say why, like ``why_no_netns``)."""
    if reason is not None:
        tool_missing(reason)
