"""S3 answers that moto never gives, injected by an HTTP proxy in front of a moto server process: the 409
ConditionalRequestConflict of a racing conditional write, R2's 429 on a key written too often, and the
shape of an S3 Express directory bucket (random ETags, listings out of key order, no start-after).
"""

from __future__ import annotations

import html
import random
import re
import string
from collections.abc import Iterator

import pytest
from aiohttp import web

from jobspaces import AmbiguousWrite, PreconditionFailed, SyncJobspace, Timing, TransientError, open_jobspace
from jobspaces.testing.servers import MotoServer, _http
from tests.conftest import unique
from tests.httpfaults import S3_CONFLICT, SLOW_DOWN_R2, HttpFaults

pytestmark = pytest.mark.s3
FAST = Timing(request_timeout=5.0, budget=3.0, max_attempts=6)
PRECONDITION = "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>"


@pytest.fixture
def proxy(moto_process: MotoServer) -> Iterator[HttpFaults]:
    with HttpFaults(moto_process.endpoint) as faults:
        yield faults


def opened(url: str) -> Iterator[SyncJobspace]:
    js = SyncJobspace(open_jobspace(url, timing=FAST))
    yield js
    js.close()


@pytest.fixture
def s3(moto_process: MotoServer, proxy: HttpFaults) -> Iterator[SyncJobspace]:
    bucket = unique("b")
    moto_process.create_bucket(bucket)
    yield from opened(f"s3://{bucket}/p?endpoint={proxy.endpoint}")


def puts(proxy: HttpFaults) -> list[int]:
    return [status for method, _, status in proxy.seen if method == "PUT"]


# -- 409 ConditionalRequestConflict: retried, never a lost race --------------------------------------------


def test_409_on_create_is_retried(s3: SyncJobspace, proxy: HttpFaults) -> None:
    proxy.answer("PUT", 409, S3_CONFLICT)
    etag = s3.put("lease", b"mine nonce=1", if_absent=True)
    assert s3.get("lease") == (b"mine nonce=1", etag)
    assert puts(proxy) == [409, 200]


def test_409_on_cas_is_retried_not_a_lost_lease(s3: SyncJobspace, proxy: HttpFaults) -> None:
    """S3: "On a 409 failure you should fetch the object's ETag and retry the upload" (PutObject, If-Match)."""
    old = s3.put("lease", b"v1 nonce=1", if_absent=True)
    proxy.answer("PUT", 409, S3_CONFLICT)
    new = s3.put("lease", b"v2 nonce=2", if_match=old)
    assert s3.get("lease") == (b"v2 nonce=2", new)
    assert puts(proxy) == [200, 409, 200]


def test_409_while_a_rival_moved_the_etag_is_lost(s3: SyncJobspace, proxy: HttpFaults,
                                                  moto_process: MotoServer) -> None:
    """The conflict was a rival's write landing: the retry names a stale ETag and loses (412)."""
    old = s3.put("lease", b"v1 nonce=1", if_absent=True)
    bucket = s3.url.split("/")[2]

    def rival_lands(request: web.Request) -> bool:
        moto_process.client().put_object(Bucket=bucket, Key="p/lease", Body=b"rival nonce=9")
        return True

    proxy.answer("PUT", 409, S3_CONFLICT, when=rival_lands)
    with pytest.raises(PreconditionFailed):
        s3.put("lease", b"mine nonce=2", if_match=old)
    assert s3.get("lease")[0] == b"rival nonce=9"
    assert puts(proxy) == [200, 409, 412]


def test_409_on_overwrite_is_retried(s3: SyncJobspace, proxy: HttpFaults) -> None:
    s3.put("k", b"one")
    proxy.answer("PUT", 409, S3_CONFLICT)
    etag = s3.put("k", b"two")
    assert s3.get("k") == (b"two", etag)


def test_409_that_never_ends_is_transient_not_lost(s3: SyncJobspace, proxy: HttpFaults) -> None:
    old = s3.put("lease", b"v1 nonce=1", if_absent=True)
    proxy.answer("PUT", 409, S3_CONFLICT, times=1000)
    with pytest.raises(TransientError) as info:
        s3.put("lease", b"v2 nonce=2", if_match=old)
    assert not isinstance(info.value, (AmbiguousWrite, PreconditionFailed))
    assert len(puts(proxy)) > 2, "retried"


# -- R2: 429 on a key written too often -------------------------------------------------------------------


def test_r2_429_is_retried_and_not_ambiguous(moto_process: MotoServer, proxy: HttpFaults) -> None:
    bucket = unique("b")
    moto_process.create_bucket(bucket)
    url = f"s3://{bucket}/p?profile=r2&endpoint={proxy.endpoint}"
    for js in opened(url):
        assert js.aio.min_write_interval == 1.0, "R2 allows one write per second per key"
        proxy.answer("PUT", 429, SLOW_DOWN_R2)
        etag = js.put("lease", b"mine nonce=1", if_absent=True)
        assert js.get("lease") == (b"mine nonce=1", etag)
    methods = [(m, s) for m, _, s in proxy.seen]
    assert methods[:2] == [("PUT", 429), ("PUT", 200)], methods


