"""gs://: URL keys, credentials, and how GCS's JSON API answers map to jobspace errors.

The whole interface is proven on fake-gcs-server by the conformance suite; these tests give the answers an
emulator never gives (401/403, 429, a 503 after the write landed) from a small stub server in process.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from jobspaces import AccessDenied, InvalidURL, PreconditionFailed, Timing, open_jobspace
from jobspaces._gcs import GCS_ENDPOINT, GcsJobspace, GoogleAuth, NoAuth

FAST = Timing(request_timeout=2.0, budget=5.0, max_attempts=4)


class Secret:
    """A token source whose token must never show up in an error."""

    token_value = "ya29.secret-token-value"

    async def token(self) -> str | None:
        return self.token_value


class StubGcs:
    """A one-bucket GCS JSON API in memory; ``script`` answers chosen requests first (method, status)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, int]] = {}
        self.generation = 1000
        self.script: list[tuple[str, int, bool]] = []
        """(method, status, apply_first): answer the next such request so; apply_first: do it, then fail."""
        self.seen: list[tuple[str, str, str | None]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path_qs, request.headers.get("Authorization")))
        for i, (method, status, apply_first) in enumerate(self.script):
            if method == request.method:
                del self.script[i]
                if apply_first:
                    await self.serve(request)
                return web.json_response({"error": {"code": status, "message": f"scripted {status}"}}, status=status)
        return await self.serve(request)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            reader = await request.multipart()
            meta = json.loads(await (await reader.next()).read())  # type: ignore[union-attr]
            data = bytes(await (await reader.next()).read())  # type: ignore[union-attr]
            name, match = meta["name"], request.query.get("ifGenerationMatch")
            current = self.objects.get(name, (b"", 0))[1]
            if match is not None and int(match) != current:
                return web.json_response({"error": {"code": 412, "message": "Precondition failed"}}, status=412)
            self.generation += 1
            self.objects[name] = (data, self.generation)
            return web.json_response({"name": name, "generation": str(self.generation), "size": str(len(data))})
        name = request.match_info["name"]
        if name not in self.objects:
            return web.json_response({"error": {"code": 404, "message": "No such object"}}, status=404)
        data, generation = self.objects[name]
        if request.query.get("alt") == "media":
            return web.Response(body=data, headers={"X-Goog-Generation": str(generation)})
        return web.json_response({"name": name, "generation": str(generation), "size": str(len(data)),
                                  "updated": "2026-12-04T15:00:00.000Z"})


