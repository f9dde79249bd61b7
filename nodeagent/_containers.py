"""Running a task inside a container image: apptainer or singularity (HPC, no daemon), podman or docker.

The node's working runtimes are found once (each answers ``version``); the agent offers them as the
capabilities ``container`` and ``container:{runtime}``. A task with an image runs as the runtime's
command around its own, with its folders (code, scratch with its output folder, the batch's init
folder) bound at the same paths inside, its working directory kept, and its QUBITS_* and own variables
passed by name (values never on a command line). ``QUBITS_CONTAINER_RUNTIMES`` (a comma list, or
``none``) names the runtimes instead of probing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

RUNTIMES = ("apptainer", "singularity", "podman", "docker")
"""In order of preference: the HPC runtimes need no daemon and run as the user."""

_PROBE = {
    "apptainer": ["version"],
    "singularity": ["version"],
    "podman": ["version", "--format", "{{.Client.Version}}"],
    "docker": ["version", "--format", "{{.Server.Version}}"],  # the daemon must answer, not only the client
}


def detect() -> list[str]:
    """The container runtimes that work on this node, preferred first."""
    named = os.environ.get("QUBITS_CONTAINER_RUNTIMES")
    if named is not None:
        return [r for r in (n.strip() for n in named.split(",")) if r in RUNTIMES]
    found = []
    for name in RUNTIMES:
        exe = shutil.which(name)
        if exe is None:
            continue
        try:
            ok = subprocess.run([exe, *_PROBE[name]], capture_output=True, timeout=15).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            found.append(name)
    return found


def capabilities(runtimes: list[str]) -> list[str]:
    return ["container", *(f"container:{r}" for r in runtimes)] if runtimes else []


def is_sif(image: str) -> bool:
    return image.endswith(".sif") or image.startswith(("/", "./", "../")) and Path(image).is_file()


def choose(runtimes: list[str], image: str) -> str:
    """The runtime for ``image`` (a .sif file needs apptainer or singularity). RuntimeError: none."""
    usable = [r for r in runtimes if r in ("apptainer", "singularity") or not is_sif(image)]
    if not usable:
        kind = "apptainer or singularity (the image is a .sif file)" if is_sif(image) else "apptainer, singularity, podman or docker"
        raise RuntimeError(f"this task runs in the image {image!r}, but this node has no working {kind}")
    return usable[0]


def wrap(
    runtime: str, image: str, argv: list[str], *, binds: list[Path], workdir: Path, env_names: list[str],
    gpus: list[str] | None = None, name: str | None = None, memory: int | None = None, cpus: float | None = None,
) -> list[str]:
    """The command line that runs ``argv`` inside ``image`` with ``runtime``."""
    exe = shutil.which(runtime) or runtime
    paths = sorted({str(p) for p in binds if p.exists()})
    if runtime in ("apptainer", "singularity"):
        ref = image if is_sif(image) or "://" in image else f"docker://{image}"
        out = [exe, "exec", "--pwd", str(workdir)]
        if paths:
            out += ["--bind", ",".join(paths)]
        if gpus:
            out.append("--nv")
        return [*out, ref, *argv]
    ref = image.split("://", 1)[1] if image.startswith("docker://") else image
    out = [exe, "run", "--rm", "--network=host", "--user", f"{os.getuid()}:{os.getgid()}", "--workdir", str(workdir)]
    if name:
        out += ["--name", name]
    for p in paths:
        out += ["--volume", f"{p}:{p}"]
    for var in sorted(set(env_names)):
        out += ["--env", var]  # by name: the value comes from the runtime's own environment
    if gpus:
        out += ["--gpus", f"device={','.join(gpus)}"] if runtime == "docker" else [a for g in gpus for a in ("--device", f"nvidia.com/gpu={g}")]
    if memory:
        out += ["--memory", f"{memory}b"]
    if cpus:
        out += ["--cpus", f"{cpus:g}"]
    return [*out, ref, *argv]


def container_name(key: str, attempt: int) -> str:
    """A name for the task's container, so what outlives its client can be removed."""
    return "qubits-" + "".join(c if c.isalnum() or c in "_.-" else "-" for c in f"{key}-{attempt}")[:200]


def remove(runtime: str, name: str) -> None:
    """Remove a podman/docker container left behind (its client was killed); quietly."""
    if runtime in ("podman", "docker"):
        exe = shutil.which(runtime) or runtime
        try:
            subprocess.run([exe, "rm", "-f", name], capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            pass
