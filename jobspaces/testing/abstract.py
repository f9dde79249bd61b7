"""The jobspace conformance suite, shipped so that any store proves itself (as fsspec ships
``fsspec/tests/abstract``).

``JobspaceConformance`` holds every test; a backend subclasses it in a test module of its own and
overrides the ``jobspace`` fixture (see docs/architecture.md, "Adding a store"); qubits' own stores do so
in tests/integration/test_conformance.py: memory, a local directory, S3 on a moto server process, and,
where their programs are installed, SeaweedFS (S3), fake-gcs-server (gs://) and Azurite (az://). A store that fails a test lists it in
``known_failures`` (or ``writes_fail`` when it cannot write at all) with the reason; such a test is a
strict xfail, so a store that starts passing fails the suite until the list (and docs/stores.md) is
updated.
Needs pytest (the ``test`` extra).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

import pytest

from jobspaces import (
    AmbiguousWrite,
    Faults,
    FaultyJobspace,
    InvalidKey,
    Jobspace,
    NotFound,
    PreconditionFailed,
    SyncJobspace,
    open_jobspace,
    run_sync,
)
from jobspaces._probe import RaceOp, RaceReport, race, race_in_processes

F = TypeVar("F", bound=Callable[..., Any])
MiB = 1 << 20
BAD_KEYS = ["../x", "/abs", "a//b", "", "a/./b", "a/", "a/../../b"]


def reads_only(fn: F) -> F:
    """Mark a test that never writes (it can pass on a store whose writes fail)."""
    fn.reads_only = True  # type: ignore[attr-defined]
    return fn


class JobspaceConformance:
    """Every operation and error of the Jobspace interface, and its races; subclasses give ``jobspace``."""

    etag_repeats: ClassVar[bool] = False
    """Whether rewriting equal bytes gives the same ETag again (S3: MD5 of the body; docs/stores.md)."""
    race_in_processes: ClassVar[bool] = False
    """Race with one OS process per racer (stores shared between processes on one host)."""
    race_rounds: ClassVar[int] = 3
    big_race: ClassVar[tuple[int, int, int]] = (32, 2, 6 * MiB)
    """Racers, rounds and body size of the large-body race, which opens the window of a check-then-write."""
    atomic: ClassVar[bool] = True
    """False for a store known not to be atomic under concurrency: the large-body race then xfails, with
    the counts, only when it really sees several winners."""
    known_failures: ClassVar[dict[str, str]] = {}
    """Test name -> why this store fails it (a strict xfail)."""
    writes_fail: ClassVar[str | None] = None
    """Why no write works on this store: every test that writes is a strict xfail."""

    @staticmethod
    def opened(url: str) -> Iterator[SyncJobspace]:
        """Open ``url`` for a test and close it afterwards."""
        js = SyncJobspace(open_jobspace(url))
        yield js
        js.close()

    @pytest.fixture
    def jobspace(self) -> Iterator[SyncJobspace]:
        """The backend under test, empty; each subclass overrides this fixture."""
        raise NotImplementedError
        yield  # pragma: no cover

    @pytest.fixture(autouse=True)
    def _known_failure(self, request: pytest.FixtureRequest) -> None:
        reason = self.known_failures.get(request.function.__name__)
        if reason is None and self.writes_fail and not getattr(request.function, "reads_only", False):
            reason = self.writes_fail
        if reason:
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True))

    # -- get / head / put / delete ------------------------------------------------------------------
    @reads_only
    def test_get_missing_raises_not_found(self, jobspace: SyncJobspace) -> None:
        with pytest.raises(NotFound):
            jobspace.get("missing/key")

    @reads_only
    def test_head_missing_raises_not_found(self, jobspace: SyncJobspace) -> None:
        with pytest.raises(NotFound):
            jobspace.head("missing")
        assert jobspace.exists("missing") is False

    def test_put_get_head_agree(self, jobspace: SyncJobspace) -> None:
        etag = jobspace.put("dir/obj.json", b'{"a": 1}')
        data, got = jobspace.get("dir/obj.json")
        meta = jobspace.head("dir/obj.json")
        assert data == b'{"a": 1}'
        assert got == etag == meta.etag
        assert meta.key == "dir/obj.json" and meta.size == 8
        assert abs(meta.mtime - time.time()) < 3600, "mtime is seconds since the epoch"

    def test_unconditional_put_overwrites(self, jobspace: SyncJobspace) -> None:
        first = jobspace.put("k", b"one")
        second = jobspace.put("k", b"two")
        assert first != second
        assert jobspace.get("k") == (b"two", second)

    def test_create_only_on_new_key(self, jobspace: SyncJobspace) -> None:
        etag = jobspace.put("new", b"x", if_absent=True)
        assert jobspace.get("new") == (b"x", etag)

    def test_create_existing_raises_precondition_failed(self, jobspace: SyncJobspace) -> None:
        etag = jobspace.put("k", b"first", if_absent=True)
        with pytest.raises(PreconditionFailed):
            jobspace.put("k", b"second", if_absent=True)
        assert jobspace.get("k") == (b"first", etag)

    def test_cas_on_current_etag_replaces(self, jobspace: SyncJobspace) -> None:
        etag = jobspace.put("k", b"v1", if_absent=True)
        new = jobspace.put("k", b"v2", if_match=etag)
        assert new != etag
        assert jobspace.get("k") == (b"v2", new)

    def test_stale_cas_raises_precondition_failed(self, jobspace: SyncJobspace) -> None:
        stale = jobspace.put("k", b"v1", if_absent=True)
        current = jobspace.put("k", b"v2", if_match=stale)
        with pytest.raises(PreconditionFailed):
            jobspace.put("k", b"v3", if_match=stale)
        assert jobspace.get("k") == (b"v2", current)

    def test_cas_on_missing_key_raises_precondition_failed(self, jobspace: SyncJobspace) -> None:
        etag = jobspace.put("other", b"v1")
        with pytest.raises(PreconditionFailed):
            jobspace.put("missing", b"v", if_match=etag)
        assert not jobspace.exists("missing")

    @reads_only
    def test_both_conditions_is_a_usage_error(self, jobspace: SyncJobspace) -> None:
        with pytest.raises(ValueError):
            jobspace.put("k", b"v", if_absent=True, if_match='"x"')

    def test_equal_bytes_rewritten(self, jobspace: SyncJobspace) -> None:
        """S3 ETags are content hashes (ABA on equal bytes); other stores give a new ETag every write."""
        first = jobspace.put("k", b"same bytes")
        second = jobspace.put("k", b"same bytes")
        assert (first == second) is self.etag_repeats, f"ETags {first} and {second}"
        if self.etag_repeats:  # the ABA case the protocol's nonces exist for
            jobspace.put("k", b"next", if_match=first)
        else:
            with pytest.raises(PreconditionFailed):
                jobspace.put("k", b"next", if_match=first)

    def test_empty_body(self, jobspace: SyncJobspace) -> None:
        etag = jobspace.put("empty", b"", if_absent=True)
        assert jobspace.get("empty") == (b"", etag)
        assert jobspace.head("empty").size == 0
        assert [(m.key, m.size) for m in jobspace.list("empty")] == [("empty", 0)]

    def test_ten_mib_body(self, jobspace: SyncJobspace) -> None:
        body = os.urandom(10 * MiB)
        etag = jobspace.put("big/blob", body, if_absent=True)
        data, got = jobspace.get("big/blob")
        assert data == body and got == etag
        assert jobspace.head("big/blob").size == len(body)

    def test_delete_is_idempotent(self, jobspace: SyncJobspace) -> None:
        jobspace.put("d/k", b"x")
        jobspace.delete("d/k")
        with pytest.raises(NotFound):
            jobspace.get("d/k")
        jobspace.delete("d/k")
        assert jobspace.list("d/") == []
        jobspace.put("d/k", b"again", if_absent=True)  # create after delete
        assert jobspace.get("d/k")[0] == b"again"

    @reads_only
    def test_delete_missing_is_not_an_error(self, jobspace: SyncJobspace) -> None:
        jobspace.delete("never/written")

    @reads_only
    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_invalid_keys_rejected(self, jobspace: SyncJobspace, key: str) -> None:
        for call in (lambda: jobspace.get(key), lambda: jobspace.head(key), lambda: jobspace.delete(key),
                     lambda: jobspace.put(key, b"x"), lambda: jobspace.put(key, b"x", if_absent=True)):
            with pytest.raises(InvalidKey):
                call()
        if key not in ("", "a/"):  # an empty prefix, or one ending in '/', is a valid listing prefix
            with pytest.raises(InvalidKey):
                jobspace.list(key)

    def test_unicode_keys(self, jobspace: SyncJobspace) -> None:
        keys = ["données/été.json", "日本語/キー", "emoji/🚀.txt", "space in/name x", "plus+sign/a=b"]
        for i, key in enumerate(keys):
            etag = jobspace.put(key, f"v{i}".encode(), if_absent=True)
            assert jobspace.get(key) == (f"v{i}".encode(), etag)
        assert [m.key for m in jobspace.list()] == sorted(keys)
        assert [m.key for m in jobspace.list("données/")] == ["données/été.json"]

    # -- listing ------------------------------------------------------------------------------------
    @reads_only
    def test_list_empty(self, jobspace: SyncJobspace) -> None:
        assert jobspace.list() == []
        assert jobspace.list("nothing/") == []

    def test_list_after_write_has_etag_and_size(self, jobspace: SyncJobspace) -> None:
        etags = {f"l/{i}": jobspace.put(f"l/{i}", b"x" * i) for i in range(5)}
        metas = jobspace.list("l/")
        assert [m.key for m in metas] == sorted(etags)
        assert {m.key: m.etag for m in metas} == etags
        assert [m.size for m in metas] == list(range(5))

    def test_prefixes_sharing_a_stem(self, jobspace: SyncJobspace) -> None:
        for key in ("a/b", "a/bc", "a/b0", "a/bd/x", "a/c", "ab", "b"):
            jobspace.put(key, key.encode())

        def keys(prefix: str) -> list[str]:
            return [m.key for m in jobspace.list(prefix)]

        assert keys("a/b") == ["a/b", "a/b0", "a/bc", "a/bd/x"]
        assert keys("a/bd/") == ["a/bd/x"]
        assert keys("a/bc") == ["a/bc"]
        assert keys("a/") == ["a/b", "a/b0", "a/bc", "a/bd/x", "a/c"]
        assert keys("a") == ["a/b", "a/b0", "a/bc", "a/bd/x", "a/c", "ab"]
        assert keys("ab") == ["ab"]
        assert keys("") == ["a/b", "a/b0", "a/bc", "a/bd/x", "a/c", "ab", "b"]

    def test_start_after_and_limit(self, jobspace: SyncJobspace) -> None:
        names = [f"s/{c}" for c in "abcdef"]
        for key in names:
            jobspace.put(key, b"x")

        def keys(**kw: Any) -> list[str]:
            return [m.key for m in jobspace.list("s/", **kw)]

        assert keys(start_after="s/c") == names[3:]
        assert keys(start_after="s/cc") == names[3:]  # not itself a key
        assert keys(start_after="s/") == names
        assert keys(start_after="s/f") == []
        assert keys(limit=2) == names[:2]
        assert keys(limit=0) == []
        assert keys(start_after="s/b", limit=3) == names[2:5]

    def test_pagination_over_a_thousand_keys(self, jobspace: SyncJobspace) -> None:
        keys = [f"page/k{i:05d}" for i in range(1050)]

        async def fill() -> None:
            gate = asyncio.Semaphore(32)

            async def one(key: str) -> None:
                async with gate:
                    await jobspace.aio.put(key, key.encode(), if_absent=True)

            await asyncio.gather(*(one(k) for k in keys + ["pag", "pagf", "pagd/x"]))

        run_sync(fill())

        def listed(**kw: Any) -> list[str]:
            return [m.key for m in jobspace.list("page/", **kw)]

        assert listed() == keys
        assert listed(start_after=keys[999]) == keys[1000:]
        assert listed(start_after=keys[998], limit=3) == keys[999:1002]  # across the 1,000-key page
        assert listed(limit=1001) == keys[:1001]
        assert listed(start_after="page/k00499", limit=600) == keys[500:]
        assert listed(start_after="page/k00999x") == keys[1000:]
        assert [m.key for m in jobspace.list("pag")][:3] == ["pag", "pagd/x", keys[0]]
        assert len(jobspace.list("pag")) == 1053

    # -- ambiguous writes: landed, but the answer was lost ------------------------------------------
    def test_ambiguous_create_that_landed_is_ours(self, jobspace: SyncJobspace) -> None:
        faulty = FaultyJobspace(jobspace.aio, Faults(landed_but_failed=1.0))
        etag = run_sync(faulty.put("lease", b"mine nonce=1", if_absent=True))
        assert faulty.faults.injected["landed_but_failed"] == 1
        assert jobspace.get("lease") == (b"mine nonce=1", etag)

    def test_ambiguous_cas_that_landed_is_ours(self, jobspace: SyncJobspace) -> None:
        old = jobspace.put("lease", b"v1 nonce=1", if_absent=True)
        faulty = FaultyJobspace(jobspace.aio, Faults(landed_but_failed=1.0))
        etag = run_sync(faulty.put("lease", b"v2 nonce=2", if_match=old))
        assert faulty.faults.injected["landed_but_failed"] == 1
        assert jobspace.get("lease") == (b"v2 nonce=2", etag)

    def test_ambiguous_create_lost_to_a_rival(self, jobspace: SyncJobspace) -> None:
        rival = _RivalFirst(jobspace.aio, b"rival nonce=9")
        with pytest.raises(PreconditionFailed):
            run_sync(rival.put("lease", b"mine nonce=1", if_absent=True))
        assert rival.ambiguous == 1
        assert jobspace.get("lease")[0] == b"rival nonce=9"

    def test_ambiguous_cas_lost_to_a_rival(self, jobspace: SyncJobspace) -> None:
        old = jobspace.put("lease", b"v1 nonce=1", if_absent=True)
        rival = _RivalFirst(jobspace.aio, b"rival nonce=9")
        with pytest.raises(PreconditionFailed):
            run_sync(rival.put("lease", b"mine nonce=2", if_match=old))
        assert rival.ambiguous == 1
        assert jobspace.get("lease")[0] == b"rival nonce=9"

    # -- races ----------------------------------------------------------------------------------------
    def _race(self, jobspace: SyncJobspace, prefix: str, op: RaceOp, racers: int, rounds: int,
              body_size: int = 64) -> RaceReport:
        if self.race_in_processes:
            return run_sync(race_in_processes(jobspace.aio, jobspace.url, prefix, op=op, racers=racers,
                                              rounds=rounds, body_size=body_size))
        return run_sync(race(jobspace.aio, prefix, op=op, racers=racers, rounds=rounds, body_size=body_size))

    @pytest.mark.parametrize("op", ["create", "cas"])
    def test_race_32_writers_exactly_one_wins(self, jobspace: SyncJobspace, op: RaceOp) -> None:
        report = self._race(jobspace, "race", op, 32, self.race_rounds)
        print(report.summary())
        assert report.ok, report.summary()
        assert report.losers + sum(report.errors.values()) == 31 * report.rounds

    @pytest.mark.parametrize("op", ["create", "cas"])
    def test_race_large_bodies(self, jobspace: SyncJobspace, op: RaceOp) -> None:
        """Large bodies widen a check-then-write window (moto's TOCTOU); the checker must see it."""
        racers, rounds, size = self.big_race
        report = self._race(jobspace, "bigrace", op, racers, rounds, size)
        print(report.summary())
        if not self.atomic and report.multi_winner_rounds:
            pytest.xfail(f"{type(self).__name__[4:]} is not atomic under concurrency: {report.summary()}")
        assert report.ok, report.summary()


class _RivalFirst(FaultyJobspace):
    """On the first write, a rival's write lands instead of ours and our answer is lost (ambiguous)."""

    def __init__(self, inner: Jobspace, rival_body: bytes) -> None:
        super().__init__(inner, Faults())
        self.rival_body = rival_body
        self.ambiguous = 0

    async def _put(self, key: str, data: bytes, *, if_absent: bool, if_match: str | None) -> str:
        if self.ambiguous == 0:
            self.ambiguous += 1
            await self.inner._put(key, self.rival_body, if_absent=if_absent, if_match=if_match)
            raise AmbiguousWrite("injected: a rival's write landed, ours timed out", key=key)
        return await self.inner._put(key, data, if_absent=if_absent, if_match=if_match)
