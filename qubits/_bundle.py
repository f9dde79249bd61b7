"""Code bundles: a project directory packed into a deterministic, content-addressed tar.gz, and
extracted safely (no absolute paths, no '..', no links out of the folder, no devices)."""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import jobspaces

from . import _layout as layout
from .errors import UsageError

if TYPE_CHECKING:
    from ._client import Client

DEFAULT_IGNORES = [".git", ".qubits", "__pycache__", "*.pyc", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ruff_cache", "*.egg-info"]


class UnsafeArchive(UsageError):
    """The archive has a member that would land outside its folder (absolute, '..', a link out, a device)."""


def _gitignore(root: Path) -> list[str]:
    path = root / ".gitignore"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and not line.startswith("!"):
            out.append(line.rstrip("/").lstrip("/"))
    return out


def bundle_patterns(root: Path, ignores: Iterable[str] = ()) -> list[str]:
    """The globs ``pack`` leaves out of ``root``'s bundle: the defaults, .gitignore, ``ignores``."""
    return [*DEFAULT_IGNORES, *_gitignore(root), *ignores]


def ignored(rel: str, patterns: Iterable[str]) -> bool:
    """Whether the project-relative path ``rel`` is left out by one of ``patterns``."""
    parts = rel.split("/")
    for pat in patterns:
        if fnmatch.fnmatch(rel, pat) or any(fnmatch.fnmatch(p, pat) for p in parts):
            return True
    return False


def pack(root: Path, ignores: Iterable[str] = ()) -> tuple[bytes, str]:
    """The bundle of ``root`` and its sha256. Equal trees give equal bytes (sorted, no times or owners).

    Symbolic links that point outside ``root`` are refused rather than followed.
    """
    root = root.resolve()
    patterns = bundle_patterns(root, ignores)
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        dirnames[:] = sorted(d for d in dirnames if not ignored(f"{rel_dir}/{d}".lstrip("/"), patterns))
        for d in dirnames:
            link = Path(dirpath) / d
            if link.is_symlink():  # os.walk does not follow it; one that leads out is refused, not skipped
                target = link.resolve()
                if root not in target.parents and target != root:
                    raise UnsafeArchive(f"{rel_dir}/{d} links outside the project ({os.readlink(link)}); remove it or ignore it".lstrip("/"))
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}".lstrip("/")
            if not ignored(rel, patterns):
                files.append((rel, Path(dirpath) / name))
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, path in sorted(files):
            if path.is_symlink():
                target = (path.parent / os.readlink(path)).resolve()
                if root not in target.parents and target != root:
                    raise UnsafeArchive(f"{rel} links outside the project ({os.readlink(path)}); remove it or ignore it")
            info = tarfile.TarInfo(rel)
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, hashlib.sha256(raw).hexdigest()


def upload_code(client: Client, root: Path, ignores: Iterable[str] = ()) -> str:
    """Pack ``root`` (minus ignores and .gitignore) and upload it once, by digest; the digest."""
    data, digest = pack(root, ignores)
    key = layout.code_bundle(digest)
    if not jobspaces.run_sync(client.aio.exists(key)):
        try:
            jobspaces.run_sync(client.aio.put(key, data, if_absent=True))
        except jobspaces.PreconditionFailed:
            pass  # uploaded by someone else meanwhile: same bytes
    return digest


def check_members(tar: tarfile.TarFile) -> None:
    """Refuse any member that could write outside the extraction folder."""
    for m in tar.getmembers():
        name = m.name
        if name.startswith("/") or os.path.isabs(name) or ".." in Path(name).parts:
            raise UnsafeArchive(f"archive member {name!r} escapes its folder")
        if m.issym() or m.islnk():
            target = m.linkname
            if os.path.isabs(target) or ".." in Path(os.path.normpath(os.path.join(os.path.dirname(name), target))).parts:
                raise UnsafeArchive(f"archive member {name!r} links outside its folder ({target!r})")
        if m.isdev() or m.isfifo() or m.ischr() or m.isblk():
            raise UnsafeArchive(f"archive member {name!r} is a device or fifo")


def extract(data: bytes, digest: str, dest: Path) -> Path:
    """Verify ``data`` against ``digest`` and extract it to ``dest`` atomically (cached by digest)."""
    if hashlib.sha256(data).hexdigest() != digest:
        raise UnsafeArchive(f"code bundle does not match its digest {digest[:12]}…; refusing it")
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            check_members(tar)
            tar.extractall(tmp, filter="data")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
