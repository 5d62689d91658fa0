"""`clean`: delete REMOTE_DIR on the host (host.clean), only if remote-run created it and no run is live."""

from __future__ import annotations

from .errors import Failure
from .host.control import ours
from .transport import Host


def clean(host: Host, *, data: bool) -> str:
    """Delete REMOTE_DIR (keeping data/ unless ``data``); the host's one-line account of it."""
    root = host.settings.remote_dir
    result = host.run(host.program("clean", root, "1" if data else "0"), hide=True)
    lines = ours(result.stderr.splitlines())
    if result.exited:
        raise Failure(lines[-1] if lines else f"cleaning {host.label}:{root} failed (exit {result.exited}): {result.stderr.strip()[-300:]}")
    return lines[-1] if lines else f"cleaned {root}"
