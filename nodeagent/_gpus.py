"""The node's GPUs: found through NVML (nvidia-ml-py) or nvidia-smi, offered as capabilities and
resources, and handed to tasks one device at a time (CUDA_VISIBLE_DEVICES)."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

VISIBLE_VARS = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
"""The variables that tell CUDA programs (and NVIDIA's container runtime) which devices to use."""

_VENDOR_WORDS = {"nvidia", "geforce", "tesla", "quadro"}
_PACKAGING = re.compile(r"^(\d+gb|sxm\d*|pcie|hbm\d*e?|nvl|mig.*)$")


@dataclass(frozen=True)
class Gpu:
    """One device as the node sees it. ``id`` is what CUDA_VISIBLE_DEVICES names it by."""

    id: str
    name: str
    memory_gb: float

    @property
    def model(self) -> str:
        return model_name(self.name)


def model_name(name: str) -> str:
    """A capability-friendly model name: 'NVIDIA H200' -> 'h200', 'NVIDIA A100-SXM4-80GB' -> 'a100',
    'NVIDIA GeForce RTX 4090' -> 'rtx-4090' (vendor words and packaging dropped)."""
    words = [w for w in re.split(r"[\s\-_/]+", name.lower()) if w]
    kept = [w for w in words if w not in _VENDOR_WORDS and not _PACKAGING.match(w)]
    return "-".join(kept) or "unknown"


def _from_nvml() -> list[Gpu] | None:
    """The devices NVML reports (None: nvidia-ml-py is not installed or NVML does not start)."""
    try:
        import pynvml  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - pynvml raises its own NVMLError kinds: no driver, no device
        return None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):
                name = name.decode()
            total = pynvml.nvmlDeviceGetMemoryInfo(handle).total
            gpus.append(Gpu(str(i), str(name), round(total / 2**30, 1)))
        return gpus
    except Exception:  # noqa: BLE001
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _from_smi() -> list[Gpu] | None:
    """The devices nvidia-smi lists (None: it is not installed or fails)."""
    smi = os.environ.get("QUBITS_NVIDIA_SMI") or shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        with contextlib.suppress(ValueError):
            gpus.append(Gpu(parts[0], parts[1], round(float(parts[2].split()[0]) / 1024, 1)))  # MiB
    return gpus


def detect() -> list[Gpu]:
    """This node's GPUs: NVML first, then nvidia-smi; only those the agent itself may use when it was
    started with CUDA_VISIBLE_DEVICES set (a SLURM allocation does that)."""
    gpus = _from_nvml()
    if gpus is None:
        gpus = _from_smi() or []
    allowed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if allowed is not None and gpus:
        wanted = [w.strip() for w in allowed.split(",") if w.strip()]
        gpus = [g for g in gpus if g.id in wanted]
    return gpus


def offer(gpus: list[Gpu], capabilities: list[str], resources: dict[str, float]) -> None:
    """Add what the GPUs offer to an agent's capabilities and resources: ``gpu``, ``gpu:{model}``,
    ``gpus`` (the device count) and ``gpu_memory`` (GB, over all devices). Given ``--gpus`` lends fewer."""
    if not gpus:
        return
    for cap in ("gpu", *sorted({f"gpu:{g.model}" for g in gpus})):
        if cap not in capabilities:
            capabilities.append(cap)
    lent = min(len(gpus), int(resources.get("gpus", len(gpus))))
    resources["gpus"] = float(lent)
    resources.setdefault("gpu_memory", round(sum(g.memory_gb for g in gpus[:lent]), 1))


class GpuBinder:
    """Which task holds which device. A task asking whole GPUs gets devices no one else holds; one asking
    a fraction (``gpus: 0.5``) shares a device with other fractional tasks, packed onto the fullest."""

    def __init__(self, ids: list[str]) -> None:
        self.free: dict[str, float] = {i: 1.0 for i in ids}
        self.held: dict[str, dict[str, float]] = {}

    def _pick(self, amount: float) -> dict[str, float] | None:
        if amount >= 1:
            whole = [i for i, f in self.free.items() if f >= 1.0]
            n = math.ceil(amount)
            return {i: 1.0 for i in whole[:n]} if len(whole) >= n else None
        fits = sorted((f, i) for i, f in self.free.items() if f + 1e-9 >= amount)
        return {fits[0][1]: amount} if fits else None

    def can_take(self, amount: float) -> bool:
        return amount <= 0 or not self.free or self._pick(amount) is not None

    def take(self, key: str, amount: float) -> list[str] | None:
        """Devices for task ``key`` (None: this node has no GPUs to bind; [] : it asked for none)."""
        if not self.free:
            return None
        if amount <= 0:
            return []
        picked = self._pick(amount)
        if picked is None:
            raise RuntimeError(f"no free GPU for {amount:g} gpus")
        for i, share in picked.items():
            self.free[i] -= share
        self.held[key] = picked
        return sorted(picked, key=lambda i: (len(i), i))

    def give(self, key: str) -> None:
        for i, share in self.held.pop(key, {}).items():
            self.free[i] = min(1.0, self.free[i] + share)


def visible_env(devices: list[str] | None) -> dict[str, str]:
    """The environment that shows a task only its devices (none when it asked for none)."""
    if devices is None:
        return {}
    value = ",".join(devices)
    return {name: value for name in VISIBLE_VARS} | {"ROCR_VISIBLE_DEVICES": value, "HIP_VISIBLE_DEVICES": value}
