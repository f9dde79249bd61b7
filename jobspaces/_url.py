"""Open a jobspace from a URL: a path, file://, memory://, s3://, gs:// or az:// or any other fsspec protocol (not http://)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

from ._base import Jobspace, Timing
from ._errors import InvalidURL

_OBSTORE_SCHEMES = ("s3", "s3a", "az", "azure", "abfs")
_GCS_SCHEMES = ("gs", "gcs")
_WEB_SCHEMES = ("http", "https")


_SECRET_WORDS = ("secret", "token", "password", "key", "sas", "credential")


def is_secret(option: str) -> bool:
    """Whether a URL option carries a credential (``aws_secret_access_key``, ``access_key``, ``bearer_token`` …):
    such options open the store but are never shown, logged or put on a command line."""
    low = option.lower()
    return any(word in low for word in _SECRET_WORDS)


def redacted(url: str) -> str:
    """``url`` with the values of its credential options replaced by ``***``, for messages."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = "&".join(f"{k}={'***' if is_secret(k) else v}" for k, v in parse_qsl(parts.query))
    return parts._replace(query=query).geturl()


def checked_endpoint(where: str, endpoint: str | None) -> str | None:
    """``endpoint`` as given, or InvalidURL when it lacks its scheme or host (``127.0.0.1:9000``)."""
    if endpoint is not None:
        ends = urlsplit(endpoint)
        if ends.scheme not in ("http", "https") or not ends.netloc:
            raise InvalidURL(f"{where}: the endpoint {endpoint!r} needs its scheme: endpoint=http://HOST:PORT (or https://)")
    return endpoint


def _timing(query: dict[str, str], timing: Timing | None) -> Timing:
    base = timing or Timing()
    try:
        return Timing(
            request_timeout=float(query.pop("timeout", base.request_timeout)),
            budget=float(query.pop("budget", base.budget)),
            max_attempts=int(query.pop("attempts", base.max_attempts)),
        )
    except ValueError:
        raise InvalidURL(
            "timeout, budget and attempts in a jobspace URL are numbers, e.g. ?timeout=5&budget=10&attempts=8"
        ) from None


def open_jobspace(url: str, *, timing: Timing | None = None, **options: str) -> Jobspace:
    """Open the jobspace at ``url``.

    ``/path`` or ``file:///path``: a local directory (created if missing). ``memory://name``: in this
    process only. ``s3://bucket/prefix?endpoint=http://host:port&region=…``: S3 or a compatible store,
    credentials from the usual AWS environment variables. ``gs://bucket/prefix``, ``az://container/prefix``.
    Query options ``timeout`` (per request, s), ``budget`` (per call with retries, s), ``attempts``.
    """
    if not url:
        raise InvalidURL("no jobspace given: pass --jobspace URL or set QUBITS_JOBSPACE")
    if "://" not in url:
        from ._local import LocalJobspace

        return LocalJobspace(url, timing=timing)
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    scheme = parts.scheme.lower()
    if scheme == "file":
        from ._local import LocalJobspace

        return LocalJobspace(unquote(parts.path), timing=_timing(query, timing))
    if scheme == "memory":
        from ._memory import MemoryJobspace

        return MemoryJobspace((parts.netloc + parts.path).strip("/"), timing=_timing(query, timing))
    if scheme in _GCS_SCHEMES or scheme in _OBSTORE_SCHEMES:
        shown = {k: v for k, v in parse_qsl(parts.query) if not is_secret(k)}
        t = _timing(query, timing)
        base = url.split("?", 1)[0]
        js: Jobspace
        if scheme in _GCS_SCHEMES:
            from ._gcs import open_gcs

            js = open_gcs(base, t, {**query, **options})
        else:
            from ._obstore import open_obstore

            js = open_obstore(base, t, {**query, **options})
        js.url = js.url + (f"?{urlencode(shown, safe=':/')}" if shown else "")
        js.open_url = url
        return js
    if scheme in _WEB_SCHEMES:
        raise InvalidURL(
            f"{redacted(url)}: a jobspace cannot live on {scheme}:// (a web server takes no conditional writes); "
            "use a path, file://, s3://, gs:// or az:// (the URL options and credentials: docs/stores.md)"
        )
    from ._fsspec import FsspecJobspace  # any other fsspec protocol: `qubits doctor` says whether it is safe

    extra: dict[str, Any] = dict(options)
    return FsspecJobspace(url, timing=_timing(query, timing), **extra)
