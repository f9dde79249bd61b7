"""The floors of the house: imports point down, never up, so there is no circle between floors.

    front ends   qubits.cli  (the top: the only place that configures logging)
                 qubits (the package's face), Python calls (qubits._map, _futures, _compose, _pytask),
                 qubits.qfile, qubits.batch, qubits.dashboard
    nodeagent    the agent
    core         qubits minus its front ends: records, layout, specs, protocol, ready index, DAG, client
    jobspaces    the stores

Every ``import`` counts, inside functions and under ``TYPE_CHECKING`` too: a lazy import is still an
arrow. The test reads the sources with ``ast``; it imports nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("jobspaces", "qubits", "nodeagent")
FRONT_ENDS = (
    "qubits._map", "qubits._mapbar", "qubits._futures", "qubits._compose", "qubits._pytask",  # Python calls
    "qubits.qfile", "qubits.batch", "qubits.dashboard",
)
FLOORS = ["jobspaces", "core", "nodeagent", "front ends", "cli"]


def floor(module: str) -> int | None:
    """The floor of ``module`` (an index into FLOORS), None outside the three packages."""

    def within(*names: str) -> bool:
        return any(module == n or module.startswith(n + ".") for n in names)

    if within("qubits.cli"):
        return 4
    if module == "qubits" or within(*FRONT_ENDS):
        return 3
    if within("nodeagent"):
        return 2
    if within("qubits"):
        return 1
    if within("jobspaces"):
        return 0
    return None


def modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, module) for every import in the module ``name`` at ``path``."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # `from qubits import _layout` imports the submodule
                sub = f"{source}.{alias.name}"
                found.append((node.lineno, sub if sub in known else source))
    return sorted(set(found))


def arrows() -> list[tuple[str, int, str, str]]:
    """(file, line, importer, imported) for every import between modules of the three packages."""
    known = modules()
    out = []
    for name, path in known.items():
        for line, target in imports(name, path, known):
            if floor(target) is not None:
                out.append((str(path.relative_to(ROOT)), line, name, target))
    return out


def upward(edges: list[tuple[str, int, str, str]]) -> list[str]:
    """The arrows that climb a floor, as ``file:line: importer (floor) -> imported (floor)``."""
    bad = []
    for file, line, importer, target in edges:
        here, there = floor(importer), floor(target)
        assert here is not None and there is not None
        if there > here:
            bad.append(f"{file}:{line}: {importer} ({FLOORS[here]}) imports {target} ({FLOORS[there]})")
    return bad


def test_no_import_points_up() -> None:
    bad = upward(arrows())
    assert not bad, "imports must point down a floor, never up:\n" + "\n".join(bad)


def test_the_floors_form_no_circle() -> None:
    """Between floors the arrows form no circle (a path from a floor back to itself)."""
    graph: dict[int, set[int]] = {}
    for _file, _line, importer, target in arrows():
        here, there = floor(importer), floor(target)
        assert here is not None and there is not None
        if here != there:
            graph.setdefault(here, set()).add(there)

    def climbs_back(start: int) -> bool:
        seen, todo = set(), list(graph.get(start, ()))
        while todo:
            f = todo.pop()
            if f == start:
                return True
            if f not in seen:
                seen.add(f)
                todo += graph.get(f, ())
        return False

    circles = [FLOORS[f] for f in graph if climbs_back(f)]
    assert not circles, f"these floors import one another in a circle: {circles}"


def test_the_check_sees_an_upward_import_inside_a_function(tmp_path: Path) -> None:
    """The guard itself: a lazy import of the CLI from the agent is reported with its line."""
    path = tmp_path / "_x.py"
    path.write_text("def f():\n    from qubits.cli import main\n    return main\n")
    edges = [("nodeagent/_x.py", line, "nodeagent._x", target) for line, target in imports("nodeagent._x", path, modules())]
    assert upward(edges) == ["nodeagent/_x.py:2: nodeagent._x (nodeagent) imports qubits.cli (cli)"]


@pytest.mark.parametrize(("module", "expected"), [
    ("jobspaces._memory", "jobspaces"), ("qubits._protocol", "core"), ("nodeagent._agent", "nodeagent"),
    ("qubits", "front ends"), ("qubits.qfile._runner", "front ends"), ("qubits.cli._agent", "cli"),
])
def test_floors(module: str, expected: str) -> None:
    f = floor(module)
    assert f is not None and FLOORS[f] == expected


def test_rich_stays_in_the_front_ends() -> None:
    """The core and the agent never pay for rich: only front ends (the CLI, the map's bar) import it."""
    known = modules()
    bad = [
        f"{path.relative_to(ROOT)}:{line}"
        for name, path in known.items()
        for line, target in imports(name, path, known)
        if target.split(".")[0] == "rich" and (floor(name) or 0) < FLOORS.index("front ends")
    ]
    assert not bad, f"rich imported below the front ends: {bad}"
