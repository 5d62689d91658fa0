"""Exit statuses with names, for the host program and this machine (remote_run.errors maps the
kinds of failure to the statuses remote-run itself exits with)."""

OK = 0
FAILED = 1  # a command failed (a run's own status is passed through as it is)
USAGE = 2  # bad input or a refused request: one line says which and what to do
NOT_RUNNING = 3  # `kill` of a run that is not running
REGRESSION = 4  # a comparison found a regression (--compare-to, `inv compare --fail-on-regression`)
UNREACHABLE = 69  # the host cannot be reached or the connection dropped (sysexits' EX_UNAVAILABLE)
PREFLIGHT = 75  # the host's checks (sync, environment, GPU) said no: nothing was started (EX_TEMPFAIL)
NO_PROGRAM = 76  # the host has not kept this version of the host program (remote_run.ship.LOADER): nothing was done
ENVIRONMENT = 78  # a tool, setting or directory is not as a run needs it (sysexits' EX_CONFIG)
REFUSED = 97  # the host refused REMOTE_DIR (host.owner): nothing was written
MISSING = 127  # a program is not installed (the shell's status)
INTERRUPTED = 130  # Ctrl+C (128 + SIGINT)
VANISHED = 255  # a run ended without recording an exit status (its supervisor was killed)
SSH = 255  # OpenSSH's own failures (told apart from a run's 255 by the host program's trailer)
