"""Leaving a process without the interpreter's teardown.

obstore runs its requests on a Tokio runtime whose worker threads are never told to stop. If one of
them touches Python while ``Py_Finalize`` tears the interpreter down, the process dies of SIGABRT (or
SIGBUS) after its work is done: a task that succeeded would be reported "killed by signal 6" and run
again (seen about once in ten runs of the S3 pipeline test). So every qubits entry point that may have
used a jobspace leaves through :func:`leave`: it does what a normal exit does while the interpreter is
whole — lets a thread pool left open wind down, waits for the threads a program started and did not
mark daemon, runs its ``atexit`` handlers, flushes the standard streams — and then ends the process
with ``os._exit``.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import NoReturn


def leave(code: int) -> NoReturn:
    """Exit with ``code`` after a normal exit's work, skipping only the interpreter's teardown."""
    # What CPython's own exit runs first, in its order: threading's exit hooks (they let the idle workers
    # of a thread pool left open go) and the wait for non-daemon threads, then the atexit handlers.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None and threading.current_thread() is threading.main_thread():
        shutdown()
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if run_exitfuncs is not None:
        run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed or replaced by the program: nothing to flush
            pass
    os._exit(code)

