"""Array jobs, as SLURM writes them: ``--array 1-100``, ``1,3,5``, ``0-99:2``, ``1-3,10-20:5``.

Each command runs once per index, with ``QUBITS_ARRAY_INDEX`` in its environment (SLURM's
``SLURM_ARRAY_TASK_ID``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import UsageError

MAX_ARRAY = 1_000_000
"""The most indices one array may have (a typo like 1-1000000000 is refused, not submitted)."""

_PART = re.compile(r"(\d+)(?:-(\d+)(?::(\d+))?)?")


def parse_array(spec: str | Iterable[int]) -> list[int]:
    """The indices of an array spec (a string in SLURM's syntax, or integers), in order, without repeats."""
    if not isinstance(spec, str):
        out = [int(i) for i in spec]
        if not out:
            raise UsageError("the array has no indices")
        return list(dict.fromkeys(out))
    text = spec.strip()
    if "%" in text:
        raise UsageError(
            f"--array {text}: a limit on tasks running at once (%N) is not supported; drop it, or give the agents fewer slots"
        )
    indices: list[int] = []
    for part in text.split(","):
        match = _PART.fullmatch(part.strip())
        if match is None:
            raise UsageError(f"--array {text}: {part.strip()!r} is not an index or a range; use e.g. 1-100, 1,3,5 or 0-99:2")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        step = int(match.group(3)) if match.group(3) is not None else 1
        if last < first or step < 1:
            raise UsageError(f"--array {text}: in {part.strip()!r} the range must go up by a step of at least 1")
        if len(indices) + (last - first) // step + 1 > MAX_ARRAY:
            raise UsageError(f"--array {text}: more than {MAX_ARRAY:,} indices")
        indices.extend(range(first, last + 1, step))
    return list(dict.fromkeys(indices))
