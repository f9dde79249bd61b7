"""The qubits command line: a thin layer over the Python API.

Each verb lives in its own module (``_agent.py``, ``_jobs.py`` …) exposing ``register(subparsers)``;
the parser sets ``func(args) -> int``. This is the only place that configures logging and uses rich.

Exit codes (stable):
  0  success
  1  the work failed (a task or job failed, a check did not pass)
  2  usage error (bad arguments, a Qfile or batch file that does not load)
  3  the jobspace could not be used (missing bucket, access denied, unreachable, unsafe store)
  4  not found (no such job or task)
  5  timed out waiting
  130 interrupted
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from qubits._exit import leave

from ._help import decorate

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_JOBSPACE = 3
EXIT_NOT_FOUND = 4
EXIT_TIMEOUT = 5
EXIT_INTERRUPTED = 130

# Verb modules, in the order they appear in --help.
_MODULES = ["_jobs", "_agent", "_doctor", "_make", "_batch", "_ops", "_dashboard"]


def env_default(name: str, default: str | None = None) -> str | None:
    """The value of environment variable ``name``, for an option's default."""
    return os.environ.get(name, default)


def add_jobspace_option(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """--jobspace URL, bound to QUBITS_JOBSPACE."""
    parser.add_argument(
        "--jobspace",
        "-j",
        default=env_default("QUBITS_JOBSPACE"),
        metavar="URL",
        help="the jobspace: a path, file://, s3://bucket/prefix?endpoint=…, gs://, az:// (env QUBITS_JOBSPACE)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qubits",
        description="Distributed work with no master: the only shared state is a bucket or a directory.",
        epilog="Exit codes: 0 ok, 1 failed, 2 usage, 3 jobspace unusable, 4 not found, 5 timed out.",
    )
    parser.add_argument("--log-level", default=env_default("QUBITS_LOG_LEVEL", "WARNING"), help="(env QUBITS_LOG_LEVEL)")
    parser.add_argument("--log-json", action="store_true", default=bool(env_default("QUBITS_LOG_JSON")), help="structured JSON logs on stderr (env QUBITS_LOG_JSON)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in _MODULES:
        try:
            module = importlib.import_module(f"qubits.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"qubits.cli.{name}":
                continue
            raise
        module.register(sub)
    decorate(parser)
    return parser


def run(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the verb, and return its exit code."""
    from ._common import configure_logging, run_verb

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    configure_logging(args.log_level, args.log_json)
    return run_verb(args)


def main(argv: list[str] | None = None) -> None:
    """The console script: run, then exit with the verb's code."""
    try:
        code = run(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
    leave(code)  # obstore's threads can abort the interpreter's teardown: see qubits._exit
