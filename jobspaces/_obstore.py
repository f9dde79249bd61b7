"""Jobspaces on S3 (and S3-compatible stores) and Azure Blob, through obstore (GCS: see _gcs.py).

obstore's own retries are switched off: a retried conditional PUT whose first attempt landed would
come back as a 412 and we could not tell it from a real loss. Retries happen in ``Jobspace`` with
tenacity, which knows which attempts were ambiguous and reads the object back to settle them.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import obstore
from obstore import exceptions as obx

from ._base import Jobspace, ObjectMeta, Timing
from ._errors import (
    AccessDenied,
    AmbiguousWrite,
    ConditionalWritesUnsupported,
    InvalidURL,
    JobspaceError,
    JobspaceMissing,
    NotFound,
    PreconditionFailed,
    TransientError,
)
from ._inflight import settled
from ._profiles import S3Profile, s3_profile
from ._url import checked_endpoint

T = TypeVar("T")

_STATUS = re.compile(r"status(?: code)?:? (\d{3})", re.IGNORECASE)
_URL = re.compile(r"(https?://[^\s?\"']+)\?[^\s\"']*")
_TRANSIENT_WORDS = (
    "error sending request",
    "connection refused",
    "connection reset",
    "timed out",
    "timeout",
    "broken pipe",
    "connection closed",
    "dns error",
    "slowdown",
    "conditionalrequestconflict",
    # A connection cut while a body was in flight (a reset, a middlebox timing out): worth a retry.
    "body error",
    "error reading a body",
    "incompletemessage",
    "unexpected eof",
)


def redact(text: str) -> str:
    """Strip query strings (signatures, SAS tokens) and known secrets from an error message."""
    text = _URL.sub(r"\1?…", text)
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN"):
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _first_line(exc: BaseException) -> str:
    text = redact(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ObstoreJobspace(Jobspace):
    """A jobspace on an obstore store (S3Store or AzureStore)."""

    def __init__(
        self, store: Any, url: str, *, timing: Timing | None = None, profile: S3Profile | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(timing)
        self._store = store
        self.url = url
        self.endpoint = endpoint
        """The endpoint requests go to, when one was given (else the provider's own)."""
        self.profile = profile
        """The S3 flavour (None for Azure): how it lists, and how often one key may be written."""
        self._sorted_listing = profile is None or profile.sorted_listing
        if profile is not None:
            self.min_write_interval = profile.min_write_interval

    def _settled(self, call: Awaitable[T]) -> Awaitable[T]:
        """obstore's ``call``, recorded until answered, so that no answer comes while the interpreter
        tears down (see ``_inflight``); obstore gives up on it after the client timeouts."""
        return settled(call, self.timing.request_timeout + min(2.0, self.timing.request_timeout) + 1.0)

    # -- error mapping -----------------------------------------------------------------------------
    def _translate(self, exc: BaseException, key: str | None, *, write: bool = False) -> JobspaceError:
        text = _first_line(exc)
        full = str(exc)
        # Judge by the message and the server's answer, not obstore's "Debug source" dump: that always
        # names its own settings ("retry_timeout: 1s"), which would make every error look like a timeout.
        low = full.split("Debug source:", 1)[0].lower()
        if "nosuchbucket" in low or "containernotfound" in low or "bucket does not exist" in low:
            return JobspaceMissing(f"{self.url}: the bucket does not exist; create it first ({text})")
        if isinstance(exc, (FileNotFoundError, obx.NotFoundError)):
            return NotFound(key=key)
        if isinstance(exc, obx.PreconditionError):
            return PreconditionFailed(text, key=key)
        if isinstance(exc, (obx.PermissionDeniedError, obx.UnauthenticatedError)) or any(
            w in low for w in ("invalidaccesskeyid", "signaturedoesnotmatch", "accessdenied", "403 forbidden")
        ):
            return AccessDenied(f"{self.url}: access denied; check the credentials ({text})")
        if isinstance(exc, (NotImplementedError, obx.NotSupportedError)):
            return ConditionalWritesUnsupported(f"{self.url}: {text}")
        match = _STATUS.search(low)
        status = int(match.group(1)) if match else None
        transient = (status is not None and (status >= 500 or status in (408, 409, 429))) or any(
            w in low for w in _TRANSIENT_WORDS
        )
        if status is None and isinstance(exc, OSError):
            transient = True
        if transient:
            # A connection that was never made carried no write: retry it, but it is not ambiguous.
            never_sent = "kind: connect," in full.lower() or "connection refused" in low
            # Throttling (429, 503 SlowDown) refuses a request before anything is written: not ambiguous.
            throttled = status == 429 or "slowdown" in low
            cls = AmbiguousWrite if write and not never_sent and not throttled else TransientError
            if never_sent or "error sending request" in low or "dns error" in low:
                where = self.endpoint or "the provider's endpoint"
                return cls(f"{self.url}: {where} is unreachable; check the endpoint and the network ({text})", key=key)
            return cls(f"{self.url}: {text}", key=key)
        return JobspaceError(f"{self.url}: {text}", key=key)

    def _etag_of(self, meta: Any) -> str:
        return _quoted(str(meta.get("e_tag") or ""))

    # -- raw operations ----------------------------------------------------------------------------
    async def _get(self, key: str) -> tuple[bytes, str]:
        try:
            result = await self._settled(obstore.get_async(self._store, key))
            data = await self._settled(result.bytes_async())
        except Exception as exc:  # noqa: BLE001 - every obstore failure is translated
            raise self._translate(exc, key) from None
        return bytes(data), self._etag_of(result.meta)

    async def _head(self, key: str) -> ObjectMeta:
        try:
            meta = await self._settled(obstore.head_async(self._store, key))
        except Exception as exc:  # noqa: BLE001
            raise self._translate(exc, key) from None
        return ObjectMeta(key, self._etag_of(meta), meta["size"], meta["last_modified"].timestamp())

    async def _put(self, key: str, data: bytes, *, if_absent: bool, if_match: str | None) -> str:
        mode: Any
        if if_absent:
            mode = "create"
        elif if_match is not None:
            mode = {"e_tag": if_match}
        else:
            mode = "overwrite"
        try:
            result = await self._settled(obstore.put_async(self._store, key, data, mode=mode))
        except obx.AlreadyExistsError as exc:
            # obstore calls every 409 AlreadyExists. S3's 409 ConditionalRequestConflict (a conditional
            # operation raced ours; nothing was written) is to be retried, whatever the mode: a retried CAS
            # then wins, or gets 412 if the ETag moved meanwhile. Azure answers a create-only loser with 409:
            # a lost race only if the object is really there.
            answer = str(exc).split("Debug source:", 1)[0]
            if "ConditionalRequestConflict" in answer or not if_absent or (
                "409" in answer and not await self._exists_raw(key)
            ):
                raise TransientError(f"{self.url}: conflict (409), retrying", key=key) from None
            raise PreconditionFailed("object exists already", key=key) from None
        except Exception as exc:  # noqa: BLE001
            raise self._translate(exc, key, write=True) from None
        etag = result.get("e_tag")
        if not etag:
            return (await self._head(key)).etag
        return _quoted(str(etag))

    async def _exists_raw(self, key: str) -> bool:
        try:
            await self._settled(obstore.head_async(self._store, key))
        except Exception:  # noqa: BLE001
            return False
        return True

    async def _delete(self, key: str) -> None:
        try:
            await self._settled(obstore.delete_async(self._store, key))
        except (FileNotFoundError, obx.NotFoundError):
            return
        except Exception as exc:  # noqa: BLE001
            raise self._translate(exc, key) from None

    async def _list(self, prefix: str, start_after: str | None) -> AsyncIterator[ObjectMeta]:
        # obstore's prefixes are whole path segments: list the folder, filter by the string prefix.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if not self._sorted_listing:
            # Directory buckets list in no order and take no start-after: read the folder, sort it here.
            metas = [m async for m in self._list_pages(folder, prefix, None, start_after)]
            for meta in sorted(metas, key=lambda m: m.key):
                yield meta
            return
        async for meta in self._list_pages(folder, prefix, start_after, start_after):
            yield meta

    async def _list_pages(self, folder: str, prefix: str, offset: str | None,
                          start_after: str | None) -> AsyncIterator[ObjectMeta]:
        try:
            stream = obstore.list(self._store, folder or None, offset=offset, chunk_size=1000)
            while True:
                try:
                    batch = await self._settled(stream.__anext__())
                except StopAsyncIteration:
                    break
                for meta in batch:
                    path = meta["path"]
                    # Some servers ignore the offset (Azurite ignores Azure's startFrom): filter here too.
                    if not path.startswith(prefix) or (start_after is not None and path <= start_after):
                        continue
                    yield ObjectMeta(path, self._etag_of(meta), meta["size"], meta["last_modified"].timestamp())
        except JobspaceError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._translate(exc, prefix) from None


def _quoted(etag: str) -> str:
    """One spelling for every ETag: Azure lists them bare but answers writes and heads with quotes."""
    if etag and not etag.startswith(('"', "W/")):
        return f'"{etag}"'
    return etag


def _client_options(timing: Timing, endpoint: str | None) -> Any:
    options: dict[str, Any] = {
        "timeout": timedelta(seconds=timing.request_timeout),
        "connect_timeout": timedelta(seconds=min(2.0, timing.request_timeout)),
    }
    if endpoint and endpoint.startswith("http://"):
        options["allow_http"] = True
    return options


_NO_RETRY: Any = {"max_retries": 0, "retry_timeout": timedelta(seconds=1)}


def open_obstore(url: str, timing: Timing, options: dict[str, str]) -> ObstoreJobspace:
    """Open ``s3://`` or ``az://`` URLs; ``options`` come from the query string and caller."""
    from obstore.store import AzureStore, S3Store

    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    query.update(options)
    bucket = parts.netloc
    prefix = parts.path.strip("/") or None
    if not bucket:
        raise InvalidURL(f"{url}: no bucket named; use {parts.scheme}://BUCKET[/PREFIX]")
    clean = f"{parts.scheme}://{bucket}" + (f"/{prefix}" if prefix else "")

    def checked(endpoint: str | None) -> str | None:
        return checked_endpoint(clean, endpoint)

    store: S3Store | AzureStore
    try:
        if parts.scheme in ("s3", "s3a"):
            endpoint = checked(
                query.pop("endpoint", None) or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            )
            profile, endpoint, settings = s3_profile(bucket, query, endpoint)
            config: Any = {}
            if endpoint:
                config["endpoint"] = endpoint
                config["virtual_hosted_style_request"] = False
            region = (query.pop("region", None) or settings.pop("region", None) or os.environ.get("AWS_REGION")
                      or os.environ.get("AWS_DEFAULT_REGION"))
            if region:
                config["region"] = region
            elif endpoint:
                config["region"] = "us-east-1"
            config.update(settings)
            config.update(query)
            store = S3Store(
                bucket, prefix=prefix, config=config, client_options=_client_options(timing, endpoint),
                retry_config=_NO_RETRY,
            )
            return ObstoreJobspace(store, clean, timing=timing, profile=profile, endpoint=endpoint)
        if parts.scheme in ("az", "azure", "abfs"):
            endpoint = checked(query.pop("endpoint", None))
            aconfig: Any = dict(query)
            if endpoint:
                aconfig["endpoint"] = endpoint
            if aconfig.get("use_emulator") in ("1", "true", "True"):
                aconfig["use_emulator"] = True
            store = AzureStore(
                bucket, prefix=prefix, config=aconfig, client_options=_client_options(timing, endpoint),
                retry_config=_NO_RETRY,
            )
            return ObstoreJobspace(store, clean, timing=timing, endpoint=endpoint)
    except obx.BaseError as exc:
        raise InvalidURL(f"{clean}: {_first_line(exc)} (the URL options: docs/stores.md)") from None
    raise InvalidURL(f"{url}: unknown scheme {parts.scheme!r}")
