"""The ``tpf`` command. Each command group lives in its own module and registers here."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from tpf.errors import TpfError
from tpfctl import lifeline

app = typer.Typer(
    name="tpf",
    help="Durable pipeline executions on DynamoDB, SQS and S3.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)


def _register() -> None:
    from tpfctl.cli import (
        approvals,
        bench,
        demo,
        dlq,
        executions,
        infra,
        operations,
        provider,
        release,
        roles,
        up,
        upload,
        workers,
    )

    app.add_typer(infra.app, name="infra")
    app.add_typer(executions.executions, name="executions")
    app.add_typer(dlq.app, name="dlq")
    app.add_typer(approvals.app, name="approvals")
    app.add_typer(workers.app, name="workers")
    app.add_typer(release.app, name="release")
    for group in (
        bench.app,
        demo.app,
        up.app,
        upload.app,
        roles.app,
        executions.app,
        operations.app,
        provider.app,
    ):
        app.registered_commands.extend(group.registered_commands)


def main() -> None:
    """Entry point: framework errors become one line on stderr and exit code 2."""
    lifeline.follow_owner()
    _register()
    try:
        app(standalone_mode=False)
    except TpfError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        _exit_if_explained(exc)
        # Matched by shape, not class: typer may bundle its own copy of click.
        exit_code = getattr(exc, "exit_code", None)
        if not isinstance(exit_code, int):
            raise
        if type(exc).__name__ != "Exit":
            exc.show()  # type: ignore[attr-defined]
        sys.exit(exit_code)


def _exit_if_explained(exc: Exception) -> None:
    """Start-up failures whose cause is outside the code (settings, substrate) in one line."""
    from tpf.settings import explain_invalid
    from tpf.substrate import explain_failure

    message = explain_invalid(exc) or explain_failure(exc)
    if message:
        err.print(f"[red]error:[/red] {escape(str(message))}", highlight=False, soft_wrap=True)
        sys.exit(2)
