"""Fair share: while several submitters' tasks wait, an agent fills its slots so each submitter runs
about as many tasks as its weight says; priorities order the tasks within one submitter's share.

Every agent shares its own slots (it knows what it runs without asking anyone); over a fleet of agents
that makes the whole fleet's slots shared the same way, at no cost in requests. Between submitters who
run equally, the one that used this agent less lately (decayed usage) goes first, so one-slot agents
alternate rather than favour whoever sorts first."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable

from qubits.protocol import FAIR_SHARE_HALF_LIFE, ReadyEntry, Specs, person


class FairShare:
    """What this agent runs per submitter, and the order that shares its slots."""

    def __init__(self, specs: Specs, weights: dict[str, float] | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.specs = specs
        self.weights = dict(weights or {})
        self.running: Counter[str] = Counter()
        self.usage: defaultdict[str, float] = defaultdict(float)
        self._clock = clock
        self._at = clock()
        self._loading: set[str] = set()
        self._single = False

    def weight(self, who: str) -> float:
        return max(1e-6, self.weights.get(who, 1.0))

    def _decay(self) -> None:
        now = self._clock()
        dt, self._at = now - self._at, now
        factor = 0.5 ** (dt / FAIR_SHARE_HALF_LIFE)
        for who in set(self.usage) | set(self.running):
            self.usage[who] = self.usage[who] * factor + self.running[who] * dt

    def started(self, submitter: str) -> None:
        self._decay()
        self.running[person(submitter)] += 1

    def ended(self, submitter: str) -> None:
        self._decay()
        self.running[person(submitter)] -= 1

    def _who(self, job: str) -> str:
        spec = self.specs.cached_job(job)
        if spec is not None:
            return person(spec.submitter)
        if job not in self._loading:  # read the job spec for the next ordering; claims go on meanwhile
            self._loading.add(job)
            asyncio.get_running_loop().create_task(self._load(job))
        return ""

    async def _load(self, job: str) -> None:
        try:
            await self.specs.job(job)
        except Exception:  # noqa: BLE001 - a job that cannot be read is the claim path's business
            pass
        finally:
            self._loading.discard(job)

    def order(self, entries: list[ReadyEntry], start: int = 0, *, fresh: bool = True) -> None:
        """Interleave ``entries[start:]`` by submitter: each next entry is the first waiting one of the
        submitter whose running tasks (counting those already placed before it) weigh least. The order
        within one submitter's entries is kept (priority first, as ordered before). The rest of a reused
        page (not ``fresh``) is left as it is when its fresh listing had one submitter."""
        if not fresh and self._single:
            return
        queues: dict[str, list[ReadyEntry]] = defaultdict(list)
        for entry in entries[start:]:
            queues[self._who(entry.job)].append(entry)
        if fresh:
            self._single = len(queues) < 2 and "" not in queues
        if len(queues) < 2:
            return
        self._decay()
        placed: Counter[str] = Counter()
        heads = dict.fromkeys(queues, 0)
        merged: list[ReadyEntry] = []
        while heads:
            who = min(heads, key=lambda w: ((self.running[w] + placed[w]) / self.weight(w), self.usage[w] / self.weight(w), w))
            merged.append(queues[who][heads[who]])
            placed[who] += 1
            heads[who] += 1
            if heads[who] >= len(queues[who]):
                del heads[who]
        entries[start:] = merged

    def shares(self) -> dict[str, float]:
        """Each submitter's part of this agent's running tasks (for display)."""
        total = sum(n for n in self.running.values() if n > 0)
        return {w: n / total for w, n in sorted(self.running.items()) if n > 0} if total else {}


def parse_weights(items: list[str]) -> dict[str, float]:
    """``USER=WEIGHT`` items (the agent's --share-weight) as a dict; ValueError names a bad one."""
    weights = {}
    for item in items:
        who, sep, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not sep or not who or not weight > 0 or math.isinf(weight):
            raise ValueError(f"{item!r} is not USER=WEIGHT with a positive weight, e.g. alice=2")
        weights[who] = weight
    return weights
