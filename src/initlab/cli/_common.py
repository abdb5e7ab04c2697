"""What every subcommand shares: the output format option, printing results, and user errors.

Results go to stdout (a rich table, or JSON with ``--format json``); progress, logs and warnings go to stderr.
Exit codes: 0 ok, 1 the run failed, 2 a usage or config error (``Error: ...`` without a traceback).
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from enum import StrEnum
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from initlab._errors import InitlabError

P = ParamSpec("P")
R = TypeVar("R")

# Piped output is read by people too (a table wrapped at 80 columns is unreadable): 160 columns unless a terminal.
stdout = Console(width=None if sys.stdout.isatty() else 160)
stderr = Console(stderr=True, soft_wrap=True)


class Format(StrEnum):
    table = "table"
    json = "json"


FormatOption = typer.Option(Format.table, "--format", help="Output: a table for people, or json for programs.")


def emit(result: Any, fmt: Format) -> None:
    """Print a result on stdout as a table or as JSON."""
    if fmt is Format.json:
        payload = result.to_dict() if hasattr(result, "to_dict") else result
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        stdout.print(result)


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """The command line's boundary. An InitlabError, or an OS error on a path the user gave (a folder that does
    not exist, a read-only place, a file where a folder should be), becomes ``Error: ...`` on stderr and exit code
    2, without a traceback. Anything else is a bug: its traceback is shown, with a line that says so (exit 1)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except InitlabError as error:
            _error(str(error))
        except OSError as error:  # the paths a command reads or writes are the user's
            where = f" {error.filename}" if error.filename else ""
            _error(f"cannot use{where}: {error.strerror or error}. Accepted: a path whose folder exists and that you "
                   "may read or write. Pass another path, create its folder, or fix its permissions.")  # fmt: skip
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception:
            traceback.print_exc()
            bug = (
                "This is a bug in initlab, not a problem with your input: please report it to the initlab issue "
                "tracker with the command you ran and the traceback above."
            )
            stderr.print(bug, highlight=False)
            raise typer.Exit(1) from None

    return wrapper


def _error(message: str) -> NoReturn:
    stderr.print(f"[bold red]Error:[/] {escape(message)}", markup=True, highlight=False)
    raise typer.Exit(2) from None
