"""Telling people that a batch (or one of its jobs) finished or failed: a webhook and Matrix.

- Webhook: an HTTP POST of a JSON object (``event``, ``namespace``, ``batch``, ``job``, ``counts``,
  ``failed``, ``text`` …) to each URL of ``meta.notify.webhook``.
- Matrix: ``PUT {homeserver}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}`` with an
  ``m.text`` message, authorised by the access token in the sending agent's environment
  (``QUBITS_MATRIX_TOKEN``; never in the batch file or the jobspace). The homeserver is the room
  entry's ``homeserver``, else ``QUBITS_MATRIX_HOMESERVER``, else ``https://`` + the room's server. The
  transaction id is derived from the event, so a retried PUT is not shown twice.

Each delivery is retried with exponential backoff (tenacity) on connection errors, timeouts, 429 and
5xx; other 4xx answers are not retried (the request itself is wrong). Who sends, and that it happens
once per event, is decided by the caller with a create-only marker object (see ``nodeagent._batch``).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit

import tenacity

from .. import _layout as layout

log = logging.getLogger("qubits.notify")

TIMEOUT = 10.0
"""Seconds one HTTP request may take."""
ATTEMPTS = 5
"""Attempts per delivery (QUBITS_NOTIFY_ATTEMPTS overrides)."""


class DeliveryError(Exception):
    """A notification could not be delivered."""

    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def where(url: str) -> str:
    """A URL for logs and errors: scheme, host and port only (paths of webhooks are often secrets)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"


def _request(method: str, url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> int:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", "User-Agent": "qubits", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310 - http(s) checked at load
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        retry = exc.code == 429 or exc.code >= 500
        raise DeliveryError(f"{method} {where(url)} answered {exc.code}", retry) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{method} {where(url)} failed: {reason}", True) from None


def _retrying(attempts: int | None = None) -> tenacity.Retrying:
    n = attempts or int(os.environ.get("QUBITS_NOTIFY_ATTEMPTS", ATTEMPTS))
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, n)),
        wait=tenacity.wait_exponential(multiplier=0.5, max=10.0) + tenacity.wait_random(0, 0.5),
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, DeliveryError) and e.retry),
        reraise=True,
    )


def send_webhook(url: str, payload: dict[str, Any], *, attempts: int | None = None) -> None:
    """POST ``payload`` as JSON to ``url``, retrying transient failures; DeliveryError if it cannot."""
    for attempt in _retrying(attempts):
        with attempt:
            _request("POST", url, payload)


def matrix_homeserver(room: str, homeserver: str | None) -> str:
    """The homeserver to send a room's messages through."""
    if homeserver:
        return homeserver.rstrip("/")
    env = os.environ.get("QUBITS_MATRIX_HOMESERVER")
    if env:
        return env.rstrip("/")
    return "https://" + room.split(":", 1)[1]


def send_matrix(room: str, text: str, txn: str, *, homeserver: str | None = None, token: str | None = None, attempts: int | None = None) -> None:
    """Send ``text`` to a Matrix room through the client-server API; DeliveryError if it cannot."""
    token = token or os.environ.get("QUBITS_MATRIX_TOKEN")
    if not token:
        raise DeliveryError("no Matrix access token: set QUBITS_MATRIX_TOKEN in the agents' environment", False)
    base = matrix_homeserver(room, homeserver)
    url = f"{base}/_matrix/client/v3/rooms/{quote(room, safe='')}/send/m.room.message/{quote(txn, safe='')}"
    for attempt in _retrying(attempts):
        with attempt:
            _request("PUT", url, {"msgtype": "m.text", "body": text}, {"Authorization": f"Bearer {token}"})


def deliver(targets: list[dict[str, Any]], event: dict[str, Any], txn: str) -> list[str]:
    """Send ``event`` to every target (``{"kind": "webhook", "url"}`` or ``{"kind": "matrix", "room",
    "homeserver"}``); returns the errors (empty: all delivered). Never raises."""
    errors = []
    for target in targets:
        try:
            if target.get("kind") == "webhook":
                send_webhook(str(target["url"]), event)
            elif target.get("kind") == "matrix":
                send_matrix(str(target["room"]), str(event["text"]), txn, homeserver=target.get("homeserver"))
            else:
                continue
            log.info("notified %s", target.get("kind"), extra={"action": "notify", "job": event.get("job"), "reason": event.get("event")})
        except DeliveryError as exc:
            errors.append(str(exc))
            log.error("notification not delivered: %s", exc, extra={"action": "notify", "job": event.get("job"), "reason": event.get("event")})
    return errors


def batch_event(cfg: dict[str, Any], job: str, counts: dict[str, int], failed: list[str]) -> dict[str, Any]:
    """The message for a finished batch."""
    ok = not failed and counts.get("succeeded", 0) == sum(counts.values())
    parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()) if v)
    text = f"qubits: batch {cfg['namespace']}/{cfg['batch']} {'finished' if ok else 'finished with failures'}: {parts}"
    if failed:
        shown = ", ".join(failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
        text += f" (failed: {shown})"
    text += f" [job {job}]"
    return {
        "event": "batch.finished" if ok else "batch.failed", "namespace": cfg["namespace"], "batch": cfg["batch"],
        "job": job, "counts": counts, "failed": failed, "archive": layout.archive_prefix(cfg["namespace"], cfg["batch"]), "text": text,
    }


def job_event(cfg: dict[str, Any], job: str, name: str, outcome: str, node: str, attempt: int, error: str | None) -> dict[str, Any]:
    """The message for one finished job of a batch."""
    text = f"qubits: job {name} of batch {cfg['namespace']}/{cfg['batch']} {outcome} on {node} (attempt {attempt})"
    if error:
        text += f": {error}"
    return {
        "event": f"job.{outcome}", "namespace": cfg["namespace"], "batch": cfg["batch"], "job": job, "name": name,
        "outcome": outcome, "node": node, "attempt": attempt, "error": error, "text": text,
        "archive": f"{layout.archive_prefix(cfg['namespace'], cfg['batch'])}{name}/",
    }
