"""`clean`: delete REMOTE_DIR on the host (host.clean), only if remote-run created it and no run is live."""

from __future__ import annotations

from .host.control import ours
from .transport import Host


def clean(host: Host, *, data: bool) -> str:
    """Delete REMOTE_DIR (keeping data/ unless ``data``); the host's one-line account of it."""
    root = host.settings.remote_dir
    result = host.run(host.program("clean", root, "1" if data else "0"), hide=True)
    if result.exited:
        raise host.failed(result, f"cleaning {root} on")
    lines = ours(result.stderr.splitlines())
    return lines[-1] if lines else f"cleaned {root}"
