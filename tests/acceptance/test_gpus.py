"""GPUs found by the agent itself and bound to tasks, on a node faked with an NVML stub (no GPU here)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import qubits
from tests.agents import AgentProcess, run_cli

NVML_STUB = '''
"""A fake pynvml (nvidia-ml-py's module) reporting two H200s."""
class NVMLError(Exception):
    pass
class _Memory:
    total = 141 * 2**30
def nvmlInit():
    pass
def nvmlShutdown():
    pass
def nvmlDeviceGetCount():
    return 2
def nvmlDeviceGetHandleByIndex(i):
    return i
def nvmlDeviceGetName(handle):
    return b"NVIDIA H200"
def nvmlDeviceGetMemoryInfo(handle):
    return _Memory()
'''


def _fake_nvml(tmp_path: Path) -> dict[str, str]:
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "pynvml.py").write_text(NVML_STUB)
    return {"PYTHONPATH": f"{stub}:{Path.cwd()}"}


def test_two_one_gpu_tasks_see_different_devices_and_a_third_waits(local_url: str, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    client = qubits.connect(local_url)
    record = f'echo "$CUDA_VISIBLE_DEVICES $(date +%s.%N)" > {seen}/$QUBITS_TASK.start; sleep 3; date +%s.%N > {seen}/$QUBITS_TASK.end'
    job = client.submit_commands([record] * 3, resources={"gpus": 1}, requires=["gpu:h200"])
    agent = AgentProcess(local_url, cache=tmp_path / "cache", slots=3, name="gpu-node", env=_fake_nvml(tmp_path))
    try:
        status = job.wait(timeout=90)
        assert status.ok, status.summary() + agent.log()
    finally:
        agent.stop()
    runs = []
    for start in sorted(seen.glob("*.start")):
        device, began = start.read_text().split()
        ended = float(start.with_suffix(".end").read_text())
        runs.append((float(began), ended, device))
    runs.sort()
    assert sorted(d for _, _, d in runs) == ["0", "0", "1"] or sorted(d for _, _, d in runs) == ["0", "1", "1"]
    first, second, third = runs
    assert first[2] != second[2], "the two tasks that ran together had different devices"
    assert second[0] < first[1], "two tasks ran at once (one per GPU)"
    assert third[0] >= min(first[1], second[1]) - 0.05, "the third waited for a free GPU"


def test_the_agent_offers_what_it_found(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    agent = AgentProcess(local_url, cache=tmp_path / "cache", name="gpu-node", env=_fake_nvml(tmp_path))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(i.name == "gpu-node" for i, _ in client.nodes()):
            time.sleep(0.2)
        info = next(i for i, _ in client.nodes() if i.name == "gpu-node")
        shown = run_cli("nodes", "--jobspace", local_url, env={"COLUMNS": "300"})
    finally:
        agent.stop()
    assert {"gpu", "gpu:h200"} <= set(info.capabilities)
    assert info.resources["gpus"] == 2 and info.resources["gpu_memory"] == 282
    assert [g["model"] for g in info.gpus] == ["h200", "h200"]
    assert json.loads(info.to_json())["enforcement"] in ("cgroup2", "cgroup1", "rss+affinity")
    assert info.enforcement in shown.stdout + shown.stderr, "qubits nodes says how limits are enforced"
