"""An HTTP proxy in front of a test server that answers chosen requests itself, for store answers that no
server here gives: S3's 409 ConditionalRequestConflict, R2's 429 on a key written too often, the random
ETags and unordered listings of S3 Express directory buckets.

    with HttpFaults(moto.endpoint) as proxy:              # listens on 127.0.0.1, a free port
        proxy.answer("PUT", 409, S3_CONFLICT, times=1)    # the next PUT gets 409; later ones pass through
        proxy.before = hook        # may change a request's headers, or answer it: (status, body) or None
        proxy.rewrite = express_etags                      # or change every answer on its way back
        url = f"s3://bucket/p?endpoint={proxy.endpoint}"

``seen`` lists (method, path and query, status answered) for every request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp import web

S3_CONFLICT = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ConditionalRequestConflict</Code><Message>A conflicting '
    "conditional operation is currently in progress against this resource. Please try again.</Message></Error>"
)
"""The body real S3 sends with a 409 on a racing conditional PUT (S3 API reference, PutObject errors)."""
SLOW_DOWN_R2 = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code><Message>Reduce your concurrent '
    "request rate for the same object.</Message></Error>"
)


@dataclass
class Canned:
    """An answer given instead of forwarding, to the next ``times`` requests of ``method`` (and ``when``)."""

    method: str
    status: int
    body: str
    times: int
    when: Callable[[web.Request], bool] | None = None


Rewrite = Callable[[web.Request, int, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]
Before = Callable[[web.Request, dict[str, str]], "tuple[int, str] | None"]


class HttpFaults:
    """A forwarding HTTP proxy on its own thread and event loop."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.canned: list[Canned] = []
        self.rewrite: Rewrite | None = None
        self.before: Before | None = None
        self.seen: list[tuple[str, str, int]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="http-faults", daemon=True)
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, method: str, status: int, body: str, *, times: int = 1,
               when: Callable[[web.Request], bool] | None = None) -> None:
        """Answer the next ``times`` matching requests with ``status`` and ``body`` (nothing is forwarded)."""
        self.canned.append(Canned(method, status, body, times, when))

    def start(self) -> HttpFaults:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        self._client = aiohttp.ClientSession(auto_decompress=False)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        for canned in self.canned:
            if canned.method == request.method and canned.times > 0 and (canned.when is None or canned.when(request)):
                canned.times -= 1
                await request.read()
                self.seen.append((request.method, request.path_qs, canned.status))
                return web.Response(status=canned.status, text=canned.body, content_type="application/xml")
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        answer = self.before(request, headers) if self.before is not None else None
        if answer is not None:
            self.seen.append((request.method, request.path_qs, answer[0]))
            return web.Response(status=answer[0], text=answer[1], content_type="application/xml")
        assert self._client is not None
        async with self._client.request(request.method, self.upstream + request.path_qs, data=body,
                                        headers=headers) as up:
            status, got, data = up.status, dict(up.headers), await up.read()
        for name in ("Transfer-Encoding", "Connection", *(() if request.method == "HEAD" else ("Content-Length",))):
            got.pop(name, None)  # a HEAD answer keeps the object's length; others get their body's
        if self.rewrite is not None:
            status, got, data = self.rewrite(request, status, got, data)
        self.seen.append((request.method, request.path_qs, status))
        return web.Response(status=status, headers=got, body=data)

    def stop(self) -> None:
        async def close() -> None:
            if self._client is not None:
                await self._client.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> HttpFaults:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
