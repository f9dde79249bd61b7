"""`qubits dashboard`: a live web view of one jobspace: jobs, tasks, logs, the DAG, the timeline, nodes.

It keeps no state of its own (the store is the truth) and reads the jobspace through the client API,
once per interval whatever the number of open tabs (``_hub``). It needs the ``dashboard`` extra
(Starlette and uvicorn): ``pip install 'qubits[dashboard]'``.
"""

from __future__ import annotations

from ._hub import Hub
from ._read import public_url
from ._security import LOOPBACK_BINDS, needs_token, new_token
from .app import create_app, listen, serve, server

__all__ = ["Hub", "LOOPBACK_BINDS", "create_app", "listen", "needs_token", "new_token", "public_url", "serve", "server"]
