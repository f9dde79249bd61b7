"""Variants of the claim path compared side by side in the simulated tables.

- ``current``: the claim path as it is in this tree.
- ``before``: the claim path without this issue's two changes: ``Agent._fill_slots`` without the
  stale-page rule (after a claim from a fresh ready page, a miss sends the agent back to list again;
  rebuilt from the current source with that one condition undone, so it tracks every other change to
  the function), and a jobspace that does not announce GCS's one write per second per object
  (``Jobspace.min_write_interval``), so a commit follows its claim at once and meets 429s.
- ``sharded``: a **proposal, simulated only**: lease keys ``leases/{shard}/{job}/{task}`` (the ready
  index's 16 hash shards first, as S3 advises for hot prefixes) instead of ``leases/{job}/{task}``.
  Not shipped: lease keys are a stored format (old jobs, mixed-version fleets) and per-job listings would
  need 16 LISTs. Patched into ``qubits._layout`` for the run only.

A variant is applied inside the worker process that runs a cell, and never undone (the process ends).
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable

_RULE = "elif not fresh or claimed:"
_WITHOUT_RULE = "elif not fresh:"


def _before() -> None:
    import nodeagent._agent as agent_module

    src = textwrap.dedent(inspect.getsource(agent_module.Agent._fill_slots))
    if _RULE not in src:
        raise RuntimeError("Agent._fill_slots no longer has the stale-page rule this variant undoes; update bench/sim/_variants.py")
    namespace: dict[str, object] = {}
    exec(compile(src.replace(_RULE, _WITHOUT_RULE), "<before: Agent._fill_slots>", "exec"), agent_module.__dict__, namespace)  # noqa: S102
    agent_module.Agent._fill_slots = namespace["_fill_slots"]  # type: ignore[method-assign,assignment]


def _no_write_spacing() -> None:
    from . import _store

    _store.HONOUR_WRITE_INTERVAL = False


def _sharded() -> None:
    import qubits._layout as layout

    def lease(job: str, task: str) -> str:
        return f"leases/{layout.shard_of(job, task)}/{job}/{task}"

    def parse_lease(key: str) -> tuple[str, str]:
        parts = key.split("/")
        return (parts[2], parts[3]) if len(parts) == 4 else (parts[1], parts[2])

    layout.lease = lease
    layout.parse_lease = parse_lease


VARIANTS: dict[str, tuple[Callable[[], None], ...]] = {
    "before": (_before, _no_write_spacing),
    "current": (),
    "sharded": (_sharded,),
}
"""Each variant's patches, applied in order."""


def apply(name: str) -> None:
    """Apply variant ``name`` to this process."""
    for patch in VARIANTS[name]:
        patch()
