"""The one place where argument lists become shell command lines."""

from __future__ import annotations

import shlex
from collections.abc import Sequence


def join(argv: Sequence[str]) -> str:
    """Quote every argument so a POSIX shell sees exactly ``argv``; nothing is ever spliced."""
    return shlex.join(str(arg) for arg in argv)


def script(body: str, *args: str, name: str = "remote-run") -> list[str]:
    """An argv running a fixed ``sh`` script; values reach it only as positional parameters."""
    return ["sh", "-c", body, name, *[str(a) for a in args]]


def summary(argv: Sequence[str]) -> str:
    """``join(argv)`` with inline scripts shortened, for logs and run records."""
    return join(f"<{len(a.splitlines())}-line script>" if "\n" in a else a for a in argv)
