"""distribute's batch files (``distribute-jobs.yaml``), read as qubits batches.

distribute (Fluid-Dynamics-Group/distribute, 0.14) describes a batch with ``meta`` (``batch_name``,
``namespace``, ``capabilities``, ``matrix``) and exactly one of ``python`` or ``apptainer``, each with an
``initialize`` step and ``jobs``; an optional ``slurm`` section holds SLURM defaults. Its jobs see this
layout, which the commands below rebuild in each qubits job's folder:

- ``./input/``: the init step's ``required_files``, then the job's own (under their aliases);
- ``./distribute_save/``: what the job keeps (here the task's output folder, so it is archived under
  ``archive/{namespace}/{batch_name}/{job}/`` and pulled back with ``qubits pull``);
- python: the job's ``file`` runs as ``python3 run.py <cpus>`` in a folder that also holds what the
  build script (``initialize.build_file``, run once per node) left behind;
- apptainer: ``apptainer run --nv --app distribute --bind …/distribute_save:/distribute_save:rw,
  …/input:/input:rw[,_bind_path_N:MOUNT:rw] apptainer.sif <cpus>``, the image shipped once per node.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._model import SLURM_KEYS, Batch, BatchFileError, BatchJob, FileRef, Initialize, _check_files

if TYPE_CHECKING:
    from ._load import _Map, _Reader

log = logging.getLogger("qubits.batch")

TOP_KEYS = ("meta", "python", "apptainer", "slurm")
META_KEYS = ("batch_name", "namespace", "matrix", "capabilities")
PY_INIT_KEYS = ("build_file", "required_files")
SIF_INIT_KEYS = ("sif", "required_files", "required_mounts")
PY_JOB_KEYS = ("name", "file", "required_files", "slurm")
SIF_JOB_KEYS = ("name", "required_files", "slurm")
DIST_SLURM_KEYS = (*SLURM_KEYS, "output")
"""distribute's SLURM fields; ``output`` (the log file name) has no qubits twin and is dropped."""

_CPUS = '"$(nproc)"'
"""distribute passes the node's CPU count as the first argument; affinity (qubits' fallback limits) counts."""

_INPUTS = (
    'mkdir -p input distribute_save && '
    'if [ -d "$QUBITS_INIT/input" ]; then for f in "$QUBITS_INIT"/input/*; do '
    'if [ -e "$f" ] && [ ! -e "input/${f##*/}" ]; then cp -R "$f" input/; fi; done; fi'
)
"""Each job's input folder: the init step's files, then the job's own (distribute refills it per job)."""

_SAVE = 'rm -rf distribute_save && ln -s "$QUBITS_OUTPUT" distribute_save'
"""distribute_save/ is the task's output folder: what is written there is archived with the job."""


def is_distribute(raw: Any) -> bool:
    """Whether a batch file's top level is distribute's (a ``python:`` or ``apptainer:`` section)."""
    return isinstance(raw, dict) and ("python" in raw or "apptainer" in raw)


def read_distribute(reader: _Reader, top: _Map) -> Batch:
    """A distribute batch file as a qubits ``Batch`` (checked the same way)."""
    top = reader.mapping(top, "the batch file (distribute's format)", TOP_KEYS, 1)
    if ("python" in top) == ("apptainer" in top):
        raise BatchFileError(f"{reader.source}: a distribute batch has exactly one of python: or apptainer:")
    if "meta" not in top:
        raise BatchFileError(f"{reader.source}: meta: is missing (namespace and batch_name)")
    meta = reader.mapping(top["meta"], "meta", META_KEYS, top.lines["meta"])
    if meta.get("matrix"):
        log.warning(
            "%s: meta.matrix %r is a Matrix user; qubits notifies rooms (meta.notify.matrix in its own format), "
            "so no message is sent", reader.source, meta["matrix"],
        )
    batch = Batch(
        namespace=meta.get("namespace"),  # type: ignore[arg-type]  # checked in validate()
        name=meta.get("batch_name"),  # type: ignore[arg-type]
        capabilities=reader.str_list(meta.get("capabilities"), "meta.capabilities", meta.lines.get("capabilities", meta.line)),
        base=reader.base,
        source=reader.source,
    )
    if "slurm" in top:
        batch.slurm = _slurm(reader, top["slurm"], "slurm", top.lines["slurm"])
    kind = "python" if "python" in top else "apptainer"
    section = reader.mapping(top[kind], kind, ("initialize", "jobs"), top.lines[kind])
    if "initialize" not in section:
        raise BatchFileError(f"{reader.at(section.line)}: {kind}.initialize is missing")
    jobs = section.get("jobs")
    if not isinstance(jobs, list):
        raise BatchFileError(f"{reader.at(section.lines.get('jobs', section.line))}: {kind}.jobs must be a list of jobs (each with name:)")
    if kind == "python":
        init, mounts = _python_init(reader, section["initialize"], section.lines["initialize"]), list[str]()
    else:
        init, mounts = _apptainer_init(reader, section["initialize"], section.lines["initialize"])
    batch.jobs = [_job(reader, kind, j, section.lines["jobs"], mounts) for j in jobs]
    batch.validate()
    # An apptainer batch's init step only ships files (the image): qubits' own format asks for a step to
    # run, so the init is checked here and set after.
    _check_files(([init.script] if init.script else []) + init.files, f"{reader.at(init.line)}: {kind}.initialize")
    batch.init = init
    return batch


