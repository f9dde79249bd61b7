"""How Python values travel in a jobspace: functions by reference or by value, params, items, results.

A value travels as a small JSON descriptor inside a job or task spec:

    {"ref": "module:qualname"}     a function found by import on the node (installed or in the synced code)
    {"pickle": "<base64>"}         cloudpickle bytes, inline (small values)
    {"data": "<sha256>"}           cloudpickle bytes in data/{sha256}, uploaded once, cached on the nodes

A function travels **by reference** when the node can import it: it lives in an installed package (or
the standard library), or in the synced code folder (``code=``), or it is given as a string
``"module:qualname"``. Otherwise — a function of ``__main__``, a lambda, a closure, or a module of your
project that is not synced — it travels **by value** with cloudpickle, together with the modules of
your project it uses (registered with ``cloudpickle.register_pickle_by_value`` while pickling).

Unpickling runs code: a node trusts its jobspace as it trusts the code it runs from there.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import io
import site
import sys
import sysconfig
import types
from collections import ChainMap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle

from .errors import UsageError

INLINE_MAX = 64 << 10
"""Pickles up to this size travel inside the spec; bigger ones go to data/{sha256} once."""
PICKLE_PROTOCOL = 5
_OWN = ("qubits", "jobspaces", "nodeagent")

Blobs = dict[str, bytes]
"""Blobs to upload before the specs that name them: sha256 → bytes."""
Fetch = Callable[[str], bytes]
"""Gets the bytes of data/{sha256} (through a node's cache)."""


def _installed_roots() -> list[Path]:
    roots = set()
    paths = sysconfig.get_paths()
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(name):
            roots.add(Path(paths[name]).resolve())
    with contextlib.suppress(AttributeError):
        roots.update(Path(p).resolve() for p in site.getsitepackages())
    with contextlib.suppress(AttributeError):
        roots.add(Path(site.getusersitepackages()).resolve())
    return sorted(roots)


_INSTALLED = _installed_roots()


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _module_path(module: Any) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


_installed_cache: dict[str, bool] = {}


def is_installed(module: Any) -> bool:
    """Whether a module comes with Python or an installed package (so any node can import it)."""
    name = getattr(module, "__name__", "")
    if name.split(".")[0] in _OWN:
        return True
    file = getattr(module, "__file__", None)
    if not file:
        return True  # built into the interpreter
    known = _installed_cache.get(file)
    if known is None:
        path = Path(file).resolve()
        known = _installed_cache[file] = any(_under(path, root) for root in _INSTALLED)
    return known


def _synced(module: Any, code_root: Path | None) -> bool:
    path = _module_path(module)
    if code_root is None or path is None or not _under(path, code_root):
        return False
    # Importable from the code folder under the same name?
    rel = path.relative_to(code_root).with_suffix("")
    parts = list(rel.parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) == str(module.__name__)


def reference(fn: Any, code_root: Path | None = None) -> str | None:
    """``"module:qualname"`` if the nodes can import ``fn`` by name, else None (it travels by value)."""
    if isinstance(fn, str):
        head, _, tail = fn.partition(":")
        if not head or not tail:
            raise UsageError(f"a function by reference is written 'module:qualname', not {fn!r}")
        return fn
    module_name = getattr(fn, "__module__", None)
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not module_name or not qual or module_name == "__main__" or "<" in qual:
        return None
    module = sys.modules.get(module_name)
    if module is None:
        return None
    obj: Any = module
    for part in qual.split("."):
        obj = getattr(obj, part, None)
    if obj is not fn:
        return None
    if is_installed(module) or _synced(module, code_root):
        return f"{module_name}:{qual}"
    return None


def resolve(ref: str) -> Callable[..., Any]:
    """Import ``"module:qualname"``."""
    module_name, _, qual = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


@contextlib.contextmanager
def by_value(code_root: Path | None = None) -> Iterator[None]:
    """While pickling, the modules of your project (not installed, not synced) travel by value."""
    registered = []
    for name, module in list(sys.modules.items()):
        if module is None or name == "__main__" or is_installed(module) or _synced(module, code_root):
            continue
        if _module_path(module) is None:
            continue
        with contextlib.suppress(ValueError):
            cloudpickle.register_pickle_by_value(module)
            registered.append(module)
    try:
        yield
    finally:
        for module in registered:
            with contextlib.suppress(ValueError):
                cloudpickle.unregister_pickle_by_value(module)


_code_reduce = getattr(cloudpickle.cloudpickle, "_code_reduce", None)


def _code_with_filename(code: types.CodeType) -> Any:
    """cloudpickle's reduction of a code object, keeping the file it came from.

    cloudpickle 3.1.2+ names all code pickled by value ``<dynamic-code>``, so a node's traceback would
    say neither file nor source line; with the real name, the client fills in the lines from its own
    copy of the file (``_futures.with_source``)."""
    assert _code_reduce is not None
    make, args = _code_reduce(code)
    return make, tuple(code.co_filename if a == "<dynamic-code>" else a for a in args)


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    if _code_reduce is not None:
        dispatch_table = ChainMap({types.CodeType: _code_with_filename}, cloudpickle.Pickler.dispatch_table)


def dumps(obj: Any) -> bytes:
    """cloudpickle, protocol 5."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=PICKLE_PROTOCOL).dump(obj)
    return buf.getvalue()


def loads(data: bytes) -> Any:
    return cloudpickle.loads(data)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack(data: bytes, blobs: Blobs) -> dict[str, str]:
    """The descriptor of pickled bytes: inline when small, else a blob to upload."""
    if len(data) <= INLINE_MAX:
        return {"pickle": base64.b64encode(data).decode()}
    d = digest(data)
    blobs[d] = data
    return {"data": d}


def encode_value(obj: Any, blobs: Blobs) -> dict[str, str]:
    """Pickle ``obj`` into a descriptor (wrap calls in ``by_value`` so project modules travel too)."""
    try:
        data = dumps(obj)
    except Exception as exc:  # noqa: BLE001 - pickling can fail in many ways; say which value
        raise UsageError(f"cannot send {type(obj).__name__} to the nodes: it does not pickle ({exc})") from exc
    return pack(data, blobs)


def encode_fn(fn: Any, blobs: Blobs, code_root: Path | None = None) -> dict[str, str]:
    """A function's descriptor: by reference when the nodes can import it, else by value."""
    if not callable(fn) and not isinstance(fn, str):
        raise UsageError(f"map needs a function (or 'module:qualname'), not {type(fn).__name__}")
    ref = reference(fn, code_root)
    if ref is not None:
        return {"ref": ref}
    return encode_value(fn, blobs)


def decode(desc: dict[str, Any], fetch: Fetch) -> Any:
    """The value a descriptor names."""
    if "ref" in desc:
        return resolve(str(desc["ref"]))
    if "pickle" in desc:
        return loads(base64.b64decode(desc["pickle"]))
    if "data" in desc:
        return loads(fetch(str(desc["data"])))
    raise ValueError(f"not a value descriptor: {sorted(desc)}")


def blob_digests(desc: dict[str, Any] | None) -> list[str]:
    """The data/ blobs a descriptor needs."""
    if desc and "data" in desc:
        return [str(desc["data"])]
    return []


def describe(fn: Any) -> str:
    """A short name of a function, for job names."""
    if isinstance(fn, str):
        return fn
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__)
