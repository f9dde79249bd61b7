"""A jobspace on Google Cloud Storage through its JSON API, with generation preconditions.

    create-only   POST upload/storage/v1/b/B/o?uploadType=multipart&ifGenerationMatch=0
    swap          POST upload/storage/v1/b/B/o?uploadType=multipart&ifGenerationMatch=G
    read          GET  storage/v1/b/B/o/NAME?alt=media          (the generation in X-Goog-Generation)
    head          GET  storage/v1/b/B/o/NAME
    list          GET  storage/v1/b/B/o?prefix=P&startOffset=S&pageToken=T
    delete        DELETE storage/v1/b/B/o/NAME

The ETag this jobspace hands out is the object's generation: unique per write (no ABA, unlike S3's MD5),
and what ``ifGenerationMatch`` takes. A lost precondition is 412 (cloud.google.com/storage/docs/
request-preconditions). Writes are multipart uploads: real GCS honours preconditions on every upload
type, fake-gcs-server ignores them on ``uploadType=media`` (storage-measured.md) and honours them here.

obstore's GCSStore writes through the XML API, which fake-gcs-server refuses (400), so GCS could not be
proven here with it; this small client speaks the documented JSON API on aiohttp (already a dependency of
s3fs) and lets ``Jobspace`` do the retries, as the other backends do.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import aiohttp
from yarl import URL

from ._base import Jobspace, ObjectMeta, Timing
from ._errors import (
    AccessDenied,
    AmbiguousWrite,
    InvalidURL,
    JobspaceError,
    JobspaceMissing,
    NotFound,
    PreconditionFailed,
    TransientError,
)
from ._url import checked_endpoint

GCS_ENDPOINT = "https://storage.googleapis.com"
"""Real GCS; an ``endpoint`` URL key (or STORAGE_EMULATOR_HOST) points elsewhere, e.g. fake-gcs-server."""
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
_NEEDS_LIBRARY = "gs:// on Google Cloud needs google-auth for its credentials: pip install 'qubits[gcs]'"
_NO_CREDENTIALS = (
    "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run `gcloud auth application-default "
    "login`, or add service_account=KEYFILE to the gs:// URL"
)


class TokenSource(Protocol):
    """Gives the bearer token for the next request, or None to send none (an emulator)."""

    async def token(self) -> str | None: ...


class NoAuth:
    """No credentials: for fake-gcs-server and other emulators."""

    async def token(self) -> str | None:
        return None


class GoogleAuth:
    """OAuth tokens from google-auth: application default credentials (GOOGLE_APPLICATION_CREDENTIALS, the
    gcloud login, the metadata server) or a service-account key file; refreshed before they expire."""

    def __init__(self, service_account: str | None = None, *, credentials: Any = None) -> None:
        self._service_account = service_account
        self._credentials = credentials
        self._lock = asyncio.Lock()

    def _load(self) -> Any:
        try:
            import google.auth
            from google.auth import exceptions
            from google.oauth2 import service_account
        except ImportError:
            raise AccessDenied(_NEEDS_LIBRARY) from None
        if self._service_account:
            try:
                return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    self._service_account, scopes=[SCOPE])
            except (OSError, ValueError) as exc:  # messages name the file or missing fields, never the key
                raise AccessDenied(f"cannot use the service-account key {self._service_account}: {exc}") from None
        try:
            credentials, _project = google.auth.default(scopes=[SCOPE])
        except exceptions.GoogleAuthError:
            raise AccessDenied(f"no Google credentials found: {_NO_CREDENTIALS}") from None
        return credentials

    def _refresh(self) -> str:
        if self._credentials is None:
            self._credentials = self._load()
        if not self._credentials.valid:
            import google.auth.transport.requests

            try:
                self._credentials.refresh(google.auth.transport.requests.Request())
            except Exception as exc:  # noqa: BLE001 - google-auth raises several kinds; none carries the key
                raise AccessDenied(f"refreshing the Google credentials failed ({type(exc).__name__}); "
                                   f"{_NO_CREDENTIALS}") from None
        return str(self._credentials.token)

    async def token(self) -> str | None:
        async with self._lock:
            if self._credentials is not None and self._credentials.valid:
                return str(self._credentials.token)
            return await asyncio.to_thread(self._refresh)


def _rfc3339(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class GcsJobspace(Jobspace):
    """A jobspace in a GCS bucket (or under a prefix of one), through the JSON API."""

    min_write_interval = 1.0  # "one write per second" to an object name (cloud.google.com/storage/quotas)

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str = GCS_ENDPOINT,
                 auth: TokenSource | None = None, timing: Timing | None = None) -> None:
        super().__init__(timing)
        self.bucket = bucket
        self.root = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.endpoint = endpoint.rstrip("/")
        self.url = f"gs://{bucket}" + (f"/{self.root.rstrip('/')}" if self.root else "")
        self._auth: TokenSource = auth or NoAuth()
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    # -- HTTP ----------------------------------------------------------------------------------------
    def _session(self) -> aiohttp.ClientSession:
        # A session belongs to one event loop; the sync wrapper and an agent may use different ones.
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            for old in [lp for lp in self._sessions if lp.is_closed()]:  # sessions of loops that are gone
                del self._sessions[old]
            timeout = aiohttp.ClientTimeout(total=self.timing.request_timeout,
                                            sock_connect=min(2.0, self.timing.request_timeout))
            session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
            self._sessions[loop] = session
        return session

    def _object_url(self, name: str, **query: str) -> URL:
        path = f"{self.endpoint}/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(name, safe='')}"
        return URL(path + (f"?{urlencode(query)}" if query else ""), encoded=True)

    async def _request(self, method: str, url: URL, *, key: str | None, write: bool = False,
                       body: bytes | None = None, headers: dict[str, str] | None = None,
                       listing: bool = False) -> tuple[int, dict[str, str], bytes]:
        """One request; any answer but 2xx is translated to the jobspace error it means."""
        send = dict(headers or {})
        token = await self._auth.token()
        if token:
            send["Authorization"] = f"Bearer {token}"
        try:
            async with self._session().request(method, url, data=body, headers=send) as response:
                data = await response.read()
                status, got = response.status, {k.lower(): v for k, v in response.headers.items()}
        except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
            raise TransientError(f"{self.url}: cannot connect to {self.endpoint} ({exc.os_error})", key=key) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            cls = AmbiguousWrite if write else TransientError
            raise cls(f"{self.url}: {type(exc).__name__} {exc}".strip(), key=key) from None
        if status < 300:
            return status, got, data
        raise self._error(status, data, key, write=write, listing=listing)

    def _error(self, status: int, data: bytes, key: str | None, *, write: bool, listing: bool) -> JobspaceError:
        try:
            message = str(json.loads(data)["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = data[:200].decode(errors="replace").strip()
        text = f"{self.url}: {status} {message}"
        if status == 412:
            return PreconditionFailed(text, key=key)
        if status == 404:
            if listing or "bucket" in message.lower():
                return JobspaceMissing(f"{self.url}: the bucket does not exist; create it first ({status} {message})")
            return NotFound(key=key)
        if status in (401, 403):
            return AccessDenied(f"{self.url}: access denied ({status} {message}); check the Google credentials "
                                "(GOOGLE_APPLICATION_CREDENTIALS, or `gcloud auth application-default login`) "
                                "and that they may read and write this bucket")
        if status == 429:  # throttled before anything was written: retry, not ambiguous
            return TransientError(text, key=key)
        if status >= 500 or status in (408, 409):
            return (AmbiguousWrite if write else TransientError)(text, key=key)
        return JobspaceError(text, key=key)

    # -- raw operations ----------------------------------------------------------------------------
    async def _get(self, key: str) -> tuple[bytes, str]:
        name = self.root + key
        _, headers, data = await self._request("GET", self._object_url(name, alt="media"), key=key)
        generation = headers.get("x-goog-generation")
        if generation is None:  # a server that leaves the header out: read that exact generation
            generation = (await self._head(key)).etag
            _, _, data = await self._request("GET", self._object_url(name, alt="media", generation=generation), key=key)
        return data, generation

    async def _head(self, key: str) -> ObjectMeta:
        _, _, data = await self._request("GET", self._object_url(self.root + key), key=key)
        meta = json.loads(data)
        return ObjectMeta(key, str(meta["generation"]), int(meta.get("size", 0)), _rfc3339(meta.get("updated")))

    async def _put(self, key: str, data: bytes, *, if_absent: bool, if_match: str | None) -> str:
        query = {"uploadType": "multipart"}
        if if_absent:
            query["ifGenerationMatch"] = "0"
        elif if_match is not None:
            if not if_match.isdigit() or if_match == "0":  # not a generation this store gave: cannot match
                raise PreconditionFailed(f"{self.url}: {if_match!r} is not a generation of this object", key=key)
            query["ifGenerationMatch"] = if_match
        boundary = uuid.uuid4().hex
        metadata = json.dumps({"name": self.root + key, "contentType": "application/octet-stream"})
        body = b"".join([
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n".encode(),
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode(),
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ])
        url = URL(f"{self.endpoint}/upload/storage/v1/b/{quote(self.bucket, safe='')}/o?{urlencode(query)}",
                  encoded=True)
        _, _, answer = await self._request("POST", url, key=key, write=True, body=body,
                                           headers={"Content-Type": f"multipart/related; boundary={boundary}"})
        return str(json.loads(answer)["generation"])

    async def _delete(self, key: str) -> None:
        await self._request("DELETE", self._object_url(self.root + key), key=key)

    async def _list(self, prefix: str, start_after: str | None) -> AsyncIterator[ObjectMeta]:
        query = {"prefix": self.root + prefix, "maxResults": "1000"}
        if start_after is not None:
            query["startOffset"] = self.root + start_after  # inclusive: the key itself is skipped below
        base = f"{self.endpoint}/storage/v1/b/{quote(self.bucket, safe='')}/o"
        while True:
            _, _, data = await self._request("GET", URL(f"{base}?{urlencode(query)}", encoded=True),
                                             key=prefix, listing=True)
            page = json.loads(data)
            for item in page.get("items", []):
                key = str(item["name"])[len(self.root):]
                if not key.startswith(prefix) or (start_after is not None and key <= start_after):
                    continue
                yield ObjectMeta(key, str(item["generation"]), int(item.get("size", 0)), _rfc3339(item.get("updated")))
            token = page.get("nextPageToken")
            if not token:
                return
            query["pageToken"] = str(token)

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        loop = asyncio.get_running_loop()
        for owner, session in sessions.items():
            if owner is loop:
                await session.close()


def open_gcs(url: str, timing: Timing, options: dict[str, str]) -> GcsJobspace:
    """Open ``gs://BUCKET[/PREFIX]``. URL keys: ``endpoint`` (an emulator such as fake-gcs-server, or a
    private endpoint; STORAGE_EMULATOR_HOST is read too), ``auth`` (``google`` or ``none``; default:
    none with an endpoint, google without), ``service_account`` (a key file, instead of the application
    default credentials)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    query.update(options)
    if not parts.netloc:
        raise InvalidURL(f"{url.split('?', 1)[0]}: no bucket named; use gs://BUCKET[/PREFIX]")
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    endpoint = checked_endpoint(f"gs://{parts.netloc}", query.pop("endpoint", None))
    if endpoint is None and emulator:
        endpoint = emulator if "://" in emulator else f"http://{emulator}"  # STORAGE_EMULATOR_HOST is often host:port
    endpoint = endpoint or GCS_ENDPOINT
    auth = query.pop("auth", "google" if endpoint == GCS_ENDPOINT else "none")
    service_account = query.pop("service_account", None)
    if query:
        raise InvalidURL(f"gs://{parts.netloc}: unknown URL keys {sorted(query)}; gs:// takes endpoint, auth, "
                         "service_account, timeout, budget, attempts")
    source: TokenSource
    if auth == "none":
        source = NoAuth()
    elif auth == "google":
        source = GoogleAuth(service_account)
    else:
        raise InvalidURL(f"gs://{parts.netloc}: auth must be 'google' or 'none', not {auth!r}")
    return GcsJobspace(parts.netloc, parts.path, endpoint=endpoint, auth=source, timing=timing)
