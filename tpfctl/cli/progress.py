"""Progress bars for the commands that take long: on stderr, and only for a person watching.

A bar is drawn only when stdout and stderr are both terminals and the command is not asked for
JSON; otherwise the bar is disabled and draws nothing, so what scripts read stays as it was.
While a bar is drawn, what the command prints to stdout goes above it (rich's redirection):
written straight to the same screen, a line would land in the middle of the bar.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)


def for_people(*, as_json: bool = False) -> bool:
    """Output a person reads: not JSON, and stdout a terminal (not a file or a pipe)."""
    return not as_json and sys.stdout.isatty()


def bars(*, wanted: bool, console: Console | None = None) -> Progress:
    """A ``Progress`` on stderr (or ``console``), disabled unless ``wanted`` and a terminal."""
    console = console or Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),  # room for the description at 80 columns
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not (wanted and console.is_terminal),
    )
