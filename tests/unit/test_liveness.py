"""One liveness rule for agents: an idle agent that reports every 20 minutes is live to every view."""

from __future__ import annotations

from qubits._records import NodeInfo
from qubits._why import live_nodes
from qubits.cli._views import node_state


class _Nodes:
    def __init__(self, *nodes: tuple[NodeInfo, float]) -> None:
        self._nodes = list(nodes)

    def nodes(self) -> list[tuple[NodeInfo, float]]:
        return self._nodes


def test_an_idle_agent_between_its_rare_reports_is_live_everywhere() -> None:
    idle = NodeInfo("idle", "h", 1, "v", report_every=1200.0)  # object stores: presence every 20 min when idle
    busy = NodeInfo("busy", "h", 1, "v", report_every=15.0)
    gone = NodeInfo("gone", "h", 1, "v", stopped=True)
    client = _Nodes((idle, 600.0), (busy, 600.0), (gone, 1.0))
    assert [n.name for n in live_nodes(client)] == ["idle"]  # type: ignore[arg-type]
    assert node_state(idle, 600.0) == "live" and node_state(busy, 600.0) == "lost" and node_state(gone, 1.0) == "stopped"
    assert idle.live(600.0) and not idle.live(3 * 1200.0) and not busy.live(600.0) and not gone.live(1.0)
