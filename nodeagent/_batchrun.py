"""The runner of a batch job, in the task's own process: ``python -m nodeagent._batchrun COMMAND``.

It runs under the agent's lease supervision (renewed, paused with SIGSTOP, stopped on cancel like any
task) and:

1. fetches the files the job and the init step need (``data/{sha256}``) into the node's cache
   (``$QUBITS_CACHE/batch/files/``), once per node, verifying each digest;
2. runs the batch's init step once per node per batch: under an exclusive lock (so tasks in other slots
   or other agents sharing the cache wait instead of building twice), in
   ``$QUBITS_CACHE/batch/init/{namespace}/{batch}/{digest}/work``; it pulls the container image if there
   is one (apptainer/singularity, else docker/podman; or ``$QUBITS_IMAGE_PULL``, a command template
   with ``{image}`` and ``{dest}``), then runs the build script. Its output is kept in ``init.log``
   next to ``work`` and uploaded to ``archive/{namespace}/{batch}/_init/{node}.log``; success leaves an
   ``ok`` marker, so later tasks of the batch skip it. A failed init fails this attempt (retried per
   policy) and is tried again by the next task;
3. copies the job's files into ``$QUBITS_SCRATCH/work`` under their aliases, and there ``exec``s
   ``/bin/sh -c COMMAND`` (same process: its exit status is the task's) with ``QUBITS_INIT`` (the init
   folder), ``QUBITS_IMAGE``, ``QUBITS_BATCH`` (namespace/batch) and ``QUBITS_BATCH_JOB`` set.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jobspaces
from qubits.protocol import layout, leave

from . import _containers as containers

INIT_FAILED = 1


def fetch(js: jobspaces.SyncJobspace, entry: dict[str, Any], store: Path) -> Path:
    """The cached copy of one input file (downloaded and verified if missing)."""
    digest = str(entry["sha256"])
    path = store / digest
    if path.is_file() and path.stat().st_size == int(entry["size"]):
        return path
    data, _ = js.get(layout.data_chunk(digest))
    if hashlib.sha256(data).hexdigest() != digest:
        raise RuntimeError(f"input file {entry['alias']!r} does not match its digest {digest[:12]}…; refusing it")
    store.mkdir(parents=True, exist_ok=True)
    tmp = store / f".{digest}.{os.getpid()}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def materialise(files: list[dict[str, Any]], paths: dict[str, Path], folder: Path) -> None:
    """Copy each file to ``folder/alias`` (copies: a job that edits its input cannot spoil the cache)."""
    root = folder.resolve()
    for entry in files:
        target = (root / str(entry["alias"])).resolve()
        if root not in target.parents:
            raise RuntimeError(f"file alias {entry['alias']!r} would land outside the job's folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths[str(entry["sha256"])], target)
        os.chmod(target, int(entry.get("mode", 0o644)))


def _pull_command(image: str, dest: Path) -> tuple[str, str]:
    """(shell command that pulls ``image``, the value of QUBITS_IMAGE afterwards)."""
    template = os.environ.get("QUBITS_IMAGE_PULL")
    sif = dest / "image.sif"
    if template:
        return template.format(image=shlex.quote(image), dest=shlex.quote(str(dest))), str(sif if "{dest}" in template else image)
    for tool in ("apptainer", "singularity"):
        if shutil.which(tool):
            ref = image if "://" in image else f"docker://{image}"
            return f"{tool} pull --force {shlex.quote(str(sif))} {shlex.quote(ref)}", str(sif)
    for tool in ("docker", "podman"):
        if shutil.which(tool):
            ref = image.split("://", 1)[1] if image.startswith("docker://") else image
            return f"{tool} pull {shlex.quote(ref)}", ref
    raise RuntimeError(
        "the batch's init step pulls a container image, but this node has no apptainer, singularity, docker "
        "or podman: install one, or set QUBITS_IMAGE_PULL"
    )


def run_init(js: jobspaces.SyncJobspace, cfg: dict[str, Any], cache: Path, node: str, env: dict[str, str]) -> tuple[Path, str | None]:
    """Run the init step once on this node (waiting for another task running it); (work folder, image)."""
    init = cfg["init"]
    home = cache / "batch" / "init" / cfg["namespace"] / cfg["batch"] / init["digest"]
    work, log_path, ok = home / "work", home / "init.log", home / "ok"
    home.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f"{init['digest']}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ok.is_file():
            return work, json.loads(ok.read_text()).get("image")
        store = cache / "batch" / "files"
        paths = {str(e["sha256"]): fetch(js, e, store) for e in init["files"]}
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        materialise(init["files"], paths, work)
        steps: list[str] = []
        image: str | None = None
        if init.get("image"):
            pull, image = _pull_command(str(init["image"]), home)
            steps.append(pull)
        if init.get("command"):
            steps.append(str(init["command"]))
        run_env = {**env, "QUBITS_INIT": str(work), **({"QUBITS_IMAGE": image} if image else {})}
        started = time.time()
        code = 0
        with open(log_path, "wb") as log:
            for step in steps:
                log.write(f"$ {step}\n".encode())
                log.flush()
                try:
                    code = subprocess.run(["/bin/sh", "-c", step], cwd=work, env=run_env, stdout=log, stderr=subprocess.STDOUT,
                                          timeout=init.get("timeout")).returncode
                except subprocess.TimeoutExpired:
                    log.write(f"\nqubits: init step timed out after {init['timeout']:g}s\n".encode())
                    code = 124
                if code != 0:
                    break
            log.write(f"\nqubits: init on {node} exited {code} after {time.time() - started:.1f}s\n".encode())
        archived = layout.archive_init_log(cfg["namespace"], cfg["batch"], node)
        try:
            js.put(archived, log_path.read_bytes())
        except (jobspaces.JobspaceError, jobspaces.InvalidKey) as exc:
            print(f"qubits: could not upload the init log: {exc}", file=sys.stderr)
        if code != 0:
            tail = log_path.read_text(errors="replace").splitlines()[-20:]
            print("\n".join(tail), file=sys.stderr)
            raise InitFailed(f"the batch's init step failed on {node} (exit {code}); its output: {archived}")
        ok.write_text(json.dumps({"node": node, "finished": time.time(), "image": image}))
        return work, image


class InitFailed(Exception):
    """The init step failed on this node."""


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m nodeagent._batchrun COMMAND", file=sys.stderr)
        return 2
    command = argv[0]
    scratch = Path(os.environ["QUBITS_SCRATCH"])
    cache = Path(os.environ["QUBITS_CACHE"])
    node = os.environ.get("QUBITS_NODE", "node")
    spec = json.loads((scratch / "spec.json").read_text())
    task, job = spec["task"], spec["job"]
    cfg = job["config"]["batch"]
    env = dict(os.environ)
    js = jobspaces.SyncJobspace(jobspaces.open_jobspace(os.environ["QUBITS_JOBSPACE"]))
    try:
        if cfg.get("init"):
            init_dir, image = run_init(js, cfg, cache, node, env)
            env["QUBITS_INIT"] = str(init_dir)
            if image:
                env["QUBITS_IMAGE"] = image
        files = task["payload"].get("files") or []
        paths = {str(e["sha256"]): fetch(js, e, cache / "batch" / "files") for e in files}
        work = scratch / "work"
        work.mkdir(parents=True, exist_ok=True)
        materialise(files, paths, work)
    except (InitFailed, RuntimeError, jobspaces.JobspaceError, OSError) as exc:
        (scratch / "error.json").write_text(json.dumps({"error": str(exc)}))
        print(f"qubits: {exc}", file=sys.stderr)
        return INIT_FAILED
    finally:
        js.close()
    env.update(QUBITS_BATCH=f"{cfg['namespace']}/{cfg['batch']}", QUBITS_BATCH_JOB=str(task["payload"].get("batch_job") or task["id"]))
    os.chdir(work)
    argv = ["/bin/sh", "-c", command]
    image = env.get("QUBITS_IMAGE")
    if image:  # the batch's image, pulled by the init step: the job runs inside it
        try:
            argv = in_image(image, argv, env, scratch, work, f"{task['id']}")
        except RuntimeError as exc:
            (scratch / "error.json").write_text(json.dumps({"error": str(exc)}))
            print(f"qubits: {exc}", file=sys.stderr)
            return INIT_FAILED
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)
    return 127  # not reached


def in_image(image: str, argv: list[str], env: dict[str, str], scratch: Path, work: Path, task: str) -> list[str]:
    """``argv`` inside the batch's image, with the runtime that pulled it (a .sif: apptainer or
    singularity; a reference: podman or docker), the scratch and init folders bound."""
    sif = containers.is_sif(image)
    runtimes = [r for r in containers.detect() if (r in ("apptainer", "singularity")) == sif]
    runtime = containers.choose(runtimes, image)
    gpus = [g for g in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if g] or None
    binds = [scratch, Path(env["QUBITS_INIT"])] if env.get("QUBITS_INIT") else [scratch]
    names = [k for k in env if k.startswith("QUBITS_") or k.endswith("_VISIBLE_DEVICES")]
    name = containers.container_name(f"{env.get('QUBITS_JOB', 'job')}/{task}", int(env.get("QUBITS_ATTEMPT", "1")))
    return containers.wrap(runtime, image, argv, binds=binds, workdir=work, env_names=names, gpus=gpus, name=name)


if __name__ == "__main__":
    leave(main(sys.argv[1:]))  # see qubits._exit
