"""A long-lived Python worker: ``python -m nodeagent._pyworker``, fed one task at a time over a pipe.

The agent's pool (``_pool.py``) keeps a few of these per agent, so a Python task (kinds "python" and
"map") does not pay an interpreter start and its imports. Protocol, one JSON line each way:

    agent → worker (stdin):   {"scratch": "...", "cwd": "...", "env": {...}}
    worker → agent (stdout):  {"code": 0}

Before the first task the worker moves its control pipes off fds 0 and 1 (user code printing or reading
cannot touch them); during a task fds 1 and 2 are the task's ``stdout.log`` and ``stderr.log`` in its
scratch folder (the agent uploads them as the task's output), its environment is the task's, and it
runs in the task's folder. The agent stops or kills a task by signalling the worker's process group;
the worker then dies and the pool starts another. EOF on stdin ends the worker.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from qubits.protocol import kinds, leave


def _set_environ(target: dict[str, str]) -> None:
    """Make os.environ equal ``target``, touching only what differs (two tasks of a job differ in a few
    variables; clearing and refilling all of them was a fifth of a pooled task's CPU)."""
    env = os.environ
    for k in [k for k in env if k not in target]:
        del env[k]
    for k, v in target.items():
        if env.get(k) != v:
            env[k] = v


def _run(request: dict[str, Any], base_env: dict[str, str], base_path: list[str]) -> int:
    scratch = Path(request["scratch"])
    cwd = str(request["cwd"])
    _set_environ({str(k): str(v) for k, v in request["env"].items()})
    os.chdir(cwd)
    code_dir = os.environ.get("QUBITS_CODE")
    sys.path[:] = ([code_dir] if code_dir else []) + base_path
    out = os.open(scratch / "stdout.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(scratch / "stderr.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_err = os.dup(2)
    os.dup2(out, 1)
    os.dup2(err, 2)
    try:
        spec = json.loads((scratch / "spec.json").read_text())
        kind = spec["task"].get("kind")
        run = kinds.runner(str(kind)) if kinds.pooled(str(kind)) else None
        if run is not None:
            return run(spec, scratch)
        print(f"qubits: a pooled worker does not run tasks of kind {kind!r}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the worker survives whatever a task does
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(saved_err, 2)
        for fd in (devnull, saved_err, out, err):
            os.close(fd)
        _set_environ(base_env)


def main() -> int:
    control_in = os.fdopen(os.dup(0), "rb", buffering=0)
    control_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    for kind in ("python", "map"):  # warm: the first task should not pay for imports
        kinds.runner(kind)

    base_env = dict(os.environ)
    base_path = list(sys.path)
    control_out.write(b'{"ready": true}\n')
    while True:
        line = control_in.readline()
        if not line:
            return 0
        code = _run(json.loads(line), base_env, base_path)
        control_out.write(json.dumps({"code": code}).encode() + b"\n")


if __name__ == "__main__":
    leave(main())  # see qubits._exit
