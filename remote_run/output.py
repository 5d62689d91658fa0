"""The one way remote-run talks: its own messages on stderr as `remote-run: ...`, the program's
output (a run's log, a table, a listing) on stdout."""

import sys


def say(message: str) -> None:
    """A message of remote-run's own, on stderr."""
    print(f"remote-run: {message}", file=sys.stderr, flush=True)


def show(text: str) -> None:
    """Output of the program or task itself (a GPU table, a run listing), on stdout."""
    print(text, flush=True)


def table(rows) -> str:
    """Rows of cells as left-aligned columns."""
    rows = [tuple(str(cell) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
