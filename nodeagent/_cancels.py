"""Which jobs are cancelled, as one agent last looked: a narrow collaborator of the agent.

A cancel is final (``jobs/{job}/cancel`` is never removed), so a "yes" is kept for good; a "no" is
trusted for ``max_age`` seconds (CANCEL_CHECK by default) before the marker is looked up again. The
agent asks before it claims and when a claim starts; a running task's supervisor asks with
``max_age=0``.
"""

from __future__ import annotations

import time
from typing import Protocol

from jobspaces import Jobspace
from qubits.protocol import CANCEL_CHECK, layout


class CancelView(Protocol):
    """What the claim path needs to know about cancels (``CancelCache`` is the agent's)."""

    def known(self, job: str, max_age: float = CANCEL_CHECK) -> bool | None: ...

    async def check(self, job: str, max_age: float = CANCEL_CHECK) -> bool: ...


class CancelCache:
    """The cancel markers this agent has read, with when."""

    def __init__(self, js: Jobspace) -> None:
        self.js = js
        self._seen: dict[str, tuple[bool, float]] = {}

    def known(self, job: str, max_age: float = CANCEL_CHECK) -> bool | None:
        """Whether ``job`` is cancelled, if checked recently enough; None if it must be checked."""
        cached = self._seen.get(job)
        if cached is not None and (cached[0] or time.monotonic() - cached[1] < max_age):
            return cached[0]
        return None

    async def check(self, job: str, max_age: float = CANCEL_CHECK) -> bool:
        """Whether ``job`` is cancelled: from the cache while fresh, else one HEAD of its marker."""
        known = self.known(job, max_age)
        if known is not None:
            return known
        flag = await self.js.exists(layout.cancel(job))
        self._seen[job] = (flag, time.monotonic())
        return flag
