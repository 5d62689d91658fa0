"""Which checkout of the workspace this is: a random id kept in RUNS_DIR/.checkout, which a sync
records in REMOTE_DIR (remote_run.host.owner), and the words for whose runs a REMOTE_DIR holds.

Why a random id in the workspace's local state, not this machine's name and the workspace's
path: it moves with the checkout (moved or renamed, it is still the same one), while a fresh clone
has none (RUNS_DIR is never committed or synced) and makes its own; where it stands in the very
place of the checkout a REMOTE_DIR mirrors, it replaced that one (host.owner.replaced). A copy made with `cp -r` keeps
it, and so counts as the same checkout: deleting RUNS_DIR/.checkout in the copy makes it a new one.
The id tells checkouts apart; it is no secret and authenticates nothing.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from .errors import Failure, Kind
from .host.owner import shown

FILE = ".checkout"
_ID = re.compile(r"[0-9a-f]{32}")


def path(settings) -> Path:
    return settings.runs_dir / FILE


def own_id(settings, *, create: bool = True) -> str | None:
    """This checkout's id, made on first need (``create``; else None when it has none yet)."""
    where = path(settings)
    try:
        found = where.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if not create:
            return None
        found = _make(where)
    except OSError as exc:
        raise Failure(f"cannot read {where} ({exc.strerror})", "check its permissions, or delete it",
                      Kind.ENVIRONMENT) from None
    if not _ID.fullmatch(found):
        raise Failure(f"{where} does not hold a checkout id", "delete it: the next command makes a new one")
    return found


def _make(where: Path) -> str:
    """A new id in ``where`` (mode 0600), unless another command of this checkout made one first."""
    import uuid  # here: it imports platform, 4 ms of every command's start, for a file made once

    made = uuid.uuid4().hex
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        temp = where.with_name(f".{FILE}.{os.getpid()}")
        temp.unlink(missing_ok=True)
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
            handle.write(made + "\n")
        try:
            os.link(temp, where)  # never replaces an id another command wrote meanwhile
        except FileExistsError:
            made = where.read_text(encoding="utf-8").strip()
        finally:
            temp.unlink(missing_ok=True)
    except OSError as exc:
        raise Failure(f"cannot write this checkout's id to {where} ({exc.strerror})",
                      "make RUNS_DIR writable, or set RUNS_DIR to a folder you can write", Kind.ENVIRONMENT) from None
    return made


def origin(settings) -> str:
    """Where this checkout is, as a REMOTE_DIR's record shows it: this machine's name and the workspace."""
    return f"{socket.gethostname()}:{settings.workspace}"


def spec(settings, *, take_over: bool = False) -> dict:
    """This checkout as the host program's checks take it (remote_run.host.owner.other_checkout)."""
    return {"id": own_id(settings), "from": origin(settings), "host": settings.host.spec, "take_over": take_over}


def is_ours(settings, record: dict | None) -> bool:
    """Whether ``record`` (REMOTE_DIR's, host.owner.checkout_of) is this checkout's, or a checkout's
    that stood where this one stands (host.owner.replaced: its next sync takes it over)."""
    return record is not None and (record.get("id") == own_id(settings, create=False)
                                   or record.get("from") == origin(settings))


def whose_runs(settings, label: str, record: dict | None) -> str:
    """One line saying whose runs REMOTE_DIR on ``label`` holds, from its ``record``."""
    where = f"REMOTE_DIR={settings.remote_dir} on {label}"
    if record is None:
        return (f"{where} does not say which checkout it mirrors (last synced by an older remote-run, or never): "
                "its runs may be another checkout's")
    if is_ours(settings, record):
        return f"runs of this checkout ({where})"
    return f"{where} mirrors another checkout ({shown(record)}): these are its runs"


def runs_of(settings, record: dict | None, count: int) -> str:
    """``count`` runs of the checkout of ``record``, in words: "the 3 runs of this checkout", ..."""
    runs = f"{count} run{'' if count == 1 else 's'}"
    if record is None:
        return f"{runs} of a checkout it does not name (last synced by an older remote-run, or never)"
    if is_ours(settings, record):
        return f"the {runs} of this checkout"
    return f"{runs} of another checkout ({shown(record)}), which it mirrors"


def whose(host) -> dict:
    """The host's answer on REMOTE_DIR (host.owner.whose): {"exists", "checkout", "runs"}."""
    import json

    result = host.quick(host.program("whose", host.settings.remote_dir))
    if result.exited:
        raise host.failed(result, "asking which checkout REMOTE_DIR mirrors on")
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise host.failed(result, "asking which checkout REMOTE_DIR mirrors on") from None
