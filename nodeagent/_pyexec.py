"""The runner of Python tasks, in the task's own subprocess: ``python -m nodeagent._pyexec``.

Reads ``$QUBITS_SCRATCH/spec.json`` ({"task": TaskSpec, "job": JobSpec}) and hands it to the module
that knows the task's kind. A runner reports through files in ``$QUBITS_SCRATCH``: ``result`` (a
Python task's return value), ``error.json`` (an exception with its traceback), ``control.json`` with
exit status 75 (a Qfile target that declines, needs dependencies, or finds an output missing).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from qubits.protocol import kinds, leave


def main() -> int:
    scratch = Path(os.environ["QUBITS_SCRATCH"])
    spec = json.loads((scratch / "spec.json").read_text())
    kind = spec["task"].get("kind")
    code = os.environ.get("QUBITS_CODE")
    if code and code not in sys.path:
        sys.path.insert(0, code)
    run = kinds.runner(str(kind))
    if run is not None:
        return run(spec, scratch)
    print(f"qubits: unknown Python task kind {kind!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    leave(main())  # a task that finished must not die in the interpreter's teardown (qubits._exit)
