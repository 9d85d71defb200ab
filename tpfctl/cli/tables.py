"""Tables that read at 80 columns: short ids, statuses never cut, the rest behind ``--wide``.

A table names its columns once, with what each is: an id is shortened (as git shortens a
commit), a status is kept whole whatever the width, a wide column appears only with ``--wide``.
Everything else wraps. Commands take ids whole, as ``--wide`` shows them; ``--json`` never
comes here, so scripts always get every field in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tpfctl.cli.common import out

SHORT_ID = 8
"""Characters of an id shown by default: enough to tell apart a screenful of executions."""

Wide = Annotated[
    bool, typer.Option("--wide", help="Every column, and ids in full (tables show 8 chars).")
]


def short_id(value: str | None) -> str:
    return "" if value is None else value[:SHORT_ID]


@dataclass(frozen=True)
class Column:
    header: str
    identifier: bool = False
    """An id: its first characters by default, whole (folded, never cut) with ``--wide``."""
    whole: bool = False
    """Never wrapped, never cut (a status; an id a command takes back): the others give way."""
    wide: bool = False
    """Shown only with ``--wide``: detail that would crowd out the rest at 80 columns."""


def build_table(
    title: str | None, columns: Sequence[Column], rows: Sequence[Sequence[Any]], *, wide: bool
) -> Table:
    """The table of ``rows`` (one value per column, full ids) as ``--wide`` or not shows it."""
    shown = [i for i, c in enumerate(columns) if wide or not c.wide]
    t = Table(title=title, title_justify="left", header_style="bold")
    for i in shown:
        column = columns[i]
        if column.whole:
            # The widest value as the minimum: rich shrinks every other column first.
            longest = max([len(column.header), *(len(_text(r[i])) for r in rows)])
            t.add_column(column.header, no_wrap=True, min_width=longest, overflow="ignore")
        else:
            t.add_column(column.header, overflow="fold")
    for row in rows:
        t.add_row(*(_cell(columns[i], row[i], wide) for i in shown))
    return t


def _cell(column: Column, value: Any, wide: bool) -> str:
    text = _text(value)
    return short_id(text) if column.identifier and not wide else text


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def table(
    title: str | None,
    columns: Sequence[Column | str],
    rows: Sequence[Sequence[Any]],
    *,
    wide: bool = False,
    console: Console | None = None,
) -> None:
    """Print a table; a column given as a plain header is an ordinary one."""
    spec = [c if isinstance(c, Column) else Column(c) for c in columns]
    (console or out).print(build_table(title, spec, rows, wide=wide))
