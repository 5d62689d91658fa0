"""A fake host for the fast tier: the real Host (ssh argv, error translation, streams) over a
scripted "machine" instead of processes, so task logic runs in-process with no network."""

from __future__ import annotations

import shlex

from invoke.runners import Result

from remote_run import ship
from remote_run.transport import Host


class FakeHost(Host):
    """``respond(argv, stdin) -> (stdout, stderr, exit status)`` answers each command; ``argv`` is
    what would run on the host (unwrapped from ssh). ``seen`` lists those argvs in order."""

    def __init__(self, settings, respond):
        super().__init__(settings, context=None)
        self.respond = respond
        self.seen: list[list[str]] = []

    def prestart(self, mode, *, own_session=False):
        """Nothing starts early on the scripted machine: each command is answered when it is run."""

    def local(self, argv, *, hide=False, stream=None, err_stream=None, stdin=None, timeout=None, env=None,
              own_session=False, process=None):
        inner = shlex.split(argv[-1]) if argv[0] == "ssh" else list(argv)
        self.seen.append(inner)
        stdout, stderr, exited = self.respond(inner, stdin)
        if stream is not None and stdout:
            stream.write(stdout)
        if err_stream is not None and stderr:
            err_stream.write(stderr)
        return Result(stdout=stdout, stderr=stderr, exited=exited, command=shlex.join(argv))


def launcher_args(argv: list[str]) -> list[str] | None:
    """The mode and arguments of a host program command (remote_run.ship), or None for another command."""
    return ship.mode_of(argv)


def mode(argv: list[str]) -> str | None:
    """The host program mode of a host argv, or None."""
    return (launcher_args(argv) or [None])[0]
