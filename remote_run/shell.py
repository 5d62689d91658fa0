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
    """``join(argv)`` with inline scripts and long arguments shortened, for logs and run records."""
    def short(arg: str) -> str:
        if "\n" in arg:
            return f"<{len(arg.splitlines())}-line script>"
        return f"<{len(arg)}-character argument>" if len(arg) > 200 else arg

    return join(short(str(a)) for a in argv)
