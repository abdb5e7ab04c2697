"""What every subcommand shares: the output format option, printing results, and user errors.

Results go to stdout (a rich table, or JSON with ``--format json``); progress, logs and warnings go to stderr.
Exit codes: 0 ok, 1 the run failed, 2 a usage or config error (``Error: ...`` without a traceback).
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

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
ModelArgOption = typer.Option([], "--model-arg", help="key=value passed to a --model factory (repeat it).")
ExampleOption = typer.Option(
    None,
    "--example",
    help="With a --model of your own: the shape of one example "
    "(3,32,32) or a .pt file of inputs; default: an input read off the model.",
)


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


class InitlabGroup(TyperGroup):
    """typer's command group, with click's usage errors (an unknown command or option, a value of the wrong type,
    a missing argument) in initlab's form: ``Error: <what>. <how to fix>`` on stderr, exit code 2 — typer would
    print a usage line and a boxed panel instead."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        run = functools.partial(super().main, args, prog_name, complete_var, False, windows_expand_args, **extra)
        if not standalone_mode:
            return run()
        try:
            code = run()  # not standalone: typer.Exit comes back as its exit code, click's errors are raised
        except typer.TyperException as error:  # click's UsageError, BadParameter, NoSuchOption, ... (exit 2)
            if type(error).__name__ != "NoArgsIsHelpError":  # bare `initlab`: typer has printed the help
                stderr.print(f"[bold red]Error:[/] {escape(_usage_text(error))}", markup=True, highlight=False)
            sys.exit(2)
        except typer.Abort:
            stderr.print("Aborted.", highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _usage_text(error: typer.TyperException) -> str:
    message = str(getattr(error, "format_message", error.__str__)())
    message = message[:1].lower() + message[1:].rstrip()
    message += "" if message.endswith(".") else "."
    ctx = getattr(error, "ctx", None)
    if ctx is None:
        return message
    if isinstance(ctx.command, TyperGroup):  # at the top: an unknown command or option
        commands = ", ".join(ctx.command.list_commands(ctx))
        return f"{message} Accepted commands: {commands}. See `{ctx.command_path} --help`."
    return f"{message} See `{ctx.command_path} --help` for every option and the values it accepts."
