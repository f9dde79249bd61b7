"""The agent's resources alone: what fits ever, what fits now, and what running tasks hold."""

from __future__ import annotations

from nodeagent._slots import Resources
from qubits._records import TaskSpec


def spec(requires: tuple[str, ...] = (), **resources: float) -> TaskSpec:
    return TaskSpec(id="t", command="true", requires=list(requires), resources=resources)


def test_fits_ever_by_capabilities_and_totals() -> None:
    node = Resources(["gpu"], {"cpus": 4.0, "memory": 8.0})
    assert node.fits(spec(("gpu",), cpus=4.0)) and node.fits(spec())
    assert not node.fits(spec(("fpga",))), "a capability the node lacks"
    assert not node.fits(spec(cpus=5.0)) and not node.fits(spec(gpus=1.0)), "more than the node has, or none at all"


def test_fits_now_counts_what_running_tasks_hold() -> None:
    node = Resources([], {"cpus": 4.0})
    big = spec(cpus=3.0)
    node.hold(big)
    assert not node.free_for(spec(cpus=2.0)) and node.free_for(spec(cpus=1.0))
    node.give_back(big)
    assert node.free_for(spec(cpus=4.0)) and node.used == {"cpus": 0.0}


def test_it_sees_what_the_confinement_adds_after_start() -> None:
    caps: list[str] = []
    totals: dict[str, float] = {}
    node = Resources(caps, totals)
    caps.append("gpu")
    totals["gpus"] = 2.0  # as Confinement offers the GPUs it found, in the configuration's own list and dict
    assert node.fits(spec(("gpu",), gpus=2.0))
