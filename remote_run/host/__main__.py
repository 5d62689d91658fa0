"""The host program's one entry point: ``MODE ARGS...``, one mode per remote command.

    check PAYLOAD | start PAYLOAD      the checks; the checks and then a run (PAYLOAD: JSON, or a line on stdin)
    follow|attach|cat ROOT RUN OFFSET  show a run's log from OFFSET; attach/follow wait for its end
    kill ROOT RUN GRACE [OFFSET]       stop a run (then show its log from OFFSET)
    status ROOT                        every run of ROOT (.remote-run/runs), as JSON (its trailer: the checkout ROOT
                                       mirrors)
    bootstrap PAYLOAD                  build or confirm ROOT/.venv (host.installer)
    doctor PAYLOAD                     doctor's look at the host, as JSON; changes nothing
    claim ROOT STAMP CHECKOUT [COMMAND...]  the sync's claim of ROOT around COMMAND (rsync); `claim-check`: only look
                                       (CHECKOUT: JSON {"id", "from", "host", "take_over"}, or "" for no check)
    whose ROOT                         the checkout ROOT mirrors and how many runs it holds, as JSON
    clean ROOT DATA [CHECKOUT]         delete ROOT (DATA=1: its dataset cache too)
    pulled PAYLOAD                     the files a run wrote that match --pull patterns, as JSON
    explode DIR                        write this program's sources into DIR, to read or run by hand

Run commands (start and the run readers) end with a trailer on stderr (host.control).
"""

import json
import os
import sys

from . import exits, layout
from .control import control, fail

RUN_MODES = ("start", "follow", "attach", "cat", "kill", "status")
PAYLOAD_MODES = ("check", "start", "bootstrap", "doctor", "pulled")  # their one argument may come on stdin instead


def payload_of(argv):
    """The JSON payload: the argument after the mode, or (private, too long, or the command started
    before its payload was known) a line on stdin. No line at all: the client gave the command up
    before sending one (remote_run.transport.Host.prestart), and nothing is done."""
    if len(argv) > 1:
        return json.loads(argv[1])
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(exits.USAGE)
    return json.loads(line)


def main(argv):
    mode = argv[0] if argv else ""
    if mode == "check":
        from .checks import check

        return check(payload_of(argv))
    if mode in RUN_MODES:
        return run_mode(mode, argv)
    if mode == "bootstrap":
        from . import installer

        return installer.main(payload_of(argv))
    if mode == "doctor":
        from . import doctor

        return doctor.main(payload_of(argv))
    if mode in ("claim", "claim-check") and len(argv) >= 4:
        from . import owner

        return owner.claim(argv[1], argv[2], mode == "claim-check", argv[4:], json.loads(argv[3] or "null"))
    if mode == "whose" and len(argv) == 2:
        from . import owner

        sys.stdout.write(json.dumps(owner.whose(argv[1])) + "\n")
        return exits.OK
    if mode == "clean" and len(argv) in (3, 4):
        from . import clean

        return clean.clean(argv[1], argv[2] == "1", json.loads(argv[3]) if len(argv) == 4 else None)
    if mode == "pulled":
        from . import pulled

        return pulled.main(payload_of(argv))
    if mode == "explode" and len(argv) == 2:
        return explode(argv[1])
    return fail("unknown host program mode %r; see `python3 -m remote_run.host` in the host program's sources" % mode,
                exits.USAGE)


def run(argv):
    """main(argv), then the end of this process without Python's teardown: about 5 ms of every
    command, for nothing (no thread, exit handler or open file of this program needs it)."""
    code = main(argv)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # this machine went away: nobody reads it any more
            pass
    os._exit(code or 0)


def run_mode(mode, argv):
    from . import runs

    if mode == "start":
        from .supervisor import start

        payload = payload_of(argv)
        run_dir = os.path.join(payload["root"], payload.get("run_dir") or payload["members"][0]["run_dir"])
        code = start(payload)
    else:
        root = argv[1] if len(argv) > 1 else ""
        run_dir = os.path.join(layout.runs_dir(root), argv[2]) if len(argv) > 2 else None
        code = read_mode(mode, root, run_dir, argv[3:])
    from . import control as told

    trailer = runs.trailer(run_dir, code)
    if told.refused is not None:
        trailer["refused"] = told.refused
    if mode == "status":
        from .owner import checkout_of

        trailer["checkout"] = checkout_of(argv[1]) if len(argv) > 1 else None  # whose runs these are
    control(sys.stderr, trailer)
    return code


def read_mode(mode, root, run_dir, args):
    from . import runs

    if not os.path.isdir(root):
        return fail("REMOTE_DIR %s does not exist on this host; run `inv sync` first" % root, exits.USAGE)
    if mode == "status":
        return runs.status(layout.runs_dir(root))
    if run_dir is None:
        return fail("host program mode %s needs a run id" % mode, exits.USAGE)
    if mode in ("follow", "attach"):
        return runs.follow(run_dir, int(args[0]), stop_run=mode == "follow")
    if mode == "cat":
        return runs.show(run_dir, int(args[0]))
    return runs.kill(run_dir, float(args[0]), int(args[1]) if len(args) > 1 else None)


def explode(folder):
    """Write the sources of this program (the package and this entry) into ``folder``: then
    ``cd FOLDER && python3 -m remote_run.host MODE ...`` runs them, edited or not."""
    import shutil

    here = os.path.dirname(os.path.abspath(__file__))
    target = os.path.join(folder, "remote_run", "host")
    os.makedirs(target, exist_ok=True)
    archive = getattr(__loader__, "archive", None)  # kept as a zip (remote_run.ship): copy out of it
    if archive:
        import zipfile

        with zipfile.ZipFile(archive) as bundle:
            for name in bundle.namelist():
                if name.endswith(".py"):
                    bundle.extract(name, folder)
    else:
        for name in os.listdir(here):
            if name.endswith(".py"):
                shutil.copy(os.path.join(here, name), target)
        init = os.path.join(folder, "remote_run", "__init__.py")
        if not os.path.exists(init):
            open(init, "w").close()
    sys.stderr.write("remote-run: the host program's sources are in %s; "
                     "run a mode with: cd %s && python3 -m remote_run.host MODE ...\n"
                     % (folder, folder))
    return exits.OK


if __name__ == "__main__":
    run(sys.argv[1:])
