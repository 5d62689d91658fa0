"""How the host program talks to this machine: its own messages as `remote-run: ...` lines on
stderr, and control lines (starting with CONTROL) that carry data.

A run command's report of its checks is the first line on stdout, before the run's output; every
run command's last line on stderr is its trailer (exit status, the run's state): a command that
ends without it lost its connection. The installer marks progress lines (PROGRESS, redrawn in
place on a terminal) and its last word on a failure (FINAL, which the one-line error repeats).
"""

import json
import sys

CONTROL = "\x1e"
PROGRESS = "\x1d"
FINAL = CONTROL


def say(message):
    sys.stderr.write("remote-run: " + message + "\n")
    sys.stderr.flush()


refused = None  # what this command refused, in its trailer: this machine reads it there, not from the text


def fail(message, code):
    """Refuse the command: say why, and return its exit status."""
    global refused
    refused = message
    say(message)
    return code


def control(stream, data):
    stream.write(CONTROL + json.dumps(data) + "\n")
    stream.flush()


def ours(lines):
    """The messages of remote-run's own among ``lines``, without their `remote-run: ` prefix."""
    return [line[len("remote-run: "):] for line in lines if line.startswith("remote-run: ")]
