"""Reading a batch file (YAML): every key checked, every error with the file and line.

The loader keeps the line of each mapping and key, refuses keys it does not know (a typo must not be
silently ignored), refuses a key given twice, and resolves relative paths against the file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ._distribute import is_distribute, read_distribute
from ._model import (
    DEFAULT_EVENTS,
    SLURM_KEYS,
    Batch,
    BatchFileError,
    BatchJob,
    FileRef,
    Initialize,
    MatrixRoom,
    Notify,
)

TOP_KEYS = ("meta", "initialize", "jobs", "slurm")
META_KEYS = ("namespace", "batch", "capabilities", "max_attempts", "priority", "notify")
NOTIFY_KEYS = ("webhook", "matrix", "on")
MATRIX_KEYS = ("room", "homeserver")
INIT_KEYS = ("script", "image", "files", "timeout")
JOB_KEYS = (
    "name", "command", "script", "files", "capabilities", "resources", "max_attempts", "timeout",
    "priority", "env", "after", "slurm",
)
FILE_KEYS = ("path", "alias")


class _Map(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int = 0
    lines: dict[str, int]


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:bool":
            key = key_node.value  # YAML 1.1 reads a bare `on:` (yes, off …) as a boolean: a key means its text
        else:
            key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise BatchFileError(f"{loader.name}:{line}: key {key!r} must be a string")
        if key in out:
            raise BatchFileError(f"{loader.name}:{line}: key {key!r} appears twice (first at line {out.lines[key]})")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = line
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_batch(path: str | Path) -> Batch:
    """Load and check a batch file; BatchFileError (a UsageError) with file and line if it is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BatchFileError(f"no batch file {str(path)!r}; write one with `qubits batch template -o {path.name}`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchFileError(f"cannot read batch file {str(path)!r}: {exc}") from None
    return parse_batch(text, path.resolve().parent, str(path))


def parse_batch(text: str, base: Path, source: str = "<batch>") -> Batch:
    """Parse batch YAML ``text``; relative paths resolve against ``base``."""
    loader = _Loader(text)
    loader.name = source
    try:
        raw = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise BatchFileError(f"{source}{line}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise BatchFileError(f"{source}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return _Reader(source, base).batch(raw)


class _Reader:
    def __init__(self, source: str, base: Path) -> None:
        self.source = source
        self.base = base

    def at(self, line: int) -> str:
        return f"{self.source}:{line}" if line else self.source

    def mapping(self, value: Any, what: str, keys: tuple[str, ...], line: int) -> _Map:
        if not isinstance(value, _Map):
            raise BatchFileError(f"{self.at(line)}: {what} must be a mapping (key: value lines)")
        for key in value:
            if key not in keys:
                raise BatchFileError(
                    f"{self.at(value.lines[key])}: unknown key {key!r} in {what}; known keys: {', '.join(keys)}"
                )
        return value

    def str_list(self, value: Any, what: str, line: int) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BatchFileError(f"{self.at(line)}: {what} must be a list of strings")
        return list(value)

    def number(self, value: Any, what: str, line: int) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BatchFileError(f"{self.at(line)}: {what} must be a number, not {value!r}")
        return float(value)

    def file(self, value: Any, what: str, line: int) -> FileRef:
        if isinstance(value, str):
            path = self.base / value
            return FileRef(path, Path(value).name or path.name, line)
        entry = self.mapping(value, what, FILE_KEYS, line)
        if not isinstance(entry.get("path"), str):
            raise BatchFileError(f"{self.at(entry.line)}: {what} needs path: (a file or folder, relative to the batch file)")
        path = self.base / entry["path"]
        alias = entry.get("alias", Path(entry["path"]).name)
        return FileRef(path, alias if alias is not None else path.name, entry.line)

    def files(self, value: Any, what: str, line: int) -> list[FileRef]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise BatchFileError(f"{self.at(line)}: {what} must be a list of paths or {{path, alias}} entries")
        return [self.file(v, what, getattr(v, "line", 0) or line) for v in value]

    def batch(self, raw: Any) -> Batch:
        if raw is None:
            raise BatchFileError(f"{self.source}: the batch file is empty; see `qubits batch template`")
        if is_distribute(raw):
            return read_distribute(self, raw)
        top = self.mapping(raw, "the batch file", TOP_KEYS, 1)
        if "meta" not in top:
            raise BatchFileError(f"{self.source}: meta: is missing (namespace and batch name)")
        meta = self.mapping(top["meta"], "meta", META_KEYS, top.lines["meta"])
        notify = self.notify(meta.get("notify"), meta.lines.get("notify", meta.line))
        batch = Batch(
            namespace=meta.get("namespace"),  # type: ignore[arg-type]  # checked in validate()
            name=meta.get("batch"),  # type: ignore[arg-type]
            capabilities=self.str_list(meta.get("capabilities"), "meta.capabilities", meta.lines.get("capabilities", meta.line)),
            notify=notify,
            max_attempts=meta.get("max_attempts"),
            priority=int(self.number(meta.get("priority"), "meta.priority", meta.line) or 0),
            base=self.base,
            source=self.source,
        )
        if "initialize" in top:
            batch.init = self.init(top["initialize"], top.lines["initialize"])
        if "slurm" in top:
            batch.slurm = dict(self.mapping(top["slurm"], "slurm", SLURM_KEYS, top.lines["slurm"]))
        jobs = top.get("jobs")
        if not isinstance(jobs, list):
            line = top.lines.get("jobs", 1)
            raise BatchFileError(f"{self.at(line)}: jobs: must be a list of jobs (each with name: and command: or script:)")
        batch.jobs = [self.job(j, top.lines["jobs"]) for j in jobs]
        return batch.validate()

    def notify(self, value: Any, line: int) -> Notify:
        if value is None:
            return Notify()
        n = self.mapping(value, "meta.notify", NOTIFY_KEYS, line)
        rooms = []
        for entry in n.get("matrix") or []:
            if isinstance(entry, str):
                rooms.append(MatrixRoom(entry))
            else:
                m = self.mapping(entry, "a meta.notify.matrix entry", MATRIX_KEYS, n.lines.get("matrix", line))
                rooms.append(MatrixRoom(m.get("room"), m.get("homeserver")))  # type: ignore[arg-type]
        events = self.str_list(n.get("on"), "meta.notify.on", n.lines.get("on", line)) if "on" in n else list(DEFAULT_EVENTS)
        return Notify(self.str_list(n.get("webhook"), "meta.notify.webhook", n.lines.get("webhook", line)), rooms, events)

    def init(self, value: Any, line: int) -> Initialize:
        m = self.mapping(value, "initialize", INIT_KEYS, line)
        script = self.file(m["script"], "initialize.script", m.lines["script"]) if m.get("script") is not None else None
        image = m.get("image")
        if image is not None and (not isinstance(image, str) or not image.strip()):
            raise BatchFileError(f"{self.at(m.lines['image'])}: initialize.image must be an image reference like docker://python:3.11")
        files = self.files(m.get("files"), "initialize.files", m.lines.get("files", line))
        return Initialize(script, image, files, self.number(m.get("timeout"), "initialize.timeout", line), m.line)

    def job(self, value: Any, line: int) -> BatchJob:
        m = self.mapping(value, "a job", JOB_KEYS, line)
        at = m.line
        resources = m.get("resources") or {}
        if not isinstance(resources, dict):
            raise BatchFileError(f"{self.at(at)}: resources must be a mapping like {{cpus: 4, memory: 8}}")
        env = m.get("env") or {}
        if not isinstance(env, dict):
            raise BatchFileError(f"{self.at(at)}: env must be a mapping NAME: value")
        slurm = self.mapping(m["slurm"], "a job's slurm settings", SLURM_KEYS, m.lines["slurm"]) if m.get("slurm") else {}
        for key, v in env.items():
            if isinstance(v, dict | list) or v is None:
                raise BatchFileError(f"{self.at(env.lines.get(key, at) if isinstance(env, _Map) else at)}: env {key}: must be a plain value")
        name = m.get("name")
        return BatchJob(
            name=name if isinstance(name, str) else ("" if name is None else str(name)),
            command=m.get("command"),
            script=self.file(m["script"], "script", m.lines["script"]) if m.get("script") is not None else None,
            files=self.files(m.get("files"), "files", m.lines.get("files", at)),
            capabilities=self.str_list(m.get("capabilities"), "capabilities", m.lines.get("capabilities", at)),
            resources=dict(resources),
            max_attempts=m.get("max_attempts"),
            timeout=self.number(m.get("timeout"), "timeout", at),
            priority=int(self.number(m.get("priority"), "priority", at) or 0),
            env={str(k): str(v) for k, v in env.items()},
            after=self.str_list(m.get("after"), "after", m.lines.get("after", at)),
            slurm=dict(slurm),
            line=at,
        )
