"""`qubits dashboard`: serve the live web view of a jobspace (see ``qubits.dashboard``)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.text import Text

from qubits import connect
from qubits._defaults import DASHBOARD_INTERVAL, DASHBOARD_PORT
from qubits.errors import UsageError

from . import EXIT_FAILED, EXIT_OK, add_jobspace_option, env_default
from ._common import console, require_jobspace


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        from qubits import dashboard
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in ("starlette", "uvicorn", "anyio"):
            console.print(Text.assemble(("error:", "bold red"), " the dashboard needs its extra: pip install 'qubits[dashboard]'"))
            return EXIT_FAILED
        raise
    if args.interval <= 0:
        raise UsageError("--interval must be more than 0 seconds")
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be between 0 (any free port) and 65535")
    url = require_jobspace(args)
    token = args.token or None  # on loopback a token is optional, and checked when given
    if token is None and dashboard.needs_token(args.bind):
        token = dashboard.new_token()
    try:
        sock = dashboard.listen(args.bind, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.bind}:{args.port} ({exc.strerror}): pick another --port or --bind") from None
    client = connect(url)
    app, hub = dashboard.create_app(client, bind=args.bind, token=token, interval=args.interval)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    where = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    console.print(f"dashboard of {dashboard.public_url(url)} at {where}", soft_wrap=True, highlight=False)
    if token and args.token is None:
        console.print("(bound off loopback: a token was generated; pass --token or QUBITS_DASHBOARD_TOKEN to choose it)")
    console.print("Ctrl-C to stop", style="dim")
    try:
        dashboard.serve(app, hub, sock)
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl-C is how a dashboard is stopped
    finally:
        client.close()
    return EXIT_OK


def register(sub: Any) -> None:
    """Add the ``dashboard`` verb."""
    p: argparse.ArgumentParser = sub.add_parser(
        "dashboard", help="a live web view of the jobspace: jobs, tasks, logs, DAG, timeline, nodes",
        description="Serve a live web view of the jobspace (read from the store; one shared poller for all "
                    "open tabs). Bound to 127.0.0.1 by default; any other address needs a token.")
    add_jobspace_option(p)
    p.add_argument("--port", type=int, default=DASHBOARD_PORT, help="port to listen on (0: any free one)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (not 127.0.0.1, ::1 or localhost: a token is required)")
    p.add_argument("--token", default=env_default("QUBITS_DASHBOARD_TOKEN"),
                   help="the token every request must carry (generated when bound off loopback and not given) (env QUBITS_DASHBOARD_TOKEN)")
    p.add_argument("--interval", type=float, default=DASHBOARD_INTERVAL, help="seconds between two reads of the jobspace")
    p.set_defaults(func=cmd_dashboard)
