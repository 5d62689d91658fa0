"""invoke's local runner as remote-run uses it: kept apart from the transport so that the task
collection can name it without importing what the tasks run."""

from invoke.runners import Local


class QuickLocal(Local):
    """invoke's runner, polling every millisecond instead of every ten.

    A command over a live ControlMaster takes about 7 ms on loopback; invoke's default 10 ms poll
    of the child and of stdin would more than double it.
    """

    input_sleep = 0.001
