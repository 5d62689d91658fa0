"""The remote Python environment: one command that builds REMOTE_DIR/.venv or proves it current
(the host side is remote_run/host/installer.py), and the check a run's command carries."""

from __future__ import annotations

import hashlib
import json

from .settings import Settings

FORMAT = 1  # bump when the bootstrap changes what it builds
# Seconds without a line from the installer before the host sends a progress line: on a terminal
# they redraw one line, elsewhere (CI logs) each is a line of its own.
TICK_TERMINAL = 1
TICK_LOG = 5


def stamp(settings: Settings) -> str:
    """A hash of everything that determines the environment."""
    requirements = settings.workspace / "requirements.txt"
    inputs = {
        "format": FORMAT,
        "index": settings.torch_index_url,
        "torch": list(settings.torch_packages),
        "extra": list(settings.pip_packages),
        "requirements": requirements.read_bytes().hex() if requirements.is_file() else None,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


def check(host) -> dict | None:
    """The run command's "env" check: the venv's stamp, or (REMOTE_PYTHON, `local`) the interpreter
    itself; None when runs need no environment (RUN_ENVIRONMENT docker or none)."""
    if host.settings.run_environment != "auto":
        return None
    if host.uses_venv:
        return {"kind": "venv", "stamp": stamp(host.settings)}
    return {"kind": "probe"}


def skipped(host) -> str | None:
    """Why bootstrap builds nothing (RUN_ENVIRONMENT docker or none), as one line; None when it builds."""
    if host.settings.run_environment == "docker":
        return ("bootstrap: nothing to build, runs start their own containers "
                "(RUN_ENVIRONMENT=docker; the host's python3 runs only remote-run itself)")
    if host.settings.run_environment == "none":
        return f"bootstrap: nothing to build, runs use {host.python} as it is (RUN_ENVIRONMENT=none)"
    return None


def bootstrap_payload(settings: Settings, force: bool, terminal: bool) -> dict:
    """What the host program's `bootstrap` takes: it says "up to date" at once when the stamp matches."""
    return {
        "root": settings.remote_dir,
        "stamp": stamp(settings),
        "force": force,
        "installer": settings.bootstrap_installer,
        "torch_index": settings.torch_index_url,
        "torch": list(settings.torch_packages),
        "extra": list(settings.pip_packages),
        "tick": TICK_TERMINAL if terminal else TICK_LOG,
    }
