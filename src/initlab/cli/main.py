"""The ``initlab`` command: wiring only. Each subcommand lives in its own module."""

from __future__ import annotations

import typer

from initlab.cli._common import InitlabGroup
from initlab.cli.audit_cmd import audit_command
from initlab.cli.demo_cmd import demo_command
from initlab.cli.init_cmd import init_command
from initlab.cli.predict_cmd import predict_command
from initlab.cli.report_cmd import report_command
from initlab.cli.run_cmd import HELP as RUN_HELP
from initlab.cli.run_cmd import run_command
from initlab.cli.schemes_cmd import schemes_command
from initlab.cli.sweep_cmd import sweep_command
from initlab.cli.verify_cmd import verify_command

app = typer.Typer(
    name="initlab",
    cls=InitlabGroup,
    help="Initialize deep networks correctly; predict and watch vanishing/exploding gradients; compare remedies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("demo")(demo_command)
app.command("schemes")(schemes_command)
app.command("init")(init_command)
app.command("predict")(predict_command)
app.command("audit")(audit_command)
app.command("run", help=RUN_HELP, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    run_command
)
app.command("sweep")(sweep_command)
app.command("report")(report_command)
app.command("verify")(verify_command)


if __name__ == "__main__":  # pragma: no cover
    app(prog_name="initlab")
