"""GPU detection through nvidia-smi, model names, and how devices are handed out."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent._gpus import GpuBinder, detect, model_name, offer, visible_env


@pytest.mark.parametrize(
    ("name", "model"),
    [("NVIDIA H200", "h200"), ("NVIDIA A100-SXM4-80GB", "a100"), ("NVIDIA H100 80GB HBM3", "h100"),
     ("Tesla V100-PCIE-16GB", "v100"), ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("NVIDIA RTX A6000", "rtx-a6000")],
)
def test_model_names_are_short_and_stable(name: str, model: str) -> None:
    assert model_name(name) == model


def _fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf '0, NVIDIA A100-SXM4-80GB, 81920\\n1, NVIDIA A100-SXM4-80GB, 81920\\n2, NVIDIA H100 80GB HBM3, 81559\\n'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("QUBITS_NVIDIA_SMI", str(smi))
    monkeypatch.setattr("nodeagent._gpus._from_nvml", lambda: None)  # whatever this machine has


def test_nvidia_smi_is_the_fallback_and_an_allocation_is_respected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_smi(tmp_path, monkeypatch)
    gpus = detect()
    assert [(g.id, g.model, g.memory_gb) for g in gpus] == [("0", "a100", 80.0), ("1", "a100", 80.0), ("2", "h100", 79.6)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")  # e.g. SLURM gave this agent one device
    assert [g.id for g in detect()] == ["2"]
    caps: list[str] = ["big"]
    resources: dict[str, float] = {}
    offer(detect(), caps, resources)
    assert caps == ["big", "gpu", "gpu:h100"] and resources == {"gpus": 1.0, "gpu_memory": 79.6}


def test_gpus_given_lend_fewer_than_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_smi(tmp_path, monkeypatch)
    resources = {"gpus": 1.0}
    offer(detect(), [], resources)
    assert resources == {"gpus": 1.0, "gpu_memory": 80.0}


def test_whole_gpus_are_never_shared_and_fractions_pack() -> None:
    binder = GpuBinder(["0", "1"])
    assert binder.take("a", 1) == ["0"]
    assert binder.take("b", 0.5) == ["1"]
    assert binder.take("c", 0.5) == ["1"], "a fraction packs onto the fullest device that fits"
    assert not binder.can_take(1) and not binder.can_take(0.5)
    with pytest.raises(RuntimeError):
        binder.take("d", 1)
    binder.give("a")
    assert binder.take("d", 1) == ["0"]
    assert binder.take("e", 0) == [], "a task asking for none gets none"
    assert visible_env([])["CUDA_VISIBLE_DEVICES"] == ""
    assert GpuBinder([]).take("x", 0) is None and visible_env(None) == {}, "a node without GPUs changes nothing"
