"""What every verb shares: logging set-up, error-to-exit-code mapping, the rich console."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from rich.console import Console

import jobspaces
from qubits import errors

from . import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_JOBSPACE, EXIT_NOT_FOUND, EXIT_TIMEOUT, EXIT_USAGE

console = Console(stderr=True, highlight=False)
"""Messages, notes, progress bars and spinners go to stderr."""
out = Console(highlight=False)
"""Tables (jobs, status, nodes), like --json and ids, go to stdout: `qubits jobs | grep` finds them."""


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class _JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, every structured field of the record's ``extra``
    (action, job, task, attempt, node, reason, …) and ``exc`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(
            f"{k}={v}" for k, v in record.__dict__.items() if k in ("action", "job", "task", "attempt", "node", "reason")
        )
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname[0]} {record.name}: {record.getMessage()}" + (f" [{extra}]" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str | None, as_json: bool, *, verb_level: str | None = None) -> None:
    """Send log records to stderr, as text or one JSON object a line: at ``level`` when one is given
    (--log-level), else WARNING, with qubits' own loggers at the verb's ``verb_level`` (the agent: INFO,
    so journalctl shows its claims, commits, releases, takeovers and drains, one line each)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if as_json else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel((level or "WARNING").upper())
        logging.getLogger("qubits").setLevel((verb_level or "NOTSET").upper() if not level else logging.NOTSET)
    except ValueError:
        raise errors.UsageError(f"--log-level {level}: use DEBUG, INFO, WARNING, ERROR or CRITICAL") from None


def fail(message: str) -> None:
    """Print one line saying what went wrong and what to do."""
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)


def run_verb(args: argparse.Namespace) -> int:
    """Run ``args.func`` and map failures to the documented exit codes."""
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        fail("interrupted")
        return EXIT_INTERRUPTED
    except jobspaces.NotFound as exc:
        fail(str(exc))
        return EXIT_NOT_FOUND
    except jobspaces.InvalidURL as exc:  # a URL that cannot be right is a usage error, not a store's fault
        fail(str(exc))
        return EXIT_USAGE
    except jobspaces.JobspaceError as exc:
        fail(str(exc))
        return EXIT_JOBSPACE
    except errors.NotFoundError as exc:
        fail(str(exc))
        return EXIT_NOT_FOUND
    except errors.WaitTimeout as exc:
        fail(str(exc))
        return EXIT_TIMEOUT
    except errors.UsageError as exc:
        fail(str(exc))
        return EXIT_USAGE
    except errors.QubitsError as exc:
        fail(str(exc))
        return EXIT_FAILED


def confirm(question: str, *, otherwise: str) -> bool:
    """Ask ``question`` (y/N) when stdin is a terminal, and say whether the answer was yes. Not on a
    terminal, a risky default is never taken: UsageError(``otherwise``), the explicit way to ask for it."""
    if not sys.stdin.isatty():
        raise errors.UsageError(otherwise)
    console.print(f"{question} [y/N] ", end="", soft_wrap=True)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        answer = ""
    if answer.strip().lower() in ("y", "yes"):
        return True
    console.print("nothing done")
    return False


def add_project_options(parser: argparse.ArgumentParser) -> None:
    """-C/--directory, -f/--qfile and -p/--profile: which Qfile project (each left out if the verb has it
    already). A letter means one option across every verb (tests/unit/test_cli_help.py)."""
    taken = parser._option_string_actions
    if "--directory" not in taken:
        parser.add_argument("-C", "--directory", default=".", metavar="DIR", help="the project folder (default: here, or the nearest one above with a Qfile)")
    if "--qfile" not in taken:
        parser.add_argument("-f", "--qfile", metavar="FILE", help="the Qfile (default: DIR/Qfile, or the nearest one above)")
    if "--profile" not in taken:
        parser.add_argument("-p", "--profile", metavar="NAME", help="a profile of the Qfile (switches jobspace, nodes …)")


def require_jobspace(args: argparse.Namespace) -> str:
    """The --jobspace URL (or QUBITS_JOBSPACE); else, for a verb with project options, the jobspace of the
    Qfile project at -C DIR (default: here or above); else a usage error that says how to give one."""
    url = getattr(args, "jobspace", None)
    if url:
        return str(url)
    if hasattr(args, "directory"):
        from qubits.qfile import project_jobspace

        directory, qfile, profile = args.directory, getattr(args, "qfile", None), getattr(args, "profile", None)
        try:
            return project_jobspace(directory, profile, qfile)
        except errors.UsageError as exc:
            if directory != "." or qfile or profile or "no Qfile" not in str(exc):
                raise  # asked for a project: say what is wrong with it
    raise errors.UsageError("no jobspace: pass --jobspace URL, set QUBITS_JOBSPACE, or run in a Qfile project (or -C DIR)")


def at_least(low: float, **options: float | None) -> None:
    """A usage error naming the first option (``--stop-timeout`` for ``stop_timeout``) below ``low``."""
    for name, value in options.items():
        if value is not None and not value >= low:  # `not >=` also catches NaN
            raise errors.UsageError(f"--{name.replace('_', '-')} must be at least {low:g}, not {value:g}")


def above(low: float, **options: float | None) -> None:
    """A usage error naming the first option that is not greater than ``low``."""
    for name, value in options.items():
        if value is not None and not value > low:
            raise errors.UsageError(f"--{name.replace('_', '-')} must be more than {low:g}, not {value:g}")


def print_json(obj: Any) -> None:
    """Machine-readable output on plain stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
