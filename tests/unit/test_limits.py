"""The limits module's choice of way, on a faked cgroup v2 tree, and the container command lines."""

from __future__ import annotations

from pathlib import Path

from nodeagent._containers import wrap
from nodeagent._limits import Limits


def _tree(root: Path) -> Path:
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


def test_a_delegated_v2_subtree_gets_a_cgroup_per_task(tmp_path: Path) -> None:
    own = _tree(tmp_path / "own")
    assert Limits("x", root=own, probe_only=True).kind == "cgroup2" and not (own / "agent").exists(), "a probe writes nothing"
    limits = Limits("x", root=own)
    assert limits.kind == "cgroup2"
    assert (own / "agent" / "cgroup.procs").read_text().strip().isdigit(), "the agent moved into a leaf of its own"
    assert (own / "cgroup.subtree_control").read_text() == "+memory +cpu"
    conf = limits.confine("job/t1", 1.5, 0.5)
    group = own / "tasks" / "job.t1"
    assert (group / "memory.max").read_text() == str(2**29) and (group / "cpu.max").read_text() == "150000 100000"
    assert conf.prefix[:2] == ["/bin/sh", "-c"] and str(group / "cgroup.procs") in conf.prefix[2]


def test_without_controllers_it_falls_back(tmp_path: Path) -> None:
    own = _tree(tmp_path / "own")
    (own / "cgroup.controllers").write_text("hugetlb\n")
    limits = Limits("x", root=own)
    assert limits.kind == "rss+affinity"
    conf = limits.confine("job/t1", 1, None)
    assert conf.prefix[1:] == ["--cpu-list", str(conf.cores[0])] and len(conf.cores) == 1


def test_container_command_lines(tmp_path: Path) -> None:
    argv = ["/bin/sh", "-c", "true"]
    app = wrap("apptainer", "python:3.11", argv, binds=[tmp_path], workdir=tmp_path, env_names=["QUBITS_TASK"], gpus=["1"])
    assert app[1:] == ["exec", "--pwd", str(tmp_path), "--bind", str(tmp_path), "--nv", "docker://python:3.11", *argv]
    pod = wrap("podman", "docker://alpine:3", argv, binds=[tmp_path, tmp_path / "missing"], workdir=tmp_path,
               env_names=["QUBITS_TASK", "SECRET_TOKEN"], name="qubits-j-t-1", memory=2**30, cpus=2)
    joined = " ".join(pod)
    assert f"--volume {tmp_path}:{tmp_path}" in joined and "missing" not in joined
    assert "--env QUBITS_TASK" in joined and "--env SECRET_TOKEN" in joined and "=" not in joined.split("alpine")[0].replace("--network=host", ""), "values never on the command line"
    assert "--memory 1073741824b --cpus 2" in joined and pod[-4:] == ["alpine:3", *argv]
