"""A simulated object store: in memory and atomic, with S3's (or GCS's) latency and rate limits.

Each request waits its sampled latency, then is admitted or throttled and takes effect atomically: the
check of its condition and its write happen in one step of the event loop (one thread, no await
between them). Latencies are lognormal per kind of request; a GET also pays its bytes at ``bytes_per_s``.

Rate limits are token buckets, refilled continuously, holding one second of requests:

- per **partition** (S3's "prefix"): ``write_rate`` PUT/DELETE and ``read_rate`` GET/HEAD/LIST requests
  per second. A partition is the key's first ``prefix_depth`` folders: with depth 2, ``leases/J/T`` is
  in ``leases/J/``, ``ready/3/50/J/…`` in ``ready/3/``, ``nodes/n.json`` in ``nodes/`` and ``wake`` in
  the root. This models a warm bucket in which S3 has given each such folder its own partition, and
  does not split a folder further during a run (S3 re-partitions in 30-60 minutes). A LIST page is
  charged to the partition of the first key it returns.
- per **object** (GCS): ``object_write_rate`` writes per second to one object name (burst
  ``object_write_burst``).

A throttled request is answered ``throttle_status`` (S3: 503 SlowDown; GCS: 429) after its latency and
raises ``jobspaces.TransientError``, so qubits' own retry code handles it. Nothing here is reachable by
URL: ``open_jobspace`` knows no scheme for it; only the benchmark constructs it.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import random
import statistics
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from jobspaces import Jobspace, NotFound, ObjectMeta, PreconditionFailed, Timing, TransientError

LIST_PAGE = 1000


@dataclass(frozen=True)
class Latency:
    """A lognormal latency: ``median_ms`` and ``sigma`` (the standard deviation of its logarithm)."""

    median_ms: float
    sigma: float
    source: str = ""

    def sample(self, rng: random.Random) -> float:
        """One latency, in seconds."""
        return self.median_ms * math.exp(self.sigma * rng.gauss(0.0, 1.0)) / 1000.0

    def quantile_ms(self, q: float) -> float:
        """The q-th quantile (0 < q < 1) in milliseconds."""
        return self.median_ms * math.exp(self.sigma * statistics.NormalDist().inv_cdf(q))

    @staticmethod
    def fit(median_ms: float, other_ms: float, q: float, source: str = "") -> Latency:
        """The lognormal with this median whose q-th quantile is ``other_ms``."""
        return Latency(median_ms, math.log(other_ms / median_ms) / statistics.NormalDist().inv_cdf(q), source)


@dataclass(frozen=True)
class Profile:
    """Latencies and limits of one kind of store."""

    name: str
    latency: dict[str, Latency]
    """By request kind: GET, HEAD, PUT (every write, conditional or not), DELETE, LIST (one page)."""
    write_rate: float
    read_rate: float
    prefix_depth: int = 2
    object_write_rate: float | None = None
    object_write_burst: float = 1.0
    throttle_status: int = 503
    throttle_text: str = "SlowDown"
    bytes_per_s: float = 100e6
    """Transfer rate of one request's body (a task chunk GET is 50-200 kB)."""
    idle_poll: tuple[float, float] = (0.5, 5.0)
    """As the real backend: shortest and longest idle poll of an agent."""
    min_write_interval: float = 0.0
    """As the real backend's ``Jobspace.min_write_interval`` (GCS: 1 s)."""

    def with_(self, **changes: object) -> Profile:
        return replace(self, **changes)  # type: ignore[arg-type]


_S3_META = Latency.fit(10.0, 17.0, 0.90, "turbopuffer.com/docs/tradeoffs: S3 metadata p50 10 ms, p90 17 ms")
_S3_WRITE = Latency.fit(
    60.0, 200.0, 0.99,
    "cdouglas.github.io/posts/2026/01/conditional: S3 CAS 58-68 ms; turbopuffer: writes take up to 200 ms to commit (taken as p99)",
)
_S3_LIST = Latency.fit(30.0, 120.0, 0.99, "assumption: no published figure for a 1,000-key LIST page")

S3 = Profile(
    name="s3",
    latency={"GET": _S3_META, "HEAD": _S3_META, "PUT": _S3_WRITE, "DELETE": _S3_WRITE, "LIST": _S3_LIST},
    write_rate=3500.0,
    read_rate=5500.0,
    throttle_status=503,
    throttle_text="SlowDown",
)
"""S3 Standard: 3,500 writes/s and 5,500 reads/s per partitioned prefix (AWS user guide,
optimizing-performance); 503 SlowDown past them."""

_GCS_META = Latency.fit(15.0, 25.0, 0.90, "turbopuffer.com/docs/tradeoffs: GCS metadata p50 12-18 ms, p90 15-25 ms")
_GCS_WRITE = Latency.fit(
    80.0, 250.0, 0.99,
    "assumption: turbopuffer puts GCS writes in S3's ballpark (up to 200 ms); Douglas' 500-700 ms is CAS under "
    "the 1 write/s limit, which the simulator produces from the limit itself",
)
_GCS_LIST = Latency.fit(35.0, 140.0, 0.99, "assumption: no published figure for a 1,000-key LIST page")

