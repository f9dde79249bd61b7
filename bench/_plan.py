"""How big each scenario is: the full run, --quick (CI smoke, under two minutes) and --tiny (the test)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Claims per second offered to each store in the claim scenario (held constant across agent counts):
# well under what the store and this machine's two cores can serve, so that what changes with the
# agent count is contention, not queueing. moto spends ~0.2 s of CPU on a 1,000-key LIST.
CLAIM_RATE = {"memory": 40.0, "local": 40.0, "moto": 3.0, "seaweed": 10.0}


@dataclass
class Plan:
    name: str
    stores: list[str]
    default_scenarios: list[str]
    floor_n: int
    floor_lists: int
    claim_agents: list[int]
    claim_queues: dict[str, list[int]]
    claim_measure: dict[str, int]
    throughput_shapes: list[tuple[int, int]]
    throughput_tasks: dict[str, int]
    reps: int
    idle_stores: list[str]
    idle_window: float
    idle_settle: float
    takeover_stores: list[str]
    takeover_ttls: list[float]
    takeover_reps: int
    memory_stores: list[str]
    memory_submit: int
    peers: dict[str, Any] = field(default_factory=dict)
    claim_stores: list[str] | None = None
    """Stores the claim scenario runs on (None: every store of the run)."""
    claim_agents_by_store: dict[str, list[int]] = field(default_factory=dict)
    """Agent counts for one store instead of ``claim_agents``."""
    plan_targets: int = 10_000
    """Targets of the Qfile whose no-op ``make`` the plan scenario times."""
    dashboard_window: float = 60.0
    """Seconds the dashboard scenario counts requests for (per number of tabs)."""
    wake_stores: list[str] = field(default_factory=lambda: ["local", "moto", "seaweed"])
    wake_tries: int = 20
    wake_no_hint_poll: float = 10.0
    """--max-idle-poll of the agent measured without hints (the figure must stay under it)."""
    wake_no_hint_tries: int = 4

    def claim_for(self, store: str) -> dict[str, Any]:
        return {"agents": self.claim_agents_by_store.get(store, self.claim_agents), "queues": self.claim_queues.get(store, self.claim_queues["default"]),
                "measure": self.claim_measure.get(store, self.claim_measure["default"]), "rate": CLAIM_RATE[store]}

    def throughput_tasks_for(self, store: str) -> int:
        return self.throughput_tasks.get(store, self.throughput_tasks["default"])


ALL = ["floor", "claim", "throughput", "idle", "wake", "takeover", "memory", "peers", "plan"]

FULL = Plan(
    name="full",
    stores=["memory", "local", "moto", "seaweed"],
    default_scenarios=ALL,
    floor_n=300,
    floor_lists=30,
    claim_agents=[1, 10, 100, 1000],
    claim_queues={"default": [1000, 10_000, 100_000], "local": [1000], "moto": [1000], "seaweed": [1000]},
    claim_measure={"default": 400, "moto": 90, "seaweed": 150},
    # moto answers a LIST of 1,000 keys in ~0.7 s of its one CPU (the floor table), and a cold or missed
    # agent lists again: 100 agents on moto kept its CPU busy for over 15 minutes without finishing a
    # cell. On the object stores the claim scenario stops where the server, not qubits, is measured; the
    # simulator (bench/SIMULATED.md) takes over from there.
    claim_agents_by_store={"moto": [1, 10], "seaweed": [1, 10, 100]},
    throughput_shapes=[(4, 1), (2, 8)],
    throughput_tasks={"default": 1000, "moto": 500, "seaweed": 500},
    reps=3,
    idle_stores=["moto"],
    # An idle agent's schedule is in minutes (a HEAD a minute; presence, a lease scan and a listing every
    # 20-60 min): the window starts once its polls have backed off (about a minute) and spans several.
    idle_window=450.0,
    idle_settle=150.0,
    takeover_stores=["local", "moto"],
    takeover_ttls=[2.0, 10.0],
    takeover_reps=2,
    memory_stores=["local"],
    memory_submit=100_000,
    peers={"redis_tasks": 1000, "s3_tasks": 500, "workers": 4, "reps": 3, "latency_tries": 15, "kill": True,
           "kill_window": 90, "seaweed": True},
)
QUICK = Plan(
    name="quick",
    stores=["memory", "local", "moto"],
    default_scenarios=["floor", "claim", "throughput", "idle", "takeover", "memory"],
    floor_n=30,
    floor_lists=3,
    claim_agents=[1, 10, 100],
    claim_queues={"default": [1000]},
    claim_measure={"default": 60, "moto": 10},
    # 100 cold agents on moto queue LISTs of ~0.7 s CPU each faster than it answers them, and their
    # retries pile up in its threads: the smoke run stays where moto keeps up.
    claim_agents_by_store={"moto": [1, 10]},
    throughput_shapes=[(2, 2)],
    throughput_tasks={"default": 100, "moto": 40},
    reps=1,
    idle_stores=["local"],
    idle_window=4.0,
    idle_settle=2.0,
    takeover_stores=["local"],
    takeover_ttls=[2.0],
    takeover_reps=1,
    memory_stores=["local"],
    memory_submit=2000,
    wake_stores=["local"],
    wake_tries=5,
    peers={"redis_tasks": 200, "s3_tasks": 100, "workers": 2, "reps": 1, "latency_tries": 5, "kill": False},
    plan_targets=2_000,
)

TINY = Plan(
    name="tiny",
    stores=["memory", "local"],
    default_scenarios=["floor", "claim", "throughput"],
    floor_n=5,
    floor_lists=1,
    claim_agents=[1, 10],
    claim_queues={"default": [1000]},
    claim_measure={"default": 20},
    throughput_shapes=[(1, 2)],
    throughput_tasks={"default": 20},
    reps=1,
    idle_stores=["local"],
    idle_window=2.0,
    idle_settle=1.0,
    takeover_stores=["local"],
    takeover_ttls=[2.0],
    takeover_reps=1,
    memory_stores=["local"],
    memory_submit=500,
    dashboard_window=3.0,
    peers=QUICK.peers,
    plan_targets=200,
    claim_stores=["memory"],
)


def plan_for(*, quick: bool, tiny: bool = False) -> Plan:
    return TINY if tiny else QUICK if quick else FULL
