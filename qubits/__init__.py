"""qubits: an object-store-native, pull-based task queue and pipeline runner.

The only shared state is a bucket or a local directory (a *jobspace*). Submit work by writing
objects; agents claim tasks with conditional writes, renew their leases, and take over the tasks of
agents that died. No broker, no scheduler, no database.

    import qubits
    client = qubits.connect("s3://bucket/prefix")
    job = client.submit_commands(["echo one", "echo two"])
    job.wait()
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("qubits")
    """The installed distribution's version (its package metadata)."""
except _metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
    __version__ = "0+unknown"

from ._client import Client, Job, JobStatus, TaskState, connect
from ._compose import gather
from ._dataset import Dataset
from ._futures import Future, RemoteTraceback, as_completed, reduce, wait
from ._ids import task_id, xref
from ._local import LocalCluster, shutdown
from ._map import Executor, Map, map, map_async, submit, submit_async
from ._records import Done, JobSpec, Lease, LeaseState, NodeInfo, Outcome, TaskSpec
from .errors import (
    Cancelled,
    CorruptObject,
    CycleError,
    NotFoundError,
    QfileError,
    QubitsError,
    TamperedJob,
    TaskFailed,
    UnsafeJobspace,
    UsageError,
    WaitTimeout,
)
from .qfile import Decline, MissingOutput, make

__all__ = [
    "Cancelled",
    "Client",
    "CorruptObject",
    "CycleError",
    "Dataset",
    "Decline",
    "Done",
    "Executor",
    "Future",
    "Job",
    "JobSpec",
    "JobStatus",
    "Lease",
    "LeaseState",
    "LocalCluster",
    "Map",
    "MissingOutput",
    "NodeInfo",
    "NotFoundError",
    "Outcome",
    "QfileError",
    "QubitsError",
    "RemoteTraceback",
    "TamperedJob",
    "TaskFailed",
    "TaskSpec",
    "TaskState",
    "UnsafeJobspace",
    "UsageError",
    "WaitTimeout",
    "__version__",
    "as_completed",
    "connect",
    "gather",
    "make",
    "map",
    "map_async",
    "reduce",
    "shutdown",
    "submit",
    "submit_async",
    "task_id",
    "wait",
    "xref",
]
