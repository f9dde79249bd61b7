"""Every default of the protocol in one place, each with the reason for its value."""

from __future__ import annotations

LEASE_TTL = 30.0
"""Seconds a lease lives without a renewal; like SQS's default visibility timeout."""
MIN_TTL = 1.0
"""The shortest ttl an agent may ask for (GCS allows one write per second per object)."""
RENEW_FRACTION = 1 / 3
"""A holder renews after this fraction of its ttl, so two renewals can fail before it expires."""
TAKEOVER_MARGIN = 0.5
"""Seconds an observer waits beyond a lease's ttl before taking it over (request time, scheduling)."""
TOMBSTONE_LINGER = 10.0
"""Seconds a committed lease stays before it is deleted, so a claimer holding a listing of the ready
index older than half of this cannot re-create the lease of a task that just finished."""
READY_PAGE_REUSE = 60.0
"""Seconds an agent keeps claiming from the untried rest of its last ready-index page instead of listing
again (the first miss lists afresh); past TOMBSTONE_LINGER / 2 each such claim also checks done/ (a HEAD)."""
MAX_ATTEMPTS = 3
"""Attempts per task (first run included) before it ends failed: a dead letter with its logs kept."""
RETRY_BACKOFF = 1.0
"""Seconds before the first retry; doubled each further attempt, with jitter, up to RETRY_BACKOFF_MAX."""
RETRY_BACKOFF_MAX = 300.0
"""The longest pause between retries."""
READY_SHARDS = 16
"""Ready-index shards: agents start listing at a random shard so they do not fight for one first task."""
LIST_PAGE = 1000
"""Keys per listing page (what S3 returns per request)."""
TASKS_PER_CHUNK = 1000
"""Task specs per immutable chunk object: one GET serves a thousand claims."""
LOG_FLUSH = 2.0
"""Seconds between uploads of a running task's new output."""
PRESENCE_INTERVAL = 15.0
"""Seconds between an agent's presence updates (nodes/{node}.json)."""

CANCEL_CHECK = 2.0
"""Seconds between checks of a running task's job for cancellation."""
CANCEL_WAIT = 5 * CANCEL_CHECK
"""Seconds cancelling one task (or ``rm --force``) waits for an agent running it to stop it and say so."""
STOP_TIMEOUT = 60.0
"""Seconds a draining agent lets running tasks finish before it releases their leases."""
WAKE_MIN_INTERVAL = 1.0
"""Seconds between writes of the wake object by one writer (GCS: one write per second per object)."""
INLINE_RESULT_MAX = 4096
"""The largest Python result (pickled bytes) carried inside its task's done record instead of an object
of its own: a map of small values then costs no result PUT on the agent and no result GET on the client."""
MAX_SPEC_BYTES = 1 << 20
"""The largest task spec accepted (1 MiB): bulk data belongs in datasets or files, not in specs."""
FORMAT_VERSION = 1
"""The version of the object formats this release writes and reads."""


CONTROL_EXIT = 75
"""Exit status with which a task's runner says "read my control file" (decline, needs, missing)."""

LOOKUP_CONCURRENCY = 32
"""Index entries of Qfile targets read at once while ``make`` plans (a level of the graph at a time)."""

TARGET_MANIFESTS_READ = 20
"""Manifests of the newest jobs (each: the identities of the targets it made) ``make`` reads whole
before it looks identities up one by one."""

GRAPH_REFRESH = 2.0
"""Seconds between rewrites of ``make --graph``'s page while its job runs (and the page's reload interval)."""
FAIR_SHARE_HALF_LIFE = 600.0
"""Seconds over which an agent's memory of who used its slots halves (fair share's tie-breaker, as in
SLURM's decayed usage): between submitters running equally, the one that ran less lately goes first."""

SCHEDULE_REFRESH = 30.0
"""Seconds between an agent's readings of the schedules (one LIST of schedules/): a schedule added or
removed takes effect within this."""
SCHEDULE_GRACE = 60.0
"""Seconds a schedule's tick may still be fired late (an agent busy or just started); older ticks are
skipped, as cron skips the runs of a machine that was off."""
SCHEDULE_KEEP = 86400.0
"""Seconds a tick's create-only marker is kept: far longer than SCHEDULE_GRACE, so that no agent, even
with its clock hours off, can create a tick's marker again once it was pruned."""

DASHBOARD_PORT = 8265
"""The port `qubits dashboard` listens on (Ray's dashboard port: people who know one find the other)."""
DASHBOARD_INTERVAL = 2.0
"""Seconds between two reads of the jobspace by the dashboard's one poller, shared by every open tab:
live enough to watch tasks start and end, and a few hundred requests a minute at most."""

IDLE_PRESENCE_POLLS = 20
"""An idle agent rewrites its presence once every this many longest idle polls (20 min on object stores,
where the longest idle poll is a minute; at least PRESENCE_INTERVAL * 8): presence is a PUT, the costly
kind, and an idle fleet should cost pennies (issue 18: <= 100 requests an hour per idle agent)."""
IDLE_SCAN_POLLS = 20
"""With no leases in sight, an agent scans them once every this many longest idle polls (at least
max(30 s, 4 ttl)). A submit wakes idle agents (hint, notification or the wake object), and from then on
they watch leases every ttl / 4, so a takeover does not wait for this quiet scan."""
IDLE_LIST_POLLS = 60
"""With the ready index seen empty, an agent lists it anyway once every this many longest idle polls
(at least a minute): the safety net for a wake signal that never came."""
HINT_PORT = 0
"""UDP port of the wake-hint listener when the address names none (0: any free port, published)."""
HINT_LISTEN = "127.0.0.1"
"""Where an agent listens for wake hints by default: loopback, so agents on the submitter's own host
are woken at once and nothing is reachable from other hosts unless the operator says where."""
HINT_MIN_GAP = 0.25
"""Seconds between two listings a hint may cause: a flood of hints (forged or not) costs at most one
rate-limited listing per gap."""
HINT_MAX_AGE = 30.0
"""Seconds a signed hint stays valid (QUBITS_SECRET): with its nonce remembered that long, a replayed
hint is ignored."""
HINT_PEERS_TTL = 30.0
"""Seconds a submitter or agent reuses the list of agents it hints (one LIST and a GET per agent)."""
HINT_PEER_GAP = 5.0
"""Seconds between an agent's hints to its idle peers while the queue holds more than it can take."""
NODE_LOST_AFTER = 6 * 60
"""Seconds without a presence update after which an agent counts as lost, at least (busy agents report
every 15 s; idle ones as rarely as their record's ``report_every`` says, and get three times that)."""
