"""`clean`: delete REMOTE_DIR on the host (host.clean), only if remote-run created it, it mirrors
this checkout (or --take-over) and no run is live; without --yes, say what it would delete."""

from __future__ import annotations

import json

from . import checkout
from .errors import Failure
from .host.control import ours
from .transport import Host


def preview(host: Host, *, data: bool, take_over: bool) -> Failure | None:
    """What `clean --yes` would delete, and whose runs, as the Failure a clean without --yes ends
    with (None: REMOTE_DIR does not exist, nothing to clean)."""
    s = host.settings
    found = checkout.whose(host)
    if not found["exists"]:
        return None
    what = f"{host.label}:{s.remote_dir}" + ("" if data else " (keeping its data/ dataset cache)")
    theirs = found["checkout"] is not None and not checkout.is_ours(s, found["checkout"])
    again = "--yes --take-over" if theirs else "--yes"
    return Failure(f"this would delete {what}, with {checkout.runs_of(s, found['checkout'], found['runs'])}",
                   f"run again with {again} to do it" + ("" if take_over or not theirs
                                                          else ", or set REMOTE_DIR to this checkout's own"))


def clean(host: Host, *, data: bool, take_over: bool = False) -> str:
    """Delete REMOTE_DIR (keeping data/ unless ``data``); the host's one-line account of it."""
    root = host.settings.remote_dir
    mine = json.dumps(checkout.spec(host.settings, take_over=take_over))
    result = host.run(host.program("clean", root, "1" if data else "0", mine), hide=True)
    if result.exited:
        raise host.failed(result, f"cleaning {root} on")
    lines = ours(result.stderr.splitlines())
    return lines[-1] if lines else f"cleaned {root}"