GCS = Profile(
    name="gcs",
    latency={"GET": _GCS_META, "HEAD": _GCS_META, "PUT": _GCS_WRITE, "DELETE": _GCS_WRITE, "LIST": _GCS_LIST},
    write_rate=1000.0,
    read_rate=5000.0,
    object_write_rate=1.0,
    object_write_burst=1.0,
    throttle_status=429,
    throttle_text="Too Many Requests",
    min_write_interval=1.0,
)
"""GCS: one write per second per object name (cloud.google.com/storage/quotas), 429 past it; a bucket's
key ranges start at about 1,000 writes/s and 5,000 reads/s (cloud.google.com/storage/docs/request-rate),
applied here per prefix like S3's."""

PROFILES = {"s3": S3, "gcs": GCS}
HONOUR_WRITE_INTERVAL = True
"""False: the jobspace does not announce GCS's per-object write interval (the claim path before it was used)."""


class SortedKeys:
    """Keys in order, in blocks, so inserting into or deleting from a million keys stays cheap."""

    _LOAD = 512

    def __init__(self) -> None:
        self._blocks: list[list[str]] = []
        self._maxes: list[str] = []
        self.size = 0

    def add(self, key: str) -> None:
        self.size += 1
        if not self._blocks:
            self._blocks.append([key])
            self._maxes.append(key)
            return
        i = bisect.bisect_left(self._maxes, key)
        if i == len(self._maxes):
            i -= 1
            self._blocks[i].append(key)
            self._maxes[i] = key
        else:
            bisect.insort(self._blocks[i], key)
        block = self._blocks[i]
        if len(block) > 2 * self._LOAD:
            self._blocks[i : i + 1] = [block[: self._LOAD], block[self._LOAD :]]
            self._maxes[i : i + 1] = [block[self._LOAD - 1], block[-1]]

    def remove(self, key: str) -> None:
        i = bisect.bisect_left(self._maxes, key)
        block = self._blocks[i]
        j = bisect.bisect_left(block, key)
        if j >= len(block) or block[j] != key:
            raise KeyError(key)
        del block[j]
        self.size -= 1
        if not block:
            del self._blocks[i]
            del self._maxes[i]
        elif j == len(block):
            self._maxes[i] = block[-1]

    def page(self, prefix: str, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` keys starting with ``prefix`` that sort after ``after`` (or from the prefix on)."""
        if after is not None and after >= prefix:
            i = bisect.bisect_right(self._maxes, after)
            j = bisect.bisect_right(self._blocks[i], after) if i < len(self._blocks) else 0
        else:
            i = bisect.bisect_left(self._maxes, prefix)
            j = bisect.bisect_left(self._blocks[i], prefix) if i < len(self._blocks) else 0
        out: list[str] = []
        while i < len(self._blocks) and len(out) < limit:
            for key in itertools.islice(self._blocks[i], j, j + limit - len(out)):
                if not key.startswith(prefix):
                    return out
                out.append(key)
            i, j = i + 1, 0
        return out


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp

    def ready(self, rate: float, burst: float, now: float) -> bool:
        """Refill; whether a token is there (not taken: a request throttled elsewhere takes none)."""
        self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        return self.tokens >= 1.0


def partition(key: str, depth: int) -> str:
    """The S3 partition (prefix) of a key: its first ``depth`` folders (see the module docstring)."""
    folders = key.split("/")[:-1][:depth]
    return "/".join(folders) + "/" if folders else ""


def _area(key: str) -> str:
    return key.split("/", 1)[0] if key else "-"


@dataclass
class SimStats:
    """What the store saw: requests by kind and area, throttled answers, lost conditions."""

    requests: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    """By ``"KIND partition"``."""
    lost_conditions: Counter[str] = field(default_factory=Counter)
    done_creates: Counter[str] = field(default_factory=Counter)
    """Successful create-only writes of done records, by key: more than one would break atomicity."""
    done_times: list[float] = field(default_factory=list)
    """When (loop time) each done record was created."""

    def snapshot(self) -> dict[str, Counter[str]]:
        return {"requests": Counter(self.requests), "throttled": Counter(self.throttled),
                "lost_conditions": Counter(self.lost_conditions)}


class SimStore:
    """The state of one simulated bucket, shared by every SimJobspace opened on it."""

    def __init__(self, profile: Profile, seed: int = 0) -> None:
        self.profile = profile
        self.rng = random.Random(seed)
        self.objects: dict[str, tuple[bytes, ObjectMeta]] = {}
        self.keys = SortedKeys()
        self.counter = itertools.count(1)
        self.stats = SimStats()
        self._prefix_buckets: dict[tuple[str, bool], _Bucket] = {}
        self._object_buckets: dict[str, _Bucket] = {}

    def load(self, key: str, data: bytes, mtime: float = 0.0) -> None:
        """Put an object without a request (filling a queue before the clock starts)."""
        self._store(key, data, mtime)

    def _store(self, key: str, data: bytes, mtime: float) -> str:
        etag = f'"{next(self.counter)}"'
        if key not in self.objects:
            self.keys.add(key)
        self.objects[key] = (data, ObjectMeta(key, etag, len(data), mtime))
        return etag

    def admit(self, kind: str, key: str, now: float) -> str | None:
        """None if the request may proceed, else the partition (or object) that throttled it."""
        p = self.profile
        write = kind in ("PUT", "DELETE")
        part = partition(key, p.prefix_depth)
        rate = p.write_rate if write else p.read_rate
        prefix_bucket = self._prefix_buckets.get((part, write))
        if prefix_bucket is None:
            prefix_bucket = self._prefix_buckets[(part, write)] = _Bucket(rate, now)
        object_bucket = None
        if write and p.object_write_rate is not None:
            object_bucket = self._object_buckets.get(key)
            if object_bucket is None:
                if len(self._object_buckets) > 200_000:
                    horizon = p.object_write_burst / p.object_write_rate
                    self._object_buckets = {k: v for k, v in self._object_buckets.items() if now - v.stamp < horizon}
                object_bucket = self._object_buckets[key] = _Bucket(p.object_write_burst, now)
            if not object_bucket.ready(p.object_write_rate, p.object_write_burst, now):
                return f"per-object {part}"
        if not prefix_bucket.ready(rate, rate, now):
            return part
        prefix_bucket.tokens -= 1.0
        if object_bucket is not None:
            object_bucket.tokens -= 1.0
        return None


class SimJobspace(Jobspace):
    """A Jobspace on a SimStore. ``url`` is ``sim://{profile}/{name}``: a label, not an openable URL."""

    def __init__(self, store: SimStore, name: str = "bench", timing: Timing | None = None) -> None:
        super().__init__(timing)
        self.store = store
        self.url = f"sim://{store.profile.name}/{name}"
        self.idle_poll = store.profile.idle_poll
        self.min_write_interval = store.profile.min_write_interval if HONOUR_WRITE_INTERVAL else 0.0

    async def _get(self, key: str) -> tuple[bytes, str]:
        await self._arrive("GET", key, "GET")
        found = self.store.objects.get(key)
        if found is None:
            raise NotFound(key=key)
        if found[0]:
            await asyncio.sleep(len(found[0]) / self.store.profile.bytes_per_s)
        return found[0], found[1].etag

    async def _head(self, key: str) -> ObjectMeta:
        await self._arrive("HEAD", key, "HEAD")
        found = self.store.objects.get(key)
        if found is None:
            raise NotFound(key=key)
        return found[1]

    async def _put(self, key: str, data: bytes, *, if_absent: bool, if_match: str | None) -> str:
        kind = "PUT_CREATE" if if_absent else "PUT_CAS" if if_match is not None else "PUT"
        await self._arrive("PUT", key, kind)
        store = self.store
        current = store.objects.get(key)
        if if_absent and current is not None:
            store.stats.lost_conditions[f"{kind} {_area(key)}"] += 1
            raise PreconditionFailed("object exists already", key=key)
        if if_match is not None and (current is None or current[1].etag != if_match):
            store.stats.lost_conditions[f"{kind} {_area(key)}"] += 1
            raise PreconditionFailed("ETag changed" if current else "object is gone", key=key)
        now = asyncio.get_running_loop().time()
        etag = store._store(key, data, now)
        if if_absent and key.startswith("done/"):
            store.stats.done_creates[key] += 1
            store.stats.done_times.append(now)
        return etag

    async def _delete(self, key: str) -> None:
        await self._arrive("DELETE", key, "DELETE")
        store = self.store
        if store.objects.pop(key, None) is not None:
            store.keys.remove(key)

    async def _list(self, prefix: str, start_after: str | None) -> AsyncIterator[ObjectMeta]:
        store = self.store
        after = start_after
        while True:
            await self._arrive("LIST", prefix, "LIST", listing=(prefix, after))
            keys = store.keys.page(prefix, after, LIST_PAGE)
            page = [store.objects[k][1] for k in keys]
            for meta in page:
                yield meta
            if len(keys) < LIST_PAGE:
                return
            after = keys[-1]

    async def _arrive(self, kind: str, key: str, count_as: str, listing: tuple[str, str | None] | None = None) -> None:
        """Wait the request's latency, count it, then admit it or answer 503/429 (TransientError).

        The request takes effect when this returns: the caller's next lines run in the same step of
        the event loop, with no await between the check of a condition and the write (atomic).
        """
        store = self.store
        p = store.profile
        await asyncio.sleep(p.latency[kind].sample(store.rng))
        store.stats.requests[f"{count_as} {_area(key)}"] += 1
        if listing is not None:  # a page is charged to the partition of its first key
            first = store.keys.page(listing[0], listing[1], 1)
            key = first[0] if first else listing[0]
        throttled = store.admit(kind, key, asyncio.get_running_loop().time())
        if throttled is not None:
            store.stats.throttled[f"{count_as} {throttled}"] += 1
            raise TransientError(f"{p.throttle_status} {p.throttle_text} (simulated {p.name}, {throttled})", key=key)
