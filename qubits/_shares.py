"""Who is using the fleet: each submitter's running tasks and share of what runs (``qubits jobs --shares``)."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import TYPE_CHECKING

from jobspaces import run_sync

from .errors import QubitsError

if TYPE_CHECKING:
    from ._client import Client
    from ._records import NodeInfo


def person(submitter: str) -> str:
    """Whose share a job counts against: the user, wherever they submitted from (user@host -> user)."""
    return submitter.rpartition("@")[0] or submitter


def running_by_person(nodes: list[NodeInfo], owner: dict[str, str]) -> Counter[str]:
    """Running tasks per user, from agents' presence records (``owner``: job id -> submitter)."""
    counts: Counter[str] = Counter()
    for info in nodes:
        for running in info.running:
            job = running.split("/", 1)[0]
            counts[person(owner.get(job, "?"))] += 1
    return counts


def running_shares(client: Client) -> list[dict[str, object]]:
    """One row per user with tasks running on live agents (not stopped, not lost): user, running, share
    (of all running tasks). As fresh as the agents' presence records (see PRESENCE_INTERVAL)."""
    nodes = [info for info, age in client.nodes() if info.live(age)]
    owner = {}
    for job in {r.split("/", 1)[0] for info in nodes for r in info.running}:
        with contextlib.suppress(QubitsError):
            owner[job] = run_sync(client.specs.job(job)).submitter
    counts = running_by_person(nodes, owner)
    total = sum(counts.values())
    return [{"user": who, "running": n, "share": round(n / total, 3)} for who, n in counts.most_common()]
