"""The one exception type for expected failures: what is wrong, how to fix it, and what kind of
failure it is, which picks the exit status. One line for the user, no traceback."""

from __future__ import annotations

import enum

from invoke.exceptions import Exit

from .host import exits


class Kind(enum.Enum):
    """What kind of failure, and the exit status it gives (the README lists them)."""

    USAGE = exits.USAGE  # bad input or a refused request: nothing was changed
    UNREACHABLE = exits.UNREACHABLE  # the host cannot be reached, or the connection dropped
    ENVIRONMENT = exits.ENVIRONMENT  # a tool, a setting or a directory on either side is not as a run needs it
    GPU = exits.PREFLIGHT  # the GPUs are busy or absent: nothing was started
    RUN = exits.FAILED  # a run (or what doctor examined) failed
    REGRESSION = exits.REGRESSION  # a comparison found a metric worse beyond its tolerance

    @property
    def status(self) -> int:
        return self.value

    @classmethod
    def of(cls, status: int) -> "Kind":
        """The kind of a failure the host program reported with exit ``status`` (host.exits): its
        refusals, crashes and missing tools are the environment's."""
        return {exits.USAGE: cls.USAGE, exits.NOT_RUNNING: cls.USAGE,
                exits.PREFLIGHT: cls.GPU}.get(status, cls.ENVIRONMENT)


class Failure(Exit):
    """An expected failure: bad input, an unreachable host, a refused sync, a failed run.

    ``problem`` says what is wrong, naming the value; ``fix`` what to do about it; ``kind`` picks
    the exit status (``code`` overrides it: a run's own status, passed on). Invoke prints the
    message on stderr and exits with the status, without a traceback.
    """

    def __init__(self, problem: str, fix: str = "", kind: Kind = Kind.USAGE, *, code: int | None = None):
        self.problem = " ".join(str(problem).split())
        self.fix = " ".join(str(fix).split())
        self.kind = kind
        line = f"{self.problem}; {self.fix}" if self.fix else self.problem
        super().__init__(f"remote-run: {line}", code=kind.status if code is None else code)

    def __str__(self) -> str:
        return self.message

    @property
    def line(self) -> str:
        """The message without the `remote-run: ` every message starts with."""
        return self.message.removeprefix("remote-run: ")
