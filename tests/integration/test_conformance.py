"""Every jobspace backend runs the shipped conformance suite (``jobspaces.testing``): memory, a local
directory, S3 on a moto server process, and, where their programs are installed, SeaweedFS (S3),
fake-gcs-server (gs://) and Azurite (az://). The race checker itself is tested against a deliberately
non-atomic jobspace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from jobspaces import MemoryJobspace, NotFound, PreconditionFailed, SyncJobspace, open_jobspace, run_sync
from jobspaces._probe import RaceOp, race
from jobspaces.testing import JobspaceConformance, MiB

# -- the backends ---------------------------------------------------------------------------------------


class TestMemory(JobspaceConformance):
    @pytest.fixture
    def jobspace(self, memory_url: str) -> Iterator[SyncJobspace]:
        yield from self.opened(memory_url)


class TestLocal(JobspaceConformance):
    race_in_processes = True

    @pytest.fixture
    def jobspace(self, local_url: str) -> Iterator[SyncJobspace]:
        yield from self.opened(local_url)


@pytest.mark.s3
class TestMoto(JobspaceConformance):
    etag_repeats = True
    atomic = False  # storage-facts.md §5.2: moto checks the condition, then writes, with no lock across
    big_race = (32, 6, 6 * MiB)

    @pytest.fixture
    def jobspace(self, s3_url: str) -> Iterator[SyncJobspace]:
        yield from self.opened(s3_url)


@pytest.mark.s3
class TestSeaweed(JobspaceConformance):
    etag_repeats = True
    race_rounds = 1  # contended losers wait on a lock retried every second: a 32-way round takes seconds
    big_race = (8, 1, 6 * MiB)

    @pytest.fixture
    def jobspace(self, seaweed_url: str) -> Iterator[SyncJobspace]:
        yield from self.opened(seaweed_url)


class TestFakeGcs(JobspaceConformance):

    @pytest.fixture
    def jobspace(self, gcs_url: str) -> Iterator[SyncJobspace]:
        yield from self.opened(gcs_url)


class TestAzurite(JobspaceConformance):
    @pytest.fixture
    def jobspace(self, azurite_url: str) -> Iterator[SyncJobspace]:
        yield from self.opened(azurite_url)


# -- the race checker must catch a store that is not atomic ------------------------------------------


class CheckThenWriteJobspace(MemoryJobspace):
    """Deliberately broken: checks the condition, sleeps, then writes unconditionally (never do this)."""

    async def _put(self, key: str, data: bytes, *, if_absent: bool, if_match: str | None) -> str:
        try:
            current: str | None = (await self._head(key)).etag
        except NotFound:
            current = None
        if if_absent and current is not None:
            raise PreconditionFailed("exists", key=key)
        if if_match is not None and current != if_match:
            raise PreconditionFailed("etag changed", key=key)
        await asyncio.sleep(0.005)  # the window between check and write
        return await super()._put(key, data, if_absent=False, if_match=None)


@pytest.mark.parametrize("op", ["create", "cas"])
def test_race_checker_flags_a_check_then_write_store(op: RaceOp) -> None:
    store = CheckThenWriteJobspace("check-then-write-" + op)
    try:
        report = run_sync(race(store, "k", op=op, racers=16, rounds=3))
    finally:
        MemoryJobspace.forget("check-then-write-" + op)
    assert not report.ok
    assert report.multi_winner_rounds == 3, report.summary()
    assert "3 rounds with >1 winner" in report.summary()


def test_race_checker_passes_an_atomic_store(memory_url: str) -> None:
    report = run_sync(race(open_jobspace(memory_url), "k", op="cas", racers=16, rounds=3))
    assert report.ok and report.winners == [1, 1, 1] and report.losers == 45, report.summary()
