"""Job and task identifiers, and the reversible escaping of names into key-safe ids."""

from __future__ import annotations

import os
import re
import secrets
import socket
import time

_SAFE = re.compile(r"[A-Za-z0-9._-]")


def new_job_id() -> str:
    """A time-sortable, unique job id: 20261122-051502-3f9a1c."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def new_token() -> str:
    """A unique nonce for a lease grant or write."""
    return secrets.token_hex(8)


def task_id(name: str) -> str:
    """A key-safe id for a task name: safe characters kept, others escaped as ~XX (UTF-8 bytes)."""
    if not name:
        raise ValueError("a task name cannot be empty")
    out = []
    for ch in name:
        if _SAFE.fullmatch(ch) and ch != "~":
            out.append(ch)
        else:
            out.extend(f"~{b:02x}" for b in ch.encode())
    tid = "".join(out)
    if tid in (".", ".."):
        tid = tid.replace(".", "~2e")
    return tid


def task_name(tid: str) -> str:
    """The name a task id was made from."""
    raw = bytearray()
    i = 0
    while i < len(tid):
        if tid[i] == "~":
            raw.append(int(tid[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(tid[i].encode())
            i += 1
    return raw.decode()


def default_node_name() -> str:
    """host-pid, unique among the agents of one host."""
    return f"{socket.gethostname()}-{os.getpid()}"


def submitter() -> str:
    """user@host, for display and fair share (QUBITS_SUBMITTER names another: a shared account's user)."""
    named = os.environ.get("QUBITS_SUBMITTER")
    if named:
        return named
    try:
        user = os.getlogin()
    except OSError:
        user = os.environ.get("USER", "unknown")
    return f"{user}@{socket.gethostname()}"


XREF = "~x~"
"""How a dependency on a task of another job is written among a task's deps (and as a waiter's name
in an edge under the other job): ``~x~{job}~{task}``. ``task_id`` escapes every ``~``, so no task id
of a job begins like it, and job ids have no ``~``."""


def xref(job: str, task: str) -> str:
    """A dependency on task ``task`` of job ``job`` (another job), for ``TaskSpec.deps``."""
    return f"{XREF}{job}~{task}"


def parse_xref(dep: str) -> tuple[str, str] | None:
    """(job, task) of a dependency made by ``xref``; None for a task of the same job."""
    if not dep.startswith(XREF):
        return None
    job, _, task = dep[len(XREF) :].partition("~")
    return job, task
