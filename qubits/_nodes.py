"""Whether an agent is live, from its presence record (nodes/{node}.json) and that record's age.

One rule, ``NodeInfo.live`` (at least ``NODE_LOST_AFTER``), for every reader: ``qubits nodes``/``top``,
the dashboard, ``why``, fair shares and the event stream of ``make -v``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ._records import NodeInfo
from ._version import __version__


def node_state(info: NodeInfo, age: float) -> str:
    """live, paused, draining, stopped or lost."""
    if info.stopped:
        return "stopped"
    if not info.live(age):
        return "lost"
    if info.paused:
        return "paused"
    return "draining" if info.draining else "live"


def live_versions(nodes: list[tuple[NodeInfo, float]]) -> Counter[str]:
    """How many live agents run each version."""
    return Counter(info.version for info, age in nodes if node_state(info, age) not in ("stopped", "lost"))


def skew_note(nodes: list[tuple[NodeInfo, float]]) -> str | None:
    """A line naming the versions when live agents (or this client) run different ones."""
    versions = live_versions(nodes)
    if not versions or (len(versions) == 1 and __version__ in versions):
        return None
    shown = ", ".join(f"{v} on {n}" for v, n in versions.most_common())
    return f"version skew: {shown} agent(s); this client runs {__version__}"


def node_dict(info: NodeInfo, age: float) -> dict[str, Any]:
    """An agent's presence record with its state, age and whether it runs another version than this client."""
    return {**info.to_dict(), "state": node_state(info, age), "last_seen_s": round(age, 1),
            "live": node_state(info, age) not in ("stopped", "lost"), "skew": info.version != __version__}

