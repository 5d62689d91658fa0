"""The runner files in runners/: found in a checkout or an installed wheel, and read as they are."""

from __future__ import annotations

from pathlib import Path

from .errors import Failure


def runners_dir() -> Path:
    """runners/ beside the package in a checkout, or inside it in an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "runners", here.parent / "runners"):
        if (candidate / "hlb_workspace.py").is_file():
            return candidate
    raise Failure(f"the runner files are missing from {here}", "reinstall remote-run")


def template(name: str) -> str:
    """A runner file's text, unchanged: every run gets the same bytes, its options come as flags."""
    return (runners_dir() / name).read_text(encoding="utf-8")
