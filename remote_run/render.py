"""Runner templates: find them, and bake validated options into them as Python literals."""

from __future__ import annotations

import math
import re
from pathlib import Path

from .errors import Failure

BLOCK_START = "# --- options (remote-run renders these) ---"
BLOCK_END = "# --- end options ---"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")


def runners_dir() -> Path:
    """runners/ beside the package in a checkout, or inside it in an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "runners", here.parent / "runners"):
        if (candidate / "hlb_workspace.py").is_file():
            return candidate
    raise Failure(f"the runner templates are missing from {here}; reinstall remote-run")


def template(name: str) -> str:
    return (runners_dir() / name).read_text(encoding="utf-8")


def literal(name: str, value) -> str:
    """``repr`` of a value that is safe to place in code: numbers, booleans, None, identifiers."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Failure(f"{name}={value!r} is not a finite number")
        return repr(value)
    if isinstance(value, str) and _IDENTIFIER.match(value):
        return repr(value)
    raise Failure(f"{name}={value!r} cannot be baked into a runner: only numbers, booleans and dotted names are allowed")


def render(text: str, options: dict) -> str:
    """Replace ``NAME = ...`` lines inside the options block; every option must be there."""
    start, end = text.find(BLOCK_START), text.find(BLOCK_END)
    if start < 0 or end < start:
        raise ValueError("runner template has no options block")
    block = text[start:end]
    for name, value in options.items():
        block, count = re.subn(rf"(?m)^{re.escape(name)} = .*$", lambda _: f"{name} = {literal(name, value)}", block)
        if count != 1:
            raise ValueError(f"runner template has no option {name}")
    return text[:start] + block + text[end:]
