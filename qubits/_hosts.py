"""The nodes of a fleet, as a Qfile writes them: ``"host"``, ``"user@host:port"``, ``("host", slots)`` or a
dict with any of ``host name slots user port python workdir capabilities options config``, with
``conf.ssh`` as defaults for them all (see ``qubits._fleet`` for what is done with them over ssh).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .errors import UsageError

_ADDRESS = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>[^:@\s/]+)(?::(?P<port>\d+))?$")
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class Node:
    """A machine that runs an agent for a run: how to reach it, and what it offers."""

    host: str
    name: str = ""
    slots: int = 1
    user: str | None = None
    port: int | None = None
    python: str = "python3"
    """The node's interpreter (3.11+); a venv's python is best: qubits is installed into it."""
    workdir: str = "~/.cache/qubits"
    """The node's folder for the agent's cache, logs and copied wheels (QUBITS_CACHE there); ``{name}``
    and ``{host}`` are filled in."""
    capabilities: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    """ssh ``-o`` options, e.g. ``IdentityFile=~/.ssh/lab``."""
    config: str | None = None
    """An ssh config file (``ssh -F``)."""
    connect_timeout: int = 10

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _common(self) -> list[str]:
        out = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}"]
        if self.config:
            out += ["-F", os.path.expanduser(self.config)]
        for opt in self.options:
            out += ["-o", opt]
        return out

    def ssh_argv(self, command: str) -> list[str]:
        """``ssh … host command`` (the command is run by the node's login shell)."""
        port = ["-p", str(self.port)] if self.port else []
        return ["ssh", *self._common(), *port, self.address, command]

    def scp_argv(self, local: Sequence[Path], remote_dir: str) -> list[str]:
        port = ["-P", str(self.port)] if self.port else []
        return ["scp", "-q", *self._common(), *port, *(str(p) for p in local), f"{self.address}:{remote_dir}/"]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["capabilities"] = list(self.capabilities)
        out["options"] = list(self.options)
        return out


def _defaults(ssh: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Settings every node starts from: conf.ssh, then the environment, then the command line."""
    out: dict[str, Any] = {}
    for source in (
        dict(ssh or {}),
        {"python": os.environ.get("QUBITS_REMOTE_PYTHON"), "user": os.environ.get("QUBITS_REMOTE_USER")},
        dict(overrides or {}),
    ):
        for key, value in source.items():
            if value in (None, "", [], ()):
                continue
            if key == "options":
                out["options"] = [*out.get("options", []), *_as_list(value, "ssh options")]
            else:
                out[key] = value
    return out


def _as_list(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable):
        return [str(v) for v in value]
    raise UsageError(f"{what} must be a list of strings, got {value!r}")


def parse_nodes(value: Any, *, ssh: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None) -> list[Node]:
    """The nodes of ``value`` (the Qfile's ``nodes``, already resolved), with ``ssh`` defaults
    (``conf.ssh``) and ``overrides`` (command line) applied. UsageError naming a bad entry."""
    if value is None:
        return []
    if isinstance(value, (str, dict, Node)) or (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int)):
        value = [value]
    base = _defaults(ssh, overrides)
    known = {f for f in Node.__dataclass_fields__}
    unknown = set(base) - known - {"host"}
    if unknown:
        raise UsageError(f"conf.ssh: unknown keys {sorted(unknown)} (known: user port python workdir options config connect_timeout)")
    nodes: list[Node] = []
    for item in value:
        fields: dict[str, Any] = {k: v for k, v in base.items() if k != "options"}
        options = list(base.get("options", []))
        if isinstance(item, Node):
            nodes.append(item)
            continue
        if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
            fields.update(_parse_address(item[0]))
            fields["slots"] = item[1]
        elif isinstance(item, str):
            fields.update(_parse_address(item))
        elif isinstance(item, dict):
            bad = set(item) - known
            if bad:
                raise UsageError(f"node {item!r}: unknown keys {sorted(bad)} (known: {' '.join(sorted(known))})")
            spec = dict(item)
            if "host" not in spec:
                raise UsageError(f"node {item!r} has no host")
            fields.update(_parse_address(str(spec.pop("host"))))
            options += _as_list(spec.pop("options", []), f"node {item!r}: options")
            fields.update(spec)
        else:
            raise UsageError(f"a node is 'host', 'user@host:port', ('host', slots) or a dict, got {item!r}")
        fields["options"] = tuple(options)
        fields["capabilities"] = tuple(_as_list(fields.get("capabilities", ()), "capabilities"))
        try:
            fields["slots"] = int(fields.get("slots", 1))
            if fields.get("port") is not None:
                fields["port"] = int(fields["port"])
        except (TypeError, ValueError):
            raise UsageError(f"node {item!r}: slots and port are numbers") from None
        if fields["slots"] < 1:
            raise UsageError(f"node {item!r}: slots must be at least 1")
        nodes.append(Node(**fields))
    return _named(nodes)


def _parse_address(text: str) -> dict[str, Any]:
    """host, and user and port where the address gives them (else the defaults stand)."""
    m = _ADDRESS.match(text.strip())
    if not m:
        raise UsageError(f"node address {text!r}: write host, user@host or user@host:port")
    out: dict[str, Any] = {"host": m["host"]}
    if m["user"]:
        out["user"] = m["user"]
    if m["port"]:
        out["port"] = int(m["port"])
    return out


def _named(nodes: list[Node]) -> list[Node]:
    """Give each node a unique, key-safe name (its host, then -2, -3 … for repeats)."""
    out: list[Node] = []
    seen: set[str] = set()
    for node in nodes:
        name = node.name or (node.host if not node.port else f"{node.host}-{node.port}")
        name = re.sub(r"[^A-Za-z0-9._-]", "-", name)
        if node.name and not _NAME.match(node.name):
            raise UsageError(f"node name {node.name!r}: use letters, digits, '.', '_' and '-'")
        if node.name and node.name in seen:
            raise UsageError(f"two nodes are named {node.name!r}")
        stem, n = name, 1
        while name in seen:
            n += 1
            name = f"{stem}-{n}"
        seen.add(name)
        # Nodes that share a host share its work folder unless it names them: workdir="~/q/{name}".
        out.append(replace(node, name=name, workdir=node.workdir.replace("{name}", name).replace("{host}", node.host)))
    return out