# -- S3 Express: moto dressed as a directory bucket --------------------------------------------------------


class ExpressShape:
    """Random ETags, new on every write (not the MD5); listings out of key order; start-after refused."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.current: dict[str, tuple[str, str]] = {}
        """key -> (the ETag we showed, moto's MD5 ETag)."""

    @staticmethod
    def random_etag() -> str:
        return '"' + "".join(random.choices(string.ascii_letters + string.digits, k=32)) + '"'

    def key(self, request: web.Request) -> str:
        return request.path.removeprefix(f"/{self.bucket}/")

    def before(self, request: web.Request, headers: dict[str, str]) -> tuple[int, str] | None:
        if request.method == "GET" and "list-type" in request.query and "start-after" in request.query:
            return 400, ("<Error><Code>InvalidArgument</Code><Message>StartAfter is not supported for "
                         "directory buckets</Message></Error>")
        if request.method == "PUT" and "If-Match" in headers:
            shown = self.current.get(self.key(request))
            if shown is None or shown[0] != headers["If-Match"]:
                return 412, PRECONDITION
            headers["If-Match"] = shown[1]
        return None

    def rewrite(self, request: web.Request, status: int, headers: dict[str, str], body: bytes
                ) -> tuple[int, dict[str, str], bytes]:
        name = next((k for k in headers if k.lower() == "etag"), None)
        if request.method == "PUT" and status == 200 and name:
            shown = self.random_etag()
            self.current[self.key(request)] = (shown, headers[name])
            headers[name] = shown
        elif request.method in ("GET", "HEAD") and name and self.key(request) in self.current:
            headers[name] = self.current[self.key(request)][0]
        elif request.method == "GET" and "list-type" in request.query:
            text = body.decode()
            blocks = re.findall(r"<Contents>.*?</Contents>", text, flags=re.S)

            def shown(block: str) -> str:
                key = html.unescape(re.search(r"<Key>(.*?)</Key>", block, flags=re.S).group(1))  # type: ignore[union-attr]
                etag = html.escape(self.current[key][0]) if key in self.current else None
                return re.sub(r"<ETag>.*?</ETag>", f"<ETag>{etag}</ETag>", block) if etag else block

            if blocks:
                head, tail = text[: text.index(blocks[0])], text[text.rindex(blocks[-1]) + len(blocks[-1]):]
                text = head + "".join(shown(b) for b in reversed(blocks)) + tail
            body = text.encode()
        return status, headers, body


@pytest.fixture
def express(moto_process: MotoServer, proxy: HttpFaults) -> Iterator[SyncJobspace]:
    bucket = f"{unique('qx')}--use1-az4--x-s3"
    # Not with boto3: for a --x-s3 name it first asks for an Express session, which moto lacks.
    status, answer = _http("PUT", f"{moto_process.endpoint}/{bucket}")
    assert status == 200, answer
    shape = ExpressShape(bucket)
    proxy.before, proxy.rewrite = shape.before, shape.rewrite
    # s3_express=false: moto has no CreateSession; the zonal endpoint is the proxy's.
    yield from opened(f"s3://{bucket}/p?endpoint={proxy.endpoint}&s3_express=false")


def test_express_etags_are_new_on_every_write(express: SyncJobspace) -> None:
    first = express.put("k", b"same bytes")
    second = express.put("k", b"same bytes")
    assert first != second and not re.fullmatch(r'"[0-9a-f]{32}"', first), "random, not an MD5"
    with pytest.raises(PreconditionFailed):
        express.put("k", b"next", if_match=first)
    third = express.put("k", b"next", if_match=second)
    assert express.get("k") == (b"next", third) and express.head("k").etag == third
    assert {m.key: m.etag for m in express.list("k")} == {"k": third}


def test_express_listing_is_sorted_here_without_start_after(express: SyncJobspace, proxy: HttpFaults) -> None:
    names = [f"s/{c}" for c in "abcdef"]
    for key in names:
        express.put(key, b"x", if_absent=True)
    assert [m.key for m in express.list("s/")] == names
    assert [m.key for m in express.list("s/", start_after="s/b", limit=3)] == names[2:5]
    assert [m.key for m in express.list("s/", start_after="s/cc")] == names[3:]
    lists = [q for m, q, _ in proxy.seen if m == "GET" and "list-type" in q]
    assert lists and not any("start-after" in q for q in lists)
    assert express.aio.profile is not None and express.aio.profile.name == "express"  # type: ignore[attr-defined]
