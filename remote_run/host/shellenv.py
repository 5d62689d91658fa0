"""A run starts as it would from the user's shell with the run's Python environment activated: that
Python's bin folder first on PATH (so `python`, `torchrun` and the project's console scripts are
the environment's), VIRTUAL_ENV set when it is a venv, and an executable without a #! line run by
/bin/sh, as a POSIX shell runs it when exec says ENOEXEC (Python's subprocess does not)."""

import errno
import os

NOT_FOUND = 127  # the shell's statuses for a command it cannot find, and one it found but cannot run
CANNOT_RUN = 126


def activated(environment, python):
    """``environment`` with the bin folder of ``python`` (a path, or a name found on its PATH) first
    on PATH, as `source .venv/bin/activate` leaves it. Links are not followed: a venv's python is a
    link to the base interpreter, and the venv's folder is the one wanted."""
    if not python:
        return environment
    if "/" not in python:
        import shutil  # not for a path (3 ms of imports)

        python = shutil.which(python, path=environment.get("PATH", os.defpath))
        if not python:
            return environment
    folder = os.path.dirname(os.path.abspath(python))
    env = dict(environment)
    env["PATH"] = os.pathsep.join([folder] + [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p])
    env.pop("VIRTUAL_ENV", None)  # one the SSH login activated is not the run's
    env.pop("PYTHONHOME", None)
    root = os.path.dirname(folder)
    if os.path.isfile(os.path.join(root, "pyvenv.cfg")):
        env["VIRTUAL_ENV"] = root
    return env


def with_nproc(argv, at, gpus):
    """torchrun's ``--nproc_per_node`` at ``argv[at]`` filled in with the number of GPUs the run
    was given (1 when it was given none: --cpu-ok without a GPU)."""
    if at is None:
        return argv
    argv = list(argv)
    argv[at] = "--nproc_per_node=%d" % max(1, gpus)
    return argv


def start(popen, argv, **kwargs):
    """``popen(argv)``; an executable that exec refuses as no program (ENOEXEC: no #! line) is run
    by /bin/sh, as shells and execvp do, unless it looks binary (bash refuses those too)."""
    try:
        return popen(argv, **kwargs)
    except OSError as exc:
        if exc.errno != errno.ENOEXEC or _binary(argv[0], kwargs.get("cwd")):
            raise
    return popen(["/bin/sh"] + list(argv), **kwargs)


def _binary(program, cwd):
    try:
        with open(os.path.join(cwd or "", program), "rb") as handle:
            head = handle.read(512)
    except OSError:
        return True
    return b"\0" in head.split(b"\n", 1)[0]


def status_of(exc, program, cwd=None):
    """The shell's exit status for a program that could not be started: one that exists but whose
    #! interpreter does not is found but cannot run, as in a shell."""
    missing = exc.errno in (errno.ENOENT, errno.ENOTDIR)
    return NOT_FOUND if missing and not os.path.isfile(os.path.join(cwd or "", program)) else CANNOT_RUN
