"""What a task may use on this node: its own GPUs, and its CPUs and memory held by the node's limits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qubits.protocol import TaskSpec

from . import _containers as containers
from ._gpus import Gpu, GpuBinder, detect, offer, visible_env
from ._limits import Confined, Limits

if TYPE_CHECKING:
    from ._agent import AgentConfig


@dataclass
class Bound:
    """One running task's share of the node."""

    key: str
    limits: Confined
    gpus: list[str] | None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def own_process(self) -> bool:
        """Whether the task needs a process of its own (not a pooled Python worker) to be held to it."""
        return bool(self.limits.memory or self.limits.cpus or self.gpus)

    container: tuple[str, str] | None = None
    """(runtime, container name) while the task runs in a podman/docker container."""

    def wrap(self, argv: list[str]) -> list[str]:
        return [*self.limits.prefix, *argv]


class Confinement:
    """The node's GPUs and limits. Made once per agent: it finds the GPUs and adds what they offer to
    the agent's capabilities and resources (``gpu``, ``gpu:{model}``, ``gpus``, ``gpu_memory``)."""

    def __init__(self, config: AgentConfig) -> None:
        self.gpus: list[Gpu] = detect()
        offer(self.gpus, config.capabilities, config.resources)
        lent = int(config.resources.get("gpus", 0))
        ids = [g.id for g in self.gpus][:lent] if self.gpus else [str(i) for i in range(lent)]
        self.binder = GpuBinder(ids)
        self.limits = Limits(config.name)
        self.runtimes = containers.detect()
        for cap in containers.capabilities(self.runtimes):
            if cap not in config.capabilities:
                config.capabilities.append(cap)

    @property
    def kind(self) -> str:
        """How limits are enforced here: cgroup2, cgroup1 or rss+affinity."""
        return self.limits.kind

    def presence(self) -> dict[str, Any]:
        """What the node's presence record says of it: enforcement, container runtimes, GPUs."""
        gpus = [{"id": g.id, "name": g.name, "model": g.model, "memory_gb": g.memory_gb} for g in self.gpus]
        return {"enforcement": self.kind, "runtimes": list(self.runtimes), "gpus": gpus}

    def can_take(self, spec: TaskSpec) -> bool:
        """Whether a device is free for ``spec`` now (counts alone miss a fragmented fractional split)."""
        return self.binder.can_take(float(spec.resources.get("gpus", 0) or 0))

    def bind(self, key: str, spec: TaskSpec) -> Bound:
        """Devices and limits for task ``key``. OSError: its cgroups could not be made."""
        res = spec.resources
        gpus = self.binder.take(key, float(res.get("gpus", 0) or 0))
        try:
            limits = self.limits.confine(key, res.get("cpus") or None, res.get("memory") or None)
        except OSError:
            self.binder.give(key)
            raise
        return Bound(key, limits, gpus, visible_env(gpus))

    def in_image(self, bound: Bound, spec: TaskSpec, argv: list[str], *, binds: list[Path], workdir: Path, env: dict[str, str], name: str) -> list[str]:
        """``argv`` run inside the task's image. RuntimeError: no runtime here can run it."""
        assert spec.image
        runtime = containers.choose(self.runtimes, spec.image)
        daemon = runtime in ("podman", "docker")  # their containers sit outside the task's cgroup: limits go to them
        names = [k for k in env if k.startswith("QUBITS_") or k in spec.env or k.endswith("_VISIBLE_DEVICES")]
        if daemon:
            bound.container = (runtime, name)
        return containers.wrap(
            runtime, spec.image, argv, binds=binds, workdir=workdir, env_names=names, gpus=bound.gpus, name=name,
            memory=bound.limits.memory if daemon else None, cpus=bound.limits.cpus if daemon else None,
        )

    async def release(self, bound: Bound) -> None:
        self.binder.give(bound.key)
        await self.limits.release(bound.limits)
        if bound.container is not None:
            await asyncio.to_thread(containers.remove, *bound.container)

    def out_of_memory(self, bound: Bound, code: int) -> str | None:
        """Why the task died, if for memory: a sentence for status and ``why``."""
        if not bound.limits.memory or not self.limits.out_of_memory(bound.limits, code):
            return None
        gb = bound.limits.memory / 2**30
        return f"out of memory: the task went over its memory limit of {gb:g} GB and was killed ({self.kind})"
