"""The qubits command line: a thin layer over the Python API.

Each verb lives in its own module (``_agent.py``, ``_jobs.py`` …) exposing ``register(subparsers)``;
the parser sets ``func(args) -> int``. This is the only place that configures logging and uses rich.

Exit codes (stable):
  0  success
  1  the work failed (a task or job failed, a check did not pass)
  2  usage error (bad arguments, a Qfile or batch file that does not load, a risky request without
     its explicit argument, an agent started as root without --allow-root)
  3  the jobspace could not be used (missing bucket, access denied, unreachable, unsafe store)
  4  not found (no such job or task, no agent on this host to pause, no failed task to retry)
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
_MODULES = ["_jobs", "_agent", "_doctor", "_make", "_batch", "_ops", "_schedule", "_dashboard"]


def env_default(name: str, default: str | None = None) -> str | None:
    """The value of environment variable ``name``, for an option's default."""
    return os.environ.get(name, default)


def add_jobspace_option(parser: argparse.ArgumentParser, required: bool = False, *, project: bool = True) -> None:
    """--jobspace URL, bound to QUBITS_JOBSPACE; with ``project``, also the project options (-C DIR …),
    so that in a Qfile project the verb finds the project's jobspace without --jobspace."""
    parser.add_argument(
        "--jobspace",
        "-j",
        default=env_default("QUBITS_JOBSPACE"),
        metavar="URL",
        help="the jobspace: a path, file://, s3://bucket/prefix?endpoint=…, gs://, az:// (env QUBITS_JOBSPACE; "
        + ("default: the Qfile project's, from -C DIR or here; " if project else "required; ")
        + "its options and credentials: qubits --help)",
    )
    if project:
        from ._common import add_project_options

        add_project_options(parser)


URL_HELP = """Jobspace URLs (-j URL or QUBITS_JOBSPACE; docs/stores.md):
  /path, file:///path     a local directory      memory://NAME   this process only
  s3://BUCKET[/PREFIX]    S3 or compatible       gs://BUCKET[/PREFIX], az://CONTAINER[/PREFIX]
  options: endpoint=http://HOST:PORT (s3, gs, az; S3 also AWS_ENDPOINT_URL_S3), region= (s3),
    timeout= (s per request, 5), budget= (s per call with retries, 10), attempts= (8),
    use_emulator=true (az), and obstore's own store settings (e.g. skip_signature=true)
  credentials, from the environment: S3 AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
    web identity, container or instance credentials (export a profile: aws configure
    export-credentials --profile NAME --format env); GCS GOOGLE_SERVICE_ACCOUNT(_KEY) or application
    default credentials; Azure AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or
    AZURE_STORAGE_SAS_TOKEN, a service principal or managed identity
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qubits",
        description="Distributed work with no master: the only shared state is a bucket or a directory.",
        epilog=URL_HELP + "\nExit codes: 0 ok, 1 failed, 2 usage, 3 jobspace unusable, 4 not found, 5 timed out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from qubits import __version__

    parser.add_argument("--version", action="version", version=f"qubits {__version__}")
    parser.add_argument("--log-level", default=env_default("QUBITS_LOG_LEVEL"), metavar="LEVEL",
                        help="DEBUG, INFO, WARNING … (default WARNING; the agent logs its claims, commits, releases, "
                             "takeovers and drains at INFO; env QUBITS_LOG_LEVEL)")
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
    from qubits.errors import UsageError

    from ._common import configure_logging, fail, run_verb

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        configure_logging(args.log_level, args.log_json, verb_level=getattr(args, "verb_log_level", None))
    except UsageError as exc:
        fail(str(exc))
        return EXIT_USAGE
    return run_verb(args)


def main(argv: list[str] | None = None) -> None:
    """The console script: run, then exit with the verb's code."""
    try:
        code = run(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
    leave(code)  # obstore's threads can abort the interpreter's teardown: see qubits._exit
