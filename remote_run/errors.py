"""The one exception type for expected failures: a single line for the user, no traceback."""

from invoke.exceptions import Exit

from .host import exits


class Failure(Exit):
    """An expected failure: bad input, an unreachable host, a refused sync, a failed run.

    Invoke prints the message on stderr and exits with ``code``, without a traceback.
    """

    def __init__(self, message: str, code: int = exits.USAGE):
        line = " ".join(str(message).split())
        super().__init__(f"remote-run: {line}", code=code)
