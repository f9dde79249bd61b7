"""The protocol as a published surface: what an agent, a tool or a benchmark may build on.

``nodeagent`` and ``bench`` import the core from here, never from its private modules (as httpx
re-exports its ``_client``, ``_models`` … through one explicit ``__all__``); a name leaves this list only
with a release note. ``tests/unit/test_surface.py`` keeps every ``__all__`` sorted and complete.

    records     AttemptEnd, JobSpec, Lease, LeaseState, NodeInfo, Outcome, TaskSpec
    protocol    Protocol (claim, renew, release, commit, take over), Claim, LeaseLost, due_in
    retry       RetryPolicy (decide, exhausted, backoff), Decision, Step
    finding     ReadyIndex, ReadyEntry, live_leases, Specs, Dag
    kinds       the task-kind registry (``kinds.runner``, ``kinds.after_commit`` …)
    layout      where every object lives
"""

from . import _kinds as kinds
from . import _layout as layout
from ._bundle import UnsafeArchive, extract
from ._dag import Dag
from ._datacache import DataCache
from ._defaults import (
    CANCEL_CHECK,
    CONTROL_EXIT,
    DASHBOARD_INTERVAL,
    FAIR_SHARE_HALF_LIFE,
    HINT_LISTEN,
    HINT_MIN_GAP,
    HINT_PEER_GAP,
    HINT_PORT,
    IDLE_LIST_POLLS,
    IDLE_PRESENCE_POLLS,
    IDLE_SCAN_POLLS,
    INLINE_RESULT_MAX,
    LEASE_TTL,
    LOG_FLUSH,
    MIN_TTL,
    PRESENCE_INTERVAL,
    READY_PAGE_REUSE,
    RENEW_FRACTION,
    SCHEDULE_REFRESH,
    STOP_TIMEOUT,
    TASKS_PER_CHUNK,
    TOMBSTONE_LINGER,
)
from ._exit import leave
from ._hints import HintCheck, format_address, secret
from ._ids import XREF, default_node_name, new_job_id
from ._logs import Frame, split
from ._protocol import Claim, LeaseLost, Protocol, due_in
from ._records import AttemptEnd, JobSpec, Lease, LeaseState, NodeInfo, Outcome, TaskSpec
from ._retry import Decision, RetryPolicy, Step
from ._scan import ReadyEntry, ReadyIndex, live_leases
from ._schedule import Schedule, due, fire, list_schedules
from ._shares import person
from ._specs import Specs
from ._version import __version__
from ._wire import blob_digests

__all__ = [
    "AttemptEnd",
    "CANCEL_CHECK",
    "CONTROL_EXIT",
    "Claim",
    "DASHBOARD_INTERVAL",
    "Dag",
    "DataCache",
    "Decision",
    "FAIR_SHARE_HALF_LIFE",
    "Frame",
    "HINT_LISTEN",
    "HINT_MIN_GAP",
    "HINT_PEER_GAP",
    "HINT_PORT",
    "HintCheck",
    "IDLE_LIST_POLLS",
    "IDLE_PRESENCE_POLLS",
    "IDLE_SCAN_POLLS",
    "INLINE_RESULT_MAX",
    "JobSpec",
    "LEASE_TTL",
    "LOG_FLUSH",
    "Lease",
    "LeaseLost",
    "LeaseState",
    "MIN_TTL",
    "NodeInfo",
    "Outcome",
    "PRESENCE_INTERVAL",
    "Protocol",
    "READY_PAGE_REUSE",
    "RENEW_FRACTION",
    "ReadyEntry",
    "ReadyIndex",
    "RetryPolicy",
    "SCHEDULE_REFRESH",
    "STOP_TIMEOUT",
    "Schedule",
    "Specs",
    "Step",
    "TASKS_PER_CHUNK",
    "TOMBSTONE_LINGER",
    "TaskSpec",
    "UnsafeArchive",
    "XREF",
    "__version__",
    "blob_digests",
    "default_node_name",
    "due",
    "due_in",
    "extract",
    "fire",
    "format_address",
    "kinds",
    "layout",
    "leave",
    "list_schedules",
    "live_leases",
    "new_job_id",
    "person",
    "secret",
    "split",
]
