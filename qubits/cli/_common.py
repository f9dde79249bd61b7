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
"""Tables, colours and progress go to stderr; --json and ids go to plain stdout."""


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


def configure_logging(level: str, as_json: bool) -> None:
    """Send log records to stderr, as text or one JSON object a line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if as_json else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


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
    already; -f only where no other option took the letter)."""
    taken = parser._option_string_actions
    if "--directory" not in taken:
        parser.add_argument("-C", "--directory", default=".", metavar="DIR", help="the project folder (default: here, or the nearest one above with a Qfile)")
    if "--qfile" not in taken:
        letters = () if "-f" in taken else ("-f",)
        parser.add_argument(*letters, "--qfile", metavar="FILE", help="the Qfile (default: DIR/Qfile, or the nearest one above)")
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


def print_json(obj: Any) -> None:
    """Machine-readable output on plain stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
