"""The graph as far as the client can know it: rules matched and dependencies evaluated from the
requested targets, with those that only a node can compute (they read outputs) marked as such."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CycleError, QfileError, UsageError
from ._context import Context
from ._model import Match, Qfile, where_in
from ._signals import Unknown


@dataclass
class Node:
    """One target of the planned graph."""

    target: str
    rule: str
    """The recipe's name (``sh`` for a shell command, ``-`` for none)."""
    pattern: str
    deps: list[str] = field(default_factory=list)
    dynamic: bool = False
    """Its dependencies read other targets' outputs: ``deps`` holds the one read first, the rest is
    known only when it runs on a node."""
    match: Match | None = field(default=None, repr=False, compare=False)
    """The rule matched (kept so that planning does not match again)."""

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target, "rule": self.rule, "pattern": self.pattern, "deps": self.deps, "dynamic": self.dynamic}


def plan(qfile: Qfile, targets: list[str], profile: str | None = None) -> list[Node]:
    """The targets reachable from ``targets`` (default: ``default``), dependencies first.

    CycleError (naming the cycle) if dependencies loop; UsageError if no rule makes a target;
    QfileError (file and line) if a dependency function fails.
    """
    config = qfile.resolve(profile)
    order: list[Node] = []
    nodes: dict[str, Node] = {}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished

    def visit(target: str, path: list[str]) -> None:
        if state.get(target) == 2:
            return
        if state.get(target) == 1:
            cycle = path[path.index(target) :] + [target]
            raise CycleError(f"dependency cycle: {' -> '.join(cycle)}")
        state[target] = 1
        try:
            match = qfile.match(target)
        except UsageError as exc:
            needed = f" (needed by {path[-1]})" if path else ""
            raise UsageError(f"{exc}{needed}") from None
        node = Node(target, match.rule.name, match.rule.pattern, match=match)
        try:
            node.deps = match.deps(Context(match, config=config, profile=profile, code=qfile.project))
        except Unknown as exc:
            # It reads another target's output to decide: that target is a dependency for sure.
            node.dynamic = True
            node.deps = [str(exc.args[0])] if exc.args and exc.args[0] != "output" else []
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - user code: report where
            raise QfileError(f"{where_in(exc, qfile.path)}: dependencies of {target!r}: {type(exc).__name__}: {exc}") from exc
        for dep in node.deps:
            visit(dep, [*path, target])
        state[target] = 2
        nodes[target] = node
        order.append(node)

    for t in qfile.targets_default(targets):
        visit(t, [])
    return order
