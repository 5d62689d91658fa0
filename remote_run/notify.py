"""Telling someone a run has ended: NOTIFY_CMD (a local command, for followed runs) and NOTIFY_URL
(a webhook the host's supervisor calls, so a detached run notifies with the laptop closed).

NOTIFY_URL is a secret, like REMOTE_ENV values: it is held as a ``Secret`` (shown, logged and
recorded as "(set, not shown)"), travels to the host only inside a private payload of the host
program (on the SSH channel's stdin) and lives there only in the supervisor's memory
(remote_run/host/notify.py). This module imports nothing of remote-run but ``errors`` at
load time: remote_run.settings takes its parsers from here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from .errors import Failure

COMMAND_TIMEOUT = 30  # seconds NOTIFY_CMD may take before it is stopped
URL_TIMEOUT = 10  # seconds the host waits for NOTIFY_URL's answer
MARKER = ".notified"  # in a run's record folder: NOTIFY_CMD ran for it (once per run)


class Secret:
    """A value that is used but never shown: its str() and repr() hide it (records write
    settings with ``default=str``)."""

    def __init__(self, value: str):
        self.value = value

    def __str__(self) -> str:
        return "(set, not shown)"

    __repr__ = __str__

    def __bool__(self) -> bool:
        return bool(self.value)


# ------------------------------------------------------------------------------- the settings

def parse_command(value: str, loading=None) -> tuple[str, ...]:
    """NOTIFY_CMD: an argument list (shlex rules, never a shell string) whose program exists here."""
    from .settings import bad

    if not value.strip():
        return ()
    try:
        argv = tuple(shlex.split(value))
    except ValueError as exc:
        raise bad("NOTIFY_CMD", value, "check its quotes", why=f"it cannot be split into arguments ({exc})") from None
    program = argv[0] if argv else ""
    if not program or program.startswith("-") or "\0" in value:
        raise bad("NOTIFY_CMD", value,
                  "give a command such as `notify-send remote-run` (a program, then its arguments)")
    if ("/" in program and not os.access(program, os.X_OK)) or ("/" not in program and shutil.which(program) is None):
        raise bad("NOTIFY_CMD", value, why=f"the program {program!r} is not found (not on PATH, or not executable)")
    return argv


def parse_url(value: str, loading=None) -> Secret | None:
    """NOTIFY_URL: an http(s) URL; an error never repeats it (it may hold a token)."""
    value = value.strip()
    if not value:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(value) > 2048
            or re.search(r"[\s\x00-\x1f\x7f]", value)):
        scheme = (parts.scheme if parts is not None and parts.scheme else "none")
        raise Failure(f"NOTIFY_URL is not valid (scheme: {scheme})", "give an http:// or https:// URL such as "
                      "https://ntfy.sh/my-topic or a Slack webhook (the value is not shown: it may hold a token)")
    return Secret(value)


def body_format(url: str) -> str:
    """``text`` for ntfy (ntfy.sh, or a server named ntfy.*): it shows a plain POST body as the
    message; ``json`` for the rest ({"text": ...} is what Slack-compatible webhooks read)."""
    host = (urlsplit(url).hostname or "").lower()
    return "text" if host == "ntfy.sh" or host.startswith("ntfy.") else "json"


def payload(settings) -> dict:
    """What the launcher's ``start`` needs for NOTIFY_URL ({} when unset); the payload carrying it
    must go on stdin (``Host.program_with(..., private=True)``)."""
    secret = settings.notify_url
    if not secret:
        return {}
    return {"notify": {"url": secret.value, "format": body_format(secret.value), "timeout": URL_TIMEOUT}}


# ----------------------------------------------------------------------------- NOTIFY_CMD

def result_line(folder: Path, record) -> str:
    """The run's RESULT line as it was printed (from the record's run.log), else rebuilt."""
    try:
        with open(folder / "run.log", "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 65536))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith("RESULT_"):
            return line.strip()
    if record.result:
        return " ".join([record.result["name"], *(f"{k}={v}" for k, v in record.result["metrics"].items())])
    return ""


def environment(record, folder: Path) -> dict[str, str]:
    """What NOTIFY_CMD finds in its environment about the run."""
    return {
        "REMOTE_RUN_ID": record.run_id,
        "REMOTE_RUN_OUTCOME": record.outcome,
        "REMOTE_RUN_EXIT": "" if record.exit_status is None else str(record.exit_status),
        "REMOTE_RUN_RESULT": result_line(folder, record),
        "REMOTE_RUN_TASK": record.task,
        "REMOTE_RUN_HOST": record.host,
        "REMOTE_RUN_RECORD": str(folder),
    }


def claim(folder: Path) -> bool:
    """True for the one caller that gets to notify for this run (several terminals may complete
    the same record: the one following it, `logs --follow`, `kill`)."""
    try:
        fd = os.open(folder / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    except OSError:
        return False  # no record folder to mark: no notification rather than several
    os.close(fd)
    return True


def run_command(argv: tuple[str, ...], record, folder: Path) -> str | None:
    """Run NOTIFY_CMD for an ended run; a problem is one line (returned), never the run's failure."""
    env = {**os.environ, **environment(record, folder)}
    try:
        done = subprocess.run(list(argv), check=False, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"NOTIFY_CMD did not finish within {COMMAND_TIMEOUT} s and was stopped"
    except OSError as exc:
        return f"NOTIFY_CMD could not start {argv[0]}: {exc.strerror or exc}"
    if done.returncode:
        last = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
        return (f"NOTIFY_CMD failed (exit {done.returncode}){': ' + last[-1][:200] if last else ''}; "
                "the run's outcome is unchanged")
    return None
