"""The workspace's own project file, pyproject.toml, read once for whoever needs it (the run
environment of its examples, the project's own dependencies)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .errors import Failure

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

_AT = re.compile(r"\s*\(at line (\d+), column \d+\)\s*$")


def read_pyproject(workspace: Path) -> dict:
    """The workspace's pyproject.toml as a dict; {} when there is none. A file that cannot be read
    or parsed is a one-line Failure naming the file and the line."""
    path = Path(workspace) / "pyproject.toml"
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return {}
    except IsADirectoryError:
        raise Failure(f"{path} is a directory", "remove it or make it the project's pyproject.toml") from None
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror}", "make it readable") from None
    except UnicodeDecodeError:
        raise Failure(f"{path} is not UTF-8 text", "save it as UTF-8 (TOML requires it)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _AT.search(message)
        where = f" line {found.group(1)}" if found else ""
        raise Failure(f"{path}{where}: {_AT.sub('', message)}", "fix the TOML there (https://toml.io)") from None


def tool_table(workspace: Path) -> dict:
    """`[tool.remote-run]` of the workspace's pyproject.toml; {} when absent."""
    table = read_pyproject(workspace).get("tool", {}).get("remote-run", {})
    if not isinstance(table, dict):
        raise Failure(f"{Path(workspace) / 'pyproject.toml'}: tool.remote-run is not a table",
                      "write it as a [tool.remote-run] section")
    return table
