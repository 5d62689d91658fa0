"""The states of a run, named once for both sides, and the one function that decides which holds.

The host knows a run from the files in its folder (the exit status, the markers of a stop, of a
wait that timed out, of a turn skipped) and whether its processes live; this machine knows how its
following of the run ended (the connection dropped, it let go on purpose, a Ctrl+C stopped
nothing). decide() takes what either side knows and gives the state. Text for people (`waiting,
#2 in the GPU queue`) is made where it is shown, from the state and the run's place in the queue.
"""

QUEUED = "queued"  # waiting to start: for its GPUs in the host's queue, or for its turn in a group
RUNNING = "running"
STOPPING = "stopping"  # asked to stop, not ended yet
FINISHED = "finished"  # exit status 0
FAILED = "failed"  # any other exit status of its own
KILLED = "killed"  # stopped on request (`inv kill`, Ctrl+C)
TIMED_OUT = "timed out"  # gave up waiting for its GPUs (--wait-timeout)
SKIPPED = "skipped"  # its group was stopped before its turn: it never started
LOST = "lost"  # ended without an exit status: its supervisor was killed
# How this machine's following of a run ended without the run ending:
DETACHED = "detached"  # let go on purpose (--detach); the run goes on
DISCONNECTED = "connection lost"  # the connection dropped; the run goes on
INTERRUPTED = "interrupted"  # Ctrl+C that stopped nothing (--detach on a cluster)

LIVE = (QUEUED, RUNNING, STOPPING)  # has not ended
ENDED = (FINISHED, FAILED, KILLED)  # ended, with an outcome worth telling (NOTIFY_CMD, --pull)
STOPPED = (KILLED, STOPPING, SKIPPED)  # a stop was asked for

SIGINT_STATUS = 130  # 128 + SIGINT: how a run stopped by Ctrl+C exits


def decide(exit_code=None, stopped=False, timed_out=False, skipped=False, waiting=False, alive=False,
           disconnected=False, detached=False, interrupted=False):
    """The state of a run from what is known of it.

    exit_code: its exit status once recorded; stopped: a stop was asked for; timed_out: it gave up
    waiting for GPUs; skipped: its group was stopped before its turn; waiting: it waits for GPUs or
    its turn and whoever makes it wait is alive; alive: its process lives. This machine adds:
    disconnected, detached, interrupted (see the constants above).
    """
    if disconnected:
        return DISCONNECTED
    if timed_out:
        return TIMED_OUT
    if interrupted:
        return INTERRUPTED
    if skipped:
        return SKIPPED
    if exit_code is None:
        if waiting:
            return QUEUED
        if stopped:
            return STOPPING if alive else KILLED
        if detached:
            return DETACHED
        return RUNNING if alive else LOST
    if stopped or exit_code == SIGINT_STATUS:
        return KILLED
    return FINISHED if exit_code == 0 else FAILED


def group(states):
    """A group's state from its runs': running while one has not ended, else how it ended."""
    if any(state in LIVE for state in states):
        return RUNNING
    if KILLED in states or SKIPPED in states:
        return KILLED
    return FAILED if FAILED in states or LOST in states or TIMED_OUT in states else FINISHED
