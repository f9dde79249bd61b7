"""The one exception hierarchy of qubits (jobspace faults are ``jobspaces.JobspaceError``).

    QubitsError
    ├── UsageError            bad arguments, or a Qfile / batch file / spec that does not load
    │   ├── QfileError        the Qfile failed to load (file and line in the message)
    │   └── CycleError        the dependency graph has a cycle (the cycle in the message)
    ├── NotFoundError         no such job or task
    ├── WaitTimeout           waiting for a job or result took too long (also a TimeoutError)
    ├── TaskFailed            a task ended failed (its error and remote traceback attached)
    ├── Cancelled             the job or future was cancelled (also a concurrent.futures.CancelledError)
    ├── CorruptObject         an object in the jobspace cannot be read (quarantined, reported)
    │   └── NewerFormat       an object written by a newer qubits (upgrade this machine)
    ├── TamperedJob           a job's signature is missing or wrong (QUBITS_SECRET is set)
    └── UnsafeJobspace        the store cannot do conditional writes, so leases on it are unsafe
"""

from __future__ import annotations

import concurrent.futures


class QubitsError(Exception):
    """qubits failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class UsageError(QubitsError):
    """The request is not valid."""


class QfileError(UsageError):
    """The Qfile did not load."""


class CycleError(UsageError):
    """The dependency graph has a cycle."""


class NotFoundError(QubitsError):
    """No such job or task in this jobspace."""


# Also a TimeoutError, so `except TimeoutError` catches it as it catches concurrent.futures' own.
class WaitTimeout(QubitsError, TimeoutError):
    """Timed out waiting."""


class TaskFailed(QubitsError):
    """A task failed."""

    def __init__(self, message: str | None = None, *, remote_traceback: str | None = None) -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback


# Also a concurrent.futures.CancelledError, as a cancelled standard-library future raises. Not asyncio's
# own: that is a BaseException, which asyncio reads as "cancel the task that awaited it".
class Cancelled(QubitsError, concurrent.futures.CancelledError):
    """Cancelled."""


class CorruptObject(QubitsError):
    """An object in the jobspace is corrupt or truncated; it was quarantined."""


class NewerFormat(CorruptObject):
    """An object was written by a newer qubits than this one: upgrade qubits on this machine."""


class TamperedJob(QubitsError):
    """The job's signature is missing or does not match (QUBITS_SECRET): refusing to run it."""


class UnsafeJobspace(QubitsError):
    """This store cannot do conditional writes, so leases on it would be unsafe: refusing to use it."""
