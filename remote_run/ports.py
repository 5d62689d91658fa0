"""Ports of the host on this machine: --port on a followed run, and `inv tunnel` for a detached one.

A forward is added to the host's ControlMaster (``ssh -O forward -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE``,
remote_run.transport.Host.forward), so it costs no connection of its own, and removed with
``-O cancel`` when the run ends or the tunnel is closed. Whether a local port is free is checked
by binding it before anything runs on the host; ssh's own "Port forwarding failed" says the same.
On `local` nothing is forwarded: the run's ports are already this machine's.
"""

from __future__ import annotations

import errno
import signal
import socket
import threading
from contextlib import contextmanager
from typing import NamedTuple

from .errors import Failure, Kind
from .host import states
from .output import say

POLL_SECONDS = 2.0  # how often `inv tunnel` asks whether its run still runs


class Forward(NamedTuple):
    remote: int  # the port on the host (its 127.0.0.1)
    local: int  # the port here (127.0.0.1)

    def __str__(self) -> str:
        return f"127.0.0.1:{self.local} -> port {self.remote}"


def parse(values) -> list[Forward]:
    """--port values: ``6006`` (the same port here) or ``REMOTE:LOCAL`` (``6006:16006``), 1-65535;
    a local port only once."""
    forwards: list[Forward] = []
    for value in values or ():
        text = str(value).strip()
        parts = text.split(":")
        if len(parts) > 2 or not all(p.isdigit() and len(p) <= 5 and 0 < int(p) < 65536 for p in parts):
            raise Failure(f"--port {text!r} is not valid",
                          "give a port 1-65535 (6006), or REMOTE:LOCAL to use another port here (6006:16006)")
        forward = Forward(int(parts[0]), int(parts[-1]))
        if any(f.local == forward.local for f in forwards):
            raise Failure(f"--port: local port {forward.local} is given twice",
                          "give each forward its own local port (REMOTE:LOCAL)")
        forwards.append(forward)
    return forwards


def check_free(forwards: list[Forward]) -> None:
    """Each local port can be listened on right now (a program, or an open tunnel, may hold it)."""
    for forward in forwards:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ssh binds: TIME_WAIT is no obstacle
            try:
                probe.bind(("127.0.0.1", forward.local))
            except OSError as exc:
                raise busy(forward, exc.errno) from None


def busy(forward: Forward, code: int | None = errno.EADDRINUSE) -> Failure:
    """A local port that cannot be listened on: another --port is the fix."""
    if code == errno.EACCES:
        return Failure(f"cannot listen on local port {forward.local}: ports below 1024 need root here",
                       f"choose another local port with --port {forward.remote}:LOCAL "
                       f"(e.g. {forward.remote}:{forward.remote + 10000 if forward.remote < 55536 else 8080})")
    return Failure(f"local port {forward.local} is already in use on this machine "
                   "(another program, or a tunnel that is still open)",
                   f"choose another local port with --port {forward.remote}:LOCAL "
                   f"(e.g. {forward.remote}:{_other(forward.local)})")


def _other(port: int) -> int:
    return port + 10000 if port < 55536 else port - 10000


def open_forwards(host, forwards: list[Forward]) -> list[Forward]:
    """Add the forwards to the host's master connection (starting one if there is none yet)."""
    check_free(forwards)
    if not host.master_running():
        host.quick(["true"], record=False)  # ControlMaster=auto: this command leaves the master behind
    opened: list[Forward] = []
    for forward in forwards:
        result = host.forward(forward.local, forward.remote)
        if result.exited:
            close_forwards(host, opened)
            raise forward_failure(host.label, forward, result.stderr)
        opened.append(forward)
    return opened


def close_forwards(host, forwards: list[Forward]) -> None:
    for forward in forwards:
        try:
            host.forward(forward.local, forward.remote, cancel=True)
        except Failure:
            pass  # the master is gone, and its forwards with it


def forward_failure(label: str, forward: Forward, stderr: str) -> Failure:
    """ssh's answer to ``-O forward`` as our Failure."""
    from .transport import failure

    if "Port forwarding failed" in (stderr or "") or "Address already in use" in (stderr or ""):
        return busy(forward)
    last = [line for line in (stderr or "").splitlines() if line.strip()]
    return failure(label, stderr) or Failure(f"cannot forward port {forward.remote} of {label} "
                                             f"to 127.0.0.1:{forward.local}: "
                                             f"{last[-1] if last else 'ssh said nothing'}", kind=Kind.ENVIRONMENT)


def _local_note(forwards: list[Forward]) -> str:
    moved = [f for f in forwards if f.local != f.remote]
    text = "on `local` nothing is forwarded: the run's ports are this machine's (" + ", ".join(
        f"http://127.0.0.1:{f.remote}" for f in forwards) + ")"
    if moved:
        text += "; REMOTE:LOCAL cannot move them here"
    return text


@contextmanager
def forwarding(host, forwards: list[Forward]):
    """The forwards, open while the body (a followed run) runs."""
    if not forwards:
        yield
        return
    if host.is_local:
        say(_local_note(forwards))
        yield
        return
    opened = open_forwards(host, forwards)
    say("forwarding " + ", ".join(f"port {f.remote} of {host.label} to http://127.0.0.1:{f.local}" for f in opened)
        + " while the run is followed")
    try:
        yield
    finally:
        close_forwards(host, opened)


def tunnel(runs, forwards: list[Forward], run: str = "") -> None:
    """Forward ports for run ``run`` (default: the latest running one) until Ctrl+C or the run ends.
    ``runs`` is a remote_run.pipeline.HostRuns."""
    from . import pipeline

    host = runs.host
    if not forwards:
        raise Failure("give the port(s) to forward with --port, e.g. `inv tunnel --port 6006` "
                      "(REMOTE:LOCAL for another local port)")
    if not host.is_local:
        check_free(forwards)
    row = pipeline.pick(runs, run, want_running=not run)
    if row["state"] not in states.LIVE:
        raise Failure(f"run {row['id']} is {row['state']}, not running: there is nothing to forward")
    if host.is_local:
        say(_local_note(forwards) + f"; run {row['id']}")
        return
    opened = open_forwards(host, forwards)
    say(f"run {row['id']} on {host.label}: "
        + ", ".join(f"port {f.remote} -> http://127.0.0.1:{f.local}" for f in opened)
        + "; Ctrl+C closes the tunnel")
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        while not stop.wait(POLL_SECONDS):
            try:
                state = next((r["state"] for r in runs.listing() if r["id"] == row["id"]), "gone")
            except Failure:
                if stop.is_set():  # Ctrl+C reached the ssh of that question too
                    break
                raise
            if state not in states.LIVE:
                say(f"run {row['id']} is {state}; closing the tunnel")
                break
    finally:
        signal.signal(signal.SIGINT, previous)
        close_forwards(host, opened)
    say("tunnel closed")
