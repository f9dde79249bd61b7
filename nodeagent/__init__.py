"""The qubits node agent: poll, claim, run, heartbeat, commit; systemd integration."""

from ._agent import Agent, AgentConfig
from ._control import refuse_root

__all__ = ["Agent", "AgentConfig", "refuse_root"]
