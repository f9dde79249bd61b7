"""Every object key is built in qubits/_layout.py: no f-string elsewhere starts with a top-level folder of
the jobspace (a key spelt twice drifts: the reason for the layout module)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("jobs/", "ready/", "leases/", "done/", "runs/", "nodes/", "fleet/", "quarantine/", "archive/",
           "targets/", "code/", "data/", "schedules/", "ticks/")
NOT_KEYS = {
    "qubits/batch/_slurm.py": "jobs/{name}/slurm.out is a path in the SLURM submit folder, not an object",
    "bench/sim/_variants.py": "a trial layout the simulator measures against the real one",
}


def keys_spelt_outside_layout() -> list[str]:
    found = []
    for folder in ("jobspaces", "qubits", "nodeagent", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if rel == "qubits/_layout.py" or rel in NOT_KEYS:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.JoinedStr) and node.values:
                    first = node.values[0]
                    if isinstance(first, ast.Constant) and str(first.value).startswith(FOLDERS):
                        found.append(f"{rel}:{node.lineno}: f{ast.unparse(node)[1:]}")
    return found


def test_every_key_goes_through_layout() -> None:
    spelt = keys_spelt_outside_layout()
    assert not spelt, "build these keys with qubits/_layout.py:\n" + "\n".join(spelt)
