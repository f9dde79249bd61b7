"""What an agent offers and what its running tasks hold of it: a narrow collaborator of the agent.

Capabilities and resources (cpus, memory, gpus, or any named amount) are the node's, as configured
and as its confinement found them (it may add GPUs and runtimes after start, so these are the
configuration's own list and dict, not copies). A task fits the node if it could ever run here, and
fits now if what it asks is free beside what running tasks hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from qubits.protocol import TaskSpec


class ResourceView(Protocol):
    """What the claim path asks of the node's resources."""

    def fits(self, spec: TaskSpec) -> bool: ...

    def free_for(self, spec: TaskSpec) -> bool: ...


class Resources:
    """The node's capabilities and resources, and the amounts its running tasks hold."""

    def __init__(self, capabilities: Sequence[str], resources: Mapping[str, float]) -> None:
        self.capabilities = capabilities
        self.total = resources
        self.used: dict[str, float] = {}

    def fits(self, spec: TaskSpec) -> bool:
        """Whether this node could ever run ``spec`` (capabilities and resources)."""
        if not set(spec.requires) <= set(self.capabilities):
            return False
        return all(amount <= self.total.get(name, 0.0) for name, amount in spec.resources.items() if amount)

    def free_for(self, spec: TaskSpec) -> bool:
        """Whether what ``spec`` asks is free now, beside what running tasks hold."""
        return all(
            amount <= self.total.get(name, 0.0) - self.used.get(name, 0.0)
            for name, amount in spec.resources.items()
            if amount
        )

    def hold(self, spec: TaskSpec) -> None:
        """A task of ``spec`` starts: its amounts are taken."""
        for name, amount in spec.resources.items():
            self.used[name] = self.used.get(name, 0.0) + amount

    def give_back(self, spec: TaskSpec) -> None:
        """A task of ``spec`` ended: its amounts are free again."""
        for name, amount in spec.resources.items():
            self.used[name] = self.used.get(name, 0.0) - amount
