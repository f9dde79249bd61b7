"""Tasks inside container images, agents as processes: a job with an image runs in it (podman here, with
an image built from busybox on the spot: no registry needed), its folders bound in; the agent offers its
runtimes as capabilities and qubits nodes shows them.

Skips, saying why, where no runtime can run a container on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import jobspaces
import qubits
from qubits import _layout as layout
from qubits.batch import Batch, submit
from tests.agents import AgentProcess, run_cli

IMAGE = "localhost/qubits-test:busybox"
# Podman's own configuration, for sandboxes like CI's: runc (crun refuses hybrid cgroup hosts) and limits
# the container may set (the host's defaults are above what an unprivileged VM allows). Harmless elsewhere.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    podman, busybox = shutil.which("podman"), shutil.which("busybox")
    if podman is None or busybox is None:
        pytest.skip("no podman and busybox here (apt-get install podman runc busybox-static); apptainer is not packaged for Debian 12")
    root = tmp_path_factory.mktemp("image")
    conf = root / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    rootfs = root / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "tmp").mkdir()
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    for tool in ("sh", "cat", "echo", "test", "pwd", "ls", "true"):
        (rootfs / "bin" / tool).symlink_to("busybox")
    tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True).stdout
    made = subprocess.run([podman, "import", "-", IMAGE], input=tar, capture_output=True, env=env, timeout=120)
    if made.returncode != 0:
        pytest.skip(f"podman cannot import an image here: {made.stderr.decode(errors='replace').strip()[:300]}")
    ran = subprocess.run([podman, "run", "--rm", IMAGE, "/bin/true"], capture_output=True, env=env, timeout=120)
    if ran.returncode != 0:
        pytest.skip(f"podman cannot run a container here: {ran.stderr.decode(errors='replace').strip()[:300]}")
    return {"CONTAINERS_CONF": str(conf)}


def test_a_job_with_an_image_runs_inside_it_with_its_folders_bound(local_url: str, tmp_path: Path, podman_env: dict[str, str]) -> None:
    client = qubits.connect(local_url)
    inside = 'test ! -e /usr/bin/python3 && test -x /bin/busybox && echo "inside $QUBITS_TASK" > "$QUBITS_OUTPUT/where" && pwd > "$QUBITS_OUTPUT/pwd"'
    job = client.submit_commands([inside, "echo on the host"], image=IMAGE)
    agent = AgentProcess(local_url, cache=tmp_path / "cache", name="boxed", env=podman_env)
    try:
        status = job.wait(timeout=120)
        assert status.ok, status.summary() + agent.log()
        shown = run_cli("nodes", "--jobspace", local_url, env={"COLUMNS": "300"})
    finally:
        agent.stop()
    js = jobspaces.SyncJobspace(client.aio)
    done = job.results()["t000001"]
    out = layout.run_prefix(job.id, "t000001", done.attempt) + "out/"
    assert js.get(out + "where")[0] == b"inside t000001\n", "ran in the image (no python there), output bound back"
    assert js.get(out + "pwd")[0].decode().strip().startswith(str(tmp_path / "cache")), "the working folder is kept"
    assert "container:podman" in shown.stdout + shown.stderr


def test_an_image_needs_a_runtime_and_says_so(local_url: str, tmp_path: Path) -> None:
    client = qubits.connect(local_url)
    job = client.submit_commands(["true"], image="docker://alpine:3")
    agent = AgentProcess(local_url, cache=tmp_path / "cache", name="bare", env={"QUBITS_CONTAINER_RUNTIMES": "none"})
    try:
        why = ""
        for _ in range(40):
            why = run_cli("why", job.id, "t000001", "--jobspace", local_url).stdout
            if "container" in why:
                break
    finally:
        agent.stop()
    assert "container" in why, why


def test_doctor_names_this_machines_runtimes_and_limits(tmp_path: Path, podman_env: dict[str, str]) -> None:
    got = run_cli("doctor", str(tmp_path / "js"), "--rounds", "1", "--racers", "2", env={**podman_env, "COLUMNS": "300"})
    assert got.returncode == 0, got.stderr
    assert "container runtimes podman" in got.stderr and "limits by " in got.stderr, got.stderr


def test_a_batch_with_an_image_runs_its_jobs_inside_it(local_url: str, tmp_path: Path, podman_env: dict[str, str]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "in.txt").write_text("input\n")
    b = Batch("lab", "boxed", base=project)
    b.initialize(image=IMAGE)
    b.job("j", command='test ! -e /usr/bin/python3 && cat in.txt > "$QUBITS_OUTPUT/seen"', files=["in.txt"])
    client = qubits.connect(local_url)
    job = submit(client, b)
    # The image is local: "pulling" it is a no-op here (the template's QUBITS_IMAGE is then the reference).
    env = {**podman_env, "QUBITS_IMAGE_PULL": "podman image exists {image}"}
    agent = AgentProcess(local_url, cache=tmp_path / "cache", name="boxed", env=env)
    try:
        status = job.wait(timeout=120)
        assert status.ok, status.summary() + agent.log()
    finally:
        agent.stop()
    js = jobspaces.SyncJobspace(client.aio)
    assert js.get("archive/lab/boxed/j/out/seen")[0] == b"input\n"
