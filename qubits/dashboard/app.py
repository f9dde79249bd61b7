"""The dashboard's web app (Starlette): pages, one event stream, and the actions.

Pages are one static shell (``static/page.html``) and a small script (``static/dashboard.js``) that
subscribes to the topics the page shows (``/events?topic=…``, server-sent events) and draws what
arrives; no build step, nothing fetched from elsewhere, so it works offline. Actions are POSTs to
``/api/jobs/ID/cancel`` and ``/api/jobs/ID/retry`` (see ``_security`` for what guards them).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import socket
import string
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._client import Client, JobStatus
from .._defaults import DASHBOARD_INTERVAL
from ..errors import NotFoundError
from ._hub import Hub, stream
from ._read import Tick, check_job, make_reader, public_url
from ._security import ASGIApp, Guard

_ID = re.compile(r"^[A-Za-z0-9._@:+=-]{1,200}$")
"""What a job or task id in a URL may look like (ids travel into topic names)."""

PAGES = {"jobs": "Jobs", "tasks": "Tasks", "log": "Log", "dag": "DAG", "timeline": "Timeline", "nodes": "Nodes"}


def _static() -> Any:
    return resources.files("qubits.dashboard") / "static"


def _shell() -> string.Template:
    return string.Template((_static() / "page.html").read_text(encoding="utf-8"))


def create_app(client: Client, *, bind: str = "127.0.0.1", token: str | None = None,
               interval: float = DASHBOARD_INTERVAL) -> tuple[ASGIApp, Hub]:
    """The dashboard over ``client``'s jobspace (guarded for ``bind``; ``token`` required when given),
    and its hub (the one poller)."""
    finished: dict[tuple[str, bool], JobStatus] = {}
    starts: dict[tuple[str, str, int], float] = {}
    hub = Hub(lambda topic: make_reader(client, topic), lambda: Tick(client, finished, starts), interval=interval)
    shell = _shell()
    where = public_url(client.url)

    def page(kind: str) -> Callable[[Request], Any]:
        async def render(request: Request) -> Response:
            values = {k: request.path_params.get(k, "") for k in ("job", "task")}
            if any(v and not _ID.match(v) for v in values.values()):
                return PlainTextResponse("no such job or task\n", status_code=404)
            title = " · ".join(x for x in (PAGES[kind], values["job"], values["task"]) if x)
            body = shell.substitute(title=html.escape(title), page=kind, job=html.escape(values["job"]),
                                    task=html.escape(values["task"]), where=html.escape(where))
            return HTMLResponse(body, headers={"cache-control": "no-store"})

        return render

    async def events(request: Request) -> Response:
        names = request.query_params.getlist("topic")
        if not names:
            return PlainTextResponse("name at least one topic: /events?topic=jobs\n", status_code=400)
        try:
            queue = hub.subscribe(names)
        except ValueError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=404)
        return StreamingResponse(stream(hub, queue), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def cancel(request: Request) -> Response:
        job = request.path_params["job"]

        def act() -> dict[str, Any]:
            check_job(client, job)
            return {"job": job, "decided": client.job(job).cancel()}

        return await _action(hub, act)

    async def retry(request: Request) -> Response:
        job = request.path_params["job"]

        def act() -> dict[str, Any]:
            check_job(client, job)
            return {"job": job, "new_job": client.job(job).retry().id}

        return await _action(hub, act)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        poller = asyncio.create_task(hub.run())
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    routes = [
        Route("/", page("jobs")),
        Route("/nodes", page("nodes")),
        Route("/jobs/{job}", page("tasks")),
        Route("/jobs/{job}/dag", page("dag")),
        Route("/jobs/{job}/timeline", page("timeline")),
        Route("/jobs/{job}/tasks/{task}/log", page("log")),
        Route("/events", events),
        Route("/api/jobs/{job}/cancel", cancel, methods=["POST"]),
        Route("/api/jobs/{job}/retry", retry, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(_static())), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return Guard(app, bind=bind, token=token), hub


async def _action(hub: Hub, act: Callable[[], dict[str, Any]]) -> Response:
    try:
        result = await anyio.to_thread.run_sync(act)
    except NotFoundError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    hub.poke()
    return JSONResponse(result)


def listen(bind: str, port: int) -> socket.socket:
    """A listening socket on ``bind``:``port`` (port 0: any free one); OSError if it is taken."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind, port))
    sock.listen(128)
    return sock


def server(app: ASGIApp, hub: Hub) -> Any:
    """A uvicorn server for ``app`` that ends the open event streams when it stops (else it would wait
    for them: a stream never ends by itself)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            hub.close()
            await super().shutdown(sockets)

    return Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))


def serve(app: ASGIApp, hub: Hub, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until interrupted (Ctrl-C, SIGTERM)."""
    server(app, hub).run(sockets=[sock])