def _files(reader: _Reader, value: Any, what: str, line: int, folder: str) -> list[FileRef]:
    """``required_files`` placed under ``folder/`` by their alias (or file name)."""
    return [FileRef(f.path, f"{folder}/{f.alias}", f.line) for f in reader.files(value, what, line)]


def _python_init(reader: _Reader, value: Any, line: int) -> Initialize:
    m = reader.mapping(value, "python.initialize", PY_INIT_KEYS, line)
    if m.get("build_file") is None:
        raise BatchFileError(f"{reader.at(m.line)}: python.initialize needs build_file: {{path: build.py}}")
    build = reader.file(m["build_file"], "python.initialize.build_file", m.lines["build_file"])
    build = FileRef(build.path, "build.py" if build.alias.endswith(".py") or "." not in build.alias else build.alias, build.line)
    files = _files(reader, m.get("required_files"), "python.initialize.required_files", m.lines.get("required_files", line), "input")
    return Initialize(build, None, files, None, m.line)


def _apptainer_init(reader: _Reader, value: Any, line: int) -> tuple[Initialize, list[str]]:
    m = reader.mapping(value, "apptainer.initialize", SIF_INIT_KEYS, line)
    if m.get("sif") is None:
        raise BatchFileError(f"{reader.at(m.line)}: apptainer.initialize needs sif: {{path: image.sif}}")
    sif = reader.file(m["sif"], "apptainer.initialize.sif", m.lines["sif"])
    files = _files(reader, m.get("required_files"), "apptainer.initialize.required_files", m.lines.get("required_files", line), "input")
    mounts = reader.str_list(m.get("required_mounts"), "apptainer.initialize.required_mounts", m.lines.get("required_mounts", line))
    for mount in mounts:
        if not mount.startswith("/"):
            raise BatchFileError(f"{reader.at(m.lines['required_mounts'])}: required_mounts are absolute paths in the container, not {mount!r}")
    # The image travels as an init file (fetched once per node, by digest); the build step only says so.
    return Initialize(None, None, [FileRef(sif.path, "apptainer.sif", sif.line), *files], None, m.line), mounts


def _slurm(reader: _Reader, value: Any, what: str, line: int) -> dict[str, Any]:
    m = reader.mapping(value, what, DIST_SLURM_KEYS, line)
    return {k: v for k, v in m.items() if k != "output" and v is not None}


def _job(reader: _Reader, kind: str, value: Any, line: int, mounts: list[str]) -> BatchJob:
    m = reader.mapping(value, f"a {kind} job", PY_JOB_KEYS if kind == "python" else SIF_JOB_KEYS, line)
    name = m.get("name")
    name = name if isinstance(name, str) else ("" if name is None else str(name))
    files = _files(reader, m.get("required_files"), "required_files", m.lines.get("required_files", m.line), "input")
    slurm = _slurm(reader, m["slurm"], "a job's slurm settings", m.lines["slurm"]) if m.get("slurm") else {}
    if kind == "python":
        if m.get("file") is None:
            raise BatchFileError(f"{reader.at(m.line)}: python job {name!r} needs file: {{path: run.py}}")
        run = reader.file(m["file"], "file", m.lines["file"])
        files.append(FileRef(run.path, "run.py", run.line))
        link_build = (
            'if [ -d "$QUBITS_INIT" ]; then for f in "$QUBITS_INIT"/* "$QUBITS_INIT"/.[!.]*; do n=${f##*/}; '
            'if [ -e "$f" ] && [ "$n" != input ] && [ "$n" != build.py ] && [ ! -e "$n" ]; then ln -s "$f" "$n"; fi; done; fi'
        )
        command = f"{_INPUTS} && {_SAVE} && {link_build} && exec python3 run.py {_CPUS}"
    else:
        binds = ['"$PWD/distribute_save:/distribute_save:rw"', '"$PWD/input:/input:rw"']
        make = []
        for i, mount in enumerate(mounts):
            make.append(f"mkdir -p _bind_path_{i}")
            binds.append(f'"$PWD/_bind_path_{i}:"{shlex.quote(mount)}":rw"')
        runtime = 'rt=$(command -v apptainer || command -v singularity) || { echo "this node has no apptainer or singularity" >&2; exit 127; }'
        command = " && ".join([
            _INPUTS, _SAVE, *make, runtime,
            f'exec "$rt" run --nv --app distribute --bind {",".join(binds)} "$QUBITS_INIT/apptainer.sif" {_CPUS}',
        ])
    return BatchJob(name=name, command=command, files=files, slurm=slurm, line=m.line)


def source_of(path: str) -> Path | None:
    """``path`` when it names a batch file on disk (``qubits pull batch.yaml``), else None."""
    p = Path(path)
    return p if p.suffix in (".yaml", ".yml") and p.is_file() else None
