"""Leaving without the interpreter's teardown still does what a normal exit does first."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PROGRAM = textwrap.dedent(
    """
    import atexit, sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path
    from qubits._exit import leave

    out = Path(sys.argv[1])
    atexit.register(lambda: out.with_suffix(".atexit").write_text("ran"))

    def late():
        time.sleep(0.3)
        out.with_suffix(".thread").write_text("finished")

    threading.Thread(target=late).start()
    pool = ThreadPoolExecutor(2)  # left open, as programs do: its idle workers must not hang the exit
    pool.submit(time.sleep, 0.1)
    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()  # a daemon is not waited for
    sys.stdout.write("buffered, not yet flushed")
    leave(7)
    """
)


def test_leave_waits_for_threads_runs_atexit_flushes_and_keeps_the_code(tmp_path: Path) -> None:
    out = tmp_path / "marks"
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(out)],
        capture_output=True,
        text=True,
        timeout=20,
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},  # stdout buffered, as in a task
    )
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == "buffered, not yet flushed"
    assert out.with_suffix(".atexit").read_text() == "ran"
    assert out.with_suffix(".thread").read_text() == "finished"