def with_stub(test: Callable[[GcsJobspace, StubGcs], Awaitable[None]], auth: Any = None) -> StubGcs:
    stub = StubGcs()

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/upload/storage/v1/b/bkt/o", stub.handle)
        app.router.add_route("*", "/storage/v1/b/bkt/o/{name}", stub.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        js = GcsJobspace("bkt", "pre", endpoint=f"http://127.0.0.1:{port}", auth=auth or NoAuth(), timing=FAST)
        try:
            await test(js, stub)
        finally:
            await js.close()
            await runner.cleanup()

    asyncio.run(main())
    return stub


def test_token_is_sent_as_bearer_and_never_shown_in_an_error() -> None:
    async def test(js: GcsJobspace, stub: StubGcs) -> None:
        stub.script.append(("GET", 403, False))
        with pytest.raises(AccessDenied) as info:
            await js.head("k")
        text = str(info.value)
        assert Secret.token_value not in text
        assert "GOOGLE_APPLICATION_CREDENTIALS" in text and "403" in text

    stub = with_stub(test, Secret())
    assert stub.seen[0][2] == f"Bearer {Secret.token_value}"


def test_throttled_429_is_retried() -> None:
    async def test(js: GcsJobspace, stub: StubGcs) -> None:
        etag = await js.put("k", b"v", if_absent=True)
        stub.script.append(("GET", 429, False))
        assert (await js.head("k")).etag == etag

    stub = with_stub(test)
    assert [m for m, _, _ in stub.seen] == ["POST", "GET", "GET"]


def test_create_that_landed_before_a_503_is_ours_after_the_retry_gets_412() -> None:
    """The retried create is refused (the first one landed); reading back shows it is our body."""
    async def test(js: GcsJobspace, stub: StubGcs) -> None:
        stub.script.append(("POST", 503, True))
        etag = await js.put("lease", b"mine nonce=1", if_absent=True)
        assert await js.get("lease") == (b"mine nonce=1", etag)

    stub = with_stub(test)
    assert [m for m, _, _ in stub.seen][:2] == ["POST", "POST"]


def test_create_lost_to_a_rival_after_a_503_stays_lost() -> None:
    async def test(js: GcsJobspace, stub: StubGcs) -> None:
        await js.put("lease", b"rival nonce=9", if_absent=True)
        stub.script.append(("POST", 503, False))
        with pytest.raises(PreconditionFailed):
            await js.put("lease", b"mine nonce=1", if_absent=True)
        assert (await js.get("lease"))[0] == b"rival nonce=9"

    with_stub(test)


def test_if_match_that_is_no_generation_loses_without_a_request() -> None:
    async def test(js: GcsJobspace, stub: StubGcs) -> None:
        with pytest.raises(PreconditionFailed):
            await js.put("k", b"v", if_match='"d41d8cd98f00b204e9800998ecf8427e"')
        assert stub.seen == []

    with_stub(test)


def test_url_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    real = open_jobspace("gs://bkt/a/b")
    assert isinstance(real, GcsJobspace) and real.endpoint == GCS_ENDPOINT and isinstance(real._auth, GoogleAuth)
    assert real.url == "gs://bkt/a/b" and real.root == "a/b/" and real.min_write_interval == 1.0
    emulated = open_jobspace("gs://bkt?endpoint=http://127.0.0.1:4443")
    assert isinstance(emulated, GcsJobspace) and isinstance(emulated._auth, NoAuth) and emulated.url == "gs://bkt?endpoint=http://127.0.0.1:4443"  # options travel with the URL, as on s3://
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")
    env = open_jobspace("gs://bkt/p")
    assert isinstance(env, GcsJobspace) and env.endpoint == "http://127.0.0.1:4443" and isinstance(env._auth, NoAuth)
    with pytest.raises(InvalidURL, match="unknown URL keys"):
        open_jobspace("gs://bkt/p?region=x")
    with pytest.raises(InvalidURL, match="auth must be"):
        open_jobspace("gs://bkt/p?auth=maybe")
    with pytest.raises(InvalidURL, match="no bucket"):
        open_jobspace("gs:///p")


def test_google_credentials_need_google_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google", None)  # as if google-auth were not installed
    with pytest.raises(AccessDenied, match=r"pip install 'qubits\[gcs\]'"):
        asyncio.run(GoogleAuth().token())


def test_missing_google_credentials_say_what_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def nothing_found(**kwargs: Any) -> Any:
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", nothing_found)
    with pytest.raises(AccessDenied, match="GOOGLE_APPLICATION_CREDENTIALS") as info:
        asyncio.run(GoogleAuth().token())
    assert len(str(info.value).splitlines()) == 1
    key = tmp_path / "key.json"
    key.write_text('{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----SECRET"}')
    with pytest.raises(AccessDenied, match="key.json") as info:
        asyncio.run(GoogleAuth(str(key)).token())
    assert "SECRET" not in str(info.value)


def test_google_credentials_are_refreshed_only_when_expired() -> None:
    class Credentials:
        def __init__(self) -> None:
            self.valid = False
            self.token: str | None = None
            self.refreshed = 0

        def refresh(self, request: Any) -> None:
            self.refreshed += 1
            self.token, self.valid = f"token-{self.refreshed}", True

    creds = Credentials()
    auth = GoogleAuth(credentials=creds)

    async def main() -> list[str | None]:
        return [await auth.token(), await auth.token()]

    assert asyncio.run(main()) == ["token-1", "token-1"] and creds.refreshed == 1
