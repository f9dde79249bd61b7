"""The protocol's records: frozen dataclasses with to_json/from_json, states as str Enums.

Every record carries ``v`` (the format version). A reader refuses a newer version with a clear error
rather than guessing at fields it does not know.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field, fields
from enum import Enum, StrEnum
from typing import Any, TypeVar

from . import _layout as layout
from ._defaults import FORMAT_VERSION, MAX_ATTEMPTS, NODE_LOST_AFTER
from .errors import CorruptObject, NewerFormat

R = TypeVar("R", bound="Record")


class LeaseState(StrEnum):
    """The state of a lease object."""

    HELD = "held"
    """An agent runs the task and renews the lease."""
    RELEASED = "released"
    """Given up (a failed attempt with attempts left, or a drain); claimable after not_before."""
    PARKED = "parked"
    """Waiting for dependencies found at run time; woken by whoever commits the last of them."""
    COMMITTED = "committed"
    """The outcome is decided; the done record follows (anyone may write it from this lease)."""


class Outcome(StrEnum):
    """How a task ended: the value of a done record."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UPSTREAM_FAILED = "upstream_failed"


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
"""Each record class's field names (dataclasses.fields is slow on a hot path)."""


class Record:
    """JSON (de)serialisation shared by every record."""

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data, a deep copy (the caller may change it)."""
        return self._plain(asdict(self))  # type: ignore[call-overload]

    def to_json(self) -> bytes:
        """The stored form: ``to_dict`` without its deep copy (a lease is written several times per task:
        bench/sim profiles showed the copy at 7% of an agent's CPU)."""
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            names = _FIELD_NAMES[type(self)] = tuple(f.name for f in fields(self))  # type: ignore[arg-type]
        return json.dumps(self._plain({n: getattr(self, n) for n in names}), separators=(",", ":"), sort_keys=True).encode()

    @staticmethod
    def _plain(values: dict[str, Any]) -> dict[str, Any]:
        """Field values as stored: enums as their values, and the format version."""
        return {**{k: (v.value if isinstance(v, Enum) else v) for k, v in values.items()}, "v": FORMAT_VERSION}

    @classmethod
    def from_dict(cls: type[R], raw: dict[str, Any], where: str = "") -> R:
        if not isinstance(raw, dict):
            raise CorruptObject(f"{where}: expected a JSON object")
        version = raw.get("v", 1)
        if not isinstance(version, int):
            raise CorruptObject(f"{where}: format version {version!r} is not a number")
        if version > FORMAT_VERSION:
            raise NewerFormat(
                f"{where}: written by a newer qubits (format {version}, this one reads {FORMAT_VERSION}); "
                "upgrade qubits on this machine"
            )
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        try:
            return cls(**{k: v for k, v in raw.items() if k in names})
        except TypeError as exc:
            raise CorruptObject(f"{where}: {exc}") from None

    @classmethod
    def from_json(cls: type[R], data: bytes, where: str = "") -> R:
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptObject(f"{where}: not valid JSON ({exc}); it may be truncated") from None
        return cls.from_dict(raw, where)


@dataclass(frozen=True)
class TaskSpec(Record):
    """What to run, immutable once submitted."""

    id: str
    kind: str = "shell"
    """shell (a command line), argv (a list), python (a callable by reference or value), target (a Qfile rule)."""
    command: str | list[str] | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    deps: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int = MAX_ATTEMPTS
    timeout: float | None = None
    backoff: float | None = None
    not_before: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    name: str = ""
    image: str | None = None
    """A container image the command runs in (docker://…, a registry reference, or a .sif file); such a
    task also requires the capability ``container``."""


@dataclass(frozen=True)
class JobSpec(Record):
    """A job: its tasks' chunks, the code bundle they run in, and who submitted it."""

    id: str
    kind: str = "commands"
    name: str = ""
    created: float = 0.0
    submitter: str = ""
    chunks: int = 0
    task_count: int = 0
    code: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    notify: list[dict[str, Any]] = field(default_factory=list)
    signature: str | None = None


@dataclass(frozen=True)
class Lease(Record):
    """The lease of one task. Each write has a new ``seq`` and the holder's ``token``, so no two bodies
    are equal (S3 ETags are content hashes)."""

    job: str
    task: str
    holder: str
    token: str
    attempt: int
    ttl: float
    state: LeaseState = LeaseState.HELD
    seq: int = 0
    chunk: str = "0"
    failures: int = 0
    """Failed or lost attempts so far; the task ends failed when this reaches max_attempts."""
    delay: float = 0.0
    """Seconds a released lease waits before it may be claimed, timed by each observer's own
    monotonic clock from when it first sees this version (no clock sync needed)."""
    waiting: list[str] = field(default_factory=list)
    """Task ids a parked lease waits for."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Earlier attempts: holder, outcome, error, started, finished (carried forward for the timeline)."""
    outcome: str | None = None
    error: str | None = None
    exit_code: int | None = None
    has_result: bool = False
    value: str | None = None
    """A small result itself (base64 of its pickle; see INLINE_RESULT_MAX), carried to the done record."""
    started: float = 0.0
    finished: float = 0.0
    wall: float = 0.0
    """The writer's wall clock at the write: for display only, never for expiry."""

    def __post_init__(self) -> None:
        if not isinstance(self.state, LeaseState):
            object.__setattr__(self, "state", LeaseState(self.state))


@dataclass(frozen=True)
class Done(Record):
    """The one final record of a task."""

    job: str
    task: str
    outcome: str
    attempt: int
    holder: str = ""
    error: str | None = None
    exit_code: int | None = None
    started: float = 0.0
    finished: float = 0.0
    has_result: bool = False
    value: str | None = None
    """A small result itself (base64 of its pickle), when the job asked for inline results; else the
    result is the object ``runs/{job}/{task}/{attempt}/result``."""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    """Earlier attempts: holder, outcome, error, started, finished (for the timeline)."""

    def inline_result(self) -> bytes | None:
        """The result carried in this record, if it is (None: read the result object, if any)."""
        if self.value is None:
            return None
        try:
            return base64.b64decode(self.value, validate=True)
        except (ValueError, TypeError) as exc:
            raise CorruptObject(f"{layout.done(self.job, self.task)}: its inline result is not base64 ({exc})") from None


@dataclass(frozen=True)
class AttemptEnd:
    """How an attempt ended, as the node that ran it saw it (not stored: the lease and done record carry
    what is kept). ``outcome`` None: nothing to commit (lease lost, parked, declined)."""

    outcome: Outcome | None
    error: str | None = None
    exit_code: int | None = None
    final: bool = False
    """No retry: the outcome stands whatever attempts are left."""
    has_result: bool = False
    value: bytes | None = None
    """A small Python result carried in the done record (the job asked for inline results)."""
    interrupted: bool = False


@dataclass(frozen=True)
class NodeInfo(Record):
    """An agent's presence."""

    name: str
    host: str
    pid: int
    version: str
    capabilities: list[str] = field(default_factory=list)
    slots: int = 1
    resources: dict[str, float] = field(default_factory=dict)
    running: list[str] = field(default_factory=list)
    paused: bool = False
    paused_until: float | None = None
    paused_reason: str = ""
    """Why: 'pause' (qubits agent pause), 'in use' (--pause-when-busy), or '' when not paused."""
    draining: bool = False
    started: float = 0.0
    wall: float = 0.0
    seq: int = 0
    stopped: bool = False
    runtimes: list[str] = field(default_factory=list)
    """The container runtimes that work on the node (apptainer, singularity, podman, docker)."""
    enforcement: str = ""
    """How the node holds tasks to their cpus and memory: cgroup2, cgroup1 or rss+affinity."""
    gpus: list[dict[str, Any]] = field(default_factory=list)
    """The GPUs the agent found: id, name, model, memory_gb."""
    wake: str = ""
    """How the agent learns of new work while idle: 'notify' (kernel file notifications on a local
    directory), 'hint' (UDP wake hints, at ``hint``) or 'poll' (only its idle poll)."""
    hint: str = ""
    """``ip:port`` where the agent takes wake hints; empty when it takes none."""
    report_every: float = 0.0
    """Seconds until the agent's next presence update (idle agents report rarely: a PUT costs money)."""

    def lost_after(self) -> float:
        """Seconds without a presence update before this agent counts as lost."""
        return max(NODE_LOST_AFTER, 3 * self.report_every)

    def live(self, age: float) -> bool:
        """Whether the agent runs now, its record last written ``age`` seconds ago: not stopped, not lost.
        The one liveness rule (``why``, ``nodes``, fair shares, hints, slow motion)."""
        return not self.stopped and age < self.lost_after()
