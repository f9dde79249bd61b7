"""Every public surface (a module's ``__all__``) is sorted, names only what exists, and leaves nothing out:
as httpx guards its exported members. ``qubits.protocol`` is what nodeagent and bench build on."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import jobspaces
import nodeagent
import qubits


def _modules() -> list[str]:
    names = []
    for package in (jobspaces, qubits, nodeagent):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):  # __main__ runs its program on import
                names.append(info.name)
    return names


SURFACES = [name for name in _modules() if "__all__" in vars(importlib.import_module(name))]


def test_the_surfaces_are_found() -> None:
    assert {"jobspaces", "qubits", "qubits.protocol", "qubits.qfile", "qubits.batch"} <= set(SURFACES)


@pytest.mark.parametrize("name", SURFACES)
def test_all_is_sorted_unique_and_every_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    assert len(exported) == len(set(exported)), f"{name}.__all__ names something twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what the module lacks: {missing}"


@pytest.mark.parametrize("name", SURFACES)
def test_all_leaves_no_public_name_out(name: str) -> None:
    """Every public name the module binds (not a submodule, not ``annotations``) is in ``__all__``."""
    module = importlib.import_module(name)
    public = {
        n for n, v in vars(module).items()
        if not n.startswith("_") and n not in ("annotations", "TYPE_CHECKING") and not isinstance(v, types.ModuleType)
        and (getattr(v, "__module__", name) or name).split(".")[0] == name.split(".")[0]
    }
    left_out = sorted(public - set(module.__all__))
    assert not left_out, f"{name} binds public names its __all__ leaves out: {left_out}"


def test_nodeagent_and_bench_build_on_the_published_surface() -> None:
    """No private module of the core is imported by the agent or the benchmarks: qubits.protocol is."""
    import ast
    from pathlib import Path

    root = Path(qubits.__file__).resolve().parents[1]
    bad = []
    for folder in ("nodeagent", "bench"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    private = node.module.startswith("qubits._") or (
                        node.module == "qubits" and any(a.name.startswith("_") for a in node.names))
                    if private:
                        bad.append(f"{path.relative_to(root)}:{node.lineno}: {node.module}")
    assert not bad, "import the core through qubits.protocol:\n" + "\n".join(bad)
