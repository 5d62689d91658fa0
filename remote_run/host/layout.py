"""Where remote-run keeps its own things in REMOTE_DIR: everything under .remote-run/ (and the venv,
.venv, which is the workspace's convention too), so that every other name is the workspace's own:
a workspace's runs/ or data/ is synced, and deleted, like any other folder.

Before this layout, run records and snapshots were REMOTE_DIR/runs/ and the dataset cache
REMOTE_DIR/data/. settle() moves them once, before anything syncs or starts; while a run an older
remote-run started there is still live they stay, and syncs wait (one line says why).
"""

import os

OWN = ".remote-run"
RUNS = ".remote-run/runs"  # a run's folder: RUNS/<id> (its log, meta.json, its snapshot work/)
DATA = ".remote-run/data"  # the dataset cache every run shares, as $REMOTE_RUN_DATA
VENV_STAMP = ".remote-run/venv-stamp"  # what REMOTE_DIR/.venv was built from (remote_run.environment.stamp)
MOVED = ".remote-run/layout"  # written once the older layout is moved (or there was none)
OLD = (("runs", RUNS), ("data", DATA))  # the older layout: (old name, new name)
VERSION = "2"


def runs_dir(root):
    """The folder of ``root``'s runs: RUNS, or the older layout's runs/ while it has not been moved."""
    if not os.path.exists(os.path.join(root, MOVED)) and _holds_runs(os.path.join(root, "runs")):
        return os.path.join(root, "runs")
    return os.path.join(root, RUNS)


def root_of(run_dir):
    """REMOTE_DIR of a run's folder, in either layout."""
    parent = os.path.dirname(os.path.dirname(run_dir))
    return os.path.dirname(parent) if os.path.basename(parent) == OWN else parent


def settle(root):
    """Move the older layout's runs/ and data/ into .remote-run/, once. Returns "" when the new
    layout is in place, else the one line saying why not yet (a run there is still live)."""
    if os.path.exists(os.path.join(root, MOVED)) or not os.path.isdir(os.path.join(root, OWN)):
        return ""
    old_runs = os.path.join(root, "runs")
    if _holds_runs(old_runs):
        from . import states
        from .runs import state_of

        for name in sorted(os.listdir(old_runs)):
            if state_of(os.path.join(old_runs, name))[0] in states.LIVE:
                return ("REMOTE_DIR %s holds run %s, started by an earlier remote-run in %s/runs and still live; "
                        "remote-run moves its runs into %s once it ends: wait for it, or stop it with "
                        "`inv kill --run %s`" % (root, name, root, RUNS, name))
    for old, new in OLD:
        source, target = os.path.join(root, old), os.path.join(root, new)
        if old == "runs" and not _holds_runs(source):
            continue  # the workspace's own runs/, or none: not ours to move
        if os.path.isdir(source) and not os.path.islink(source) and not os.path.lexists(target):
            os.rename(source, target)
            _say("moved %s/%s to %s/%s (remote-run keeps its own folders under %s/ now)" % (root, old, root, new, OWN))
    with open(os.path.join(root, MOVED), "w") as handle:
        handle.write(VERSION + "\n")
    return ""


def _holds_runs(folder):
    """Whether ``folder`` holds run folders an older remote-run made (each with meta.json or run.log)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    return any(os.path.isfile(os.path.join(folder, name, "meta.json"))
               or os.path.isfile(os.path.join(folder, name, "run.log")) for name in names)


def _say(line):
    import sys

    try:
        sys.stderr.write("remote-run: " + line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
