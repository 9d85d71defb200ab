"""What every script shares with the operator: the --json switch, tables, one-line errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from scripts.ops.items import when
from tpf.errors import TpfError

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

# Piped output (grep, less) keeps whole ids instead of squeezing the table into 80 columns.
_wide = sys.stdout.isatty() or "COLUMNS" in os.environ
out = Console(width=None if _wide else 1000, soft_wrap=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_table(title: str | None, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """``columns`` are keys of the rows; ``...EpochMs`` values are shown as UTC timestamps."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column.removesuffix("EpochMs"))
    for row in rows:
        cells = [when(row[c]) if c.endswith("EpochMs") else row[c] for c in columns]
        table.add_row(*("" if v is None else str(v) for v in cells))
    out.print(table)


def run(command: Callable[..., None]) -> None:
    """Run ``command`` as a one-command CLI; AWS and setup errors end in one line, exit 1."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(command)
    try:
        app()
    except (TpfError, BotoCoreError, ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
