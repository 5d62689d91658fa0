"""REMOTE_DIR is ours or nothing is written: the one check of it, for the sync's claim, a run's
start and doctor.

Refused: the remote home directory or a parent of it; a path under a directory another user
owns or can write to without the sticky bit (they could swap what is in it); a symbolic link, a
file, a directory another user owns or can write to; a non-empty directory remote-run did not
create (a sync with --delete would destroy its files). A missing REMOTE_DIR is created with mode
700 (mkdir is atomic: if someone else creates it first, the checks run on theirs and refuse).

Beside it, the one check of which checkout of the workspace REMOTE_DIR mirrors: a sync records
the checkout's id (kept on that machine, in RUNS_DIR/.checkout) in REMOTE_DIR/.remote-run/checkout,
with where it was synced from (machine:path, for display) and when; a sync from another checkout
is refused, unless it takes REMOTE_DIR over (--take-over).
"""

import json
import os
import pwd
import stat
import subprocess
import time

from . import exits, layout, snapshot, tree
from .control import fail, say
from .files import read_json, remove, write_text

MARKER = ".remote-run/owner"
CHECKOUT = ".remote-run/checkout"  # {"id", "from": machine:path, "synced": seconds}
REFUSED = ("home", "ancestor", "symlink", "notdir", "foreign", "writable", "unclaimed", "unreadable")


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _nearest(path):
    while path and not os.path.lexists(path):
        path = os.path.dirname(path)
    return path or "/"


def _open_to_others(mode):
    return bool(mode & 0o022)


def examine(root):
    """What REMOTE_DIR is: {"state": ...} with what each state needs to be explained.

    States: home, ancestor (above, owner, mode, why), absent (parent, writable), symlink (target),
    notdir, foreign, writable, unreadable (error), and for a directory that may be used: ours
    (synced, runs, checkout: checkout_of), empty, or unclaimed (refused).
    """
    me = os.geteuid()
    home = os.path.realpath(os.path.expanduser("~"))
    real = os.path.realpath(root)
    if home == real or home.startswith(real.rstrip("/") + "/"):
        return {"state": "home", "home": home}
    above = _nearest(os.path.realpath(os.path.dirname(root)))
    while True:
        try:
            info = os.stat(above)
        except OSError:
            break
        mode = stat.S_IMODE(info.st_mode)
        why = ""
        if info.st_uid not in (0, me):
            why = "owned by %s (mode %o)" % (user_name(info.st_uid), mode)
        elif _open_to_others(mode) and not mode & stat.S_ISVTX:
            why = "writable by other users (owner %s, mode %o)" % (user_name(info.st_uid), mode)
        if why:
            return {"state": "ancestor", "above": above, "owner": user_name(info.st_uid), "mode": "%04o" % mode,
                    "why": why}
        if above == "/":
            break
        above = os.path.dirname(above)
    try:
        info = os.lstat(root)
    except FileNotFoundError:
        parent = _nearest(os.path.dirname(root))
        return {"state": "absent", "parent": parent, "writable": os.access(parent, os.W_OK | os.X_OK)}
    except OSError as exc:
        return {"state": "unreadable", "error": exc.strerror or str(exc)}
    mode = stat.S_IMODE(info.st_mode)
    found = {"owner": user_name(info.st_uid), "mode": "%04o" % mode, "me": user_name(me)}
    if stat.S_ISLNK(info.st_mode):
        found.update(state="symlink", target=os.readlink(root))
    elif not stat.S_ISDIR(info.st_mode):
        found["state"] = "notdir"
    elif info.st_uid != me:
        found["state"] = "foreign"
    elif _open_to_others(mode):
        found["state"] = "writable"
    elif os.path.isfile(os.path.join(root, MARKER)):
        runs = layout.runs_dir(root)
        found.update(state="ours", synced=os.path.isfile(os.path.join(root, tree.STAMP)),
                     runs=len(os.listdir(runs)) if os.path.isdir(runs) else 0, checkout=checkout_of(root))
    else:
        try:
            found["state"] = "empty" if not os.listdir(root) else "unclaimed"
        except OSError as exc:
            found.update(state="unreadable", error=exc.strerror or str(exc))
    return found


def refusal(root, found):
    """The one line refusing REMOTE_DIR in the state ``found`` ("" when it may be used)."""
    state = found["state"]
    texts = {
        "home": "REMOTE_DIR=%s is the remote home directory (%s) or a parent of it; use a directory of its own such as "
                "/tmp/<project>_remote" % (root, found.get("home")),
        "ancestor": "REMOTE_DIR=%s is inside %s, which is %s, so another user could swap its files; "
                    "choose a REMOTE_DIR under a directory only you (or root) can change, e.g. /tmp/<project>_remote"
                    % (root, found.get("above"), found.get("why")),
        "symlink": "REMOTE_DIR=%s is a symbolic link (to %s); remote-run only writes into a real directory it owns; "
                   "choose another REMOTE_DIR" % (root, found.get("target")),
        "notdir": "REMOTE_DIR=%s exists and is not a directory; choose another REMOTE_DIR" % root,
        "foreign": "REMOTE_DIR=%s belongs to %s (mode %o), not to you: another user created it; "
                   "choose another REMOTE_DIR" % (root, found.get("owner"), int(found.get("mode", "0"), 8)),
        "writable": "REMOTE_DIR=%s is writable by other users (mode %o), so they could swap its files; "
                    "run chmod go-w on it on the host if only you use it, "
                    "or choose another REMOTE_DIR (remote-run creates its own with mode 700)"
                    % (root, int(found.get("mode", "0"), 8)),
        "unclaimed": "REMOTE_DIR=%s is not empty and was not created by remote-run, "
                     "so a sync with --delete could destroy its files; "
                     "choose an empty or new REMOTE_DIR" % root,
        "unreadable": "REMOTE_DIR=%s cannot be read (%s); choose another REMOTE_DIR" % (root, found.get("error")),
    }
    return texts.get(state, "")


def not_ours(root):
    """Why a run may not write into REMOTE_DIR ("" when it may, or when it does not exist yet)."""
    found = examine(root)
    return "" if found["state"] in ("absent", "empty") else refusal(root, found)


def checkout_of(root):
    """The record of the checkout REMOTE_DIR mirrors ({"id", "from", "synced"}), or None when it has
    none (never synced, or synced before remote-run recorded checkouts)."""
    found = read_json(os.path.join(root, CHECKOUT))
    return found if isinstance(found, dict) and isinstance(found.get("id"), str) else None


def shown(record):
    """A checkout as people are shown it: where it was synced from, and when (never more)."""
    synced = record.get("synced")
    when = (", synced %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(synced))
            if isinstance(synced, (int, float)) else "")
    return "%s%s" % (record.get("from") or "a checkout that did not say where it was", when)


def replaced(record, checkout):
    """Whether ``checkout`` stands where the checkout of ``record`` stood (the same machine:path)
    under a new id: that one was re-cloned there, or its local state deleted. Two checkouts cannot
    share one place, so this one takes over what the earlier one mirrored."""
    return bool(record and checkout and record["id"] != checkout.get("id")
                and record.get("from") and record.get("from") == checkout.get("from"))


def other_checkout(root, checkout):
    """The line refusing ``checkout`` (this machine's {"id", "from", "host", "take_over"}) a
    REMOTE_DIR that mirrors another checkout ("" when it may go on: the same checkout, wherever it
    is now; a new checkout in the same place (replaced); no record; --take-over; or no
    ``checkout`` given, by hand)."""
    if not checkout or checkout.get("take_over"):
        return ""
    record = checkout_of(root)
    # A REMOTE_DIR claimed before checkouts were recorded has none: the first checkout that syncs it
    # adopts it, silently (mirror() records it).
    if record is None or record["id"] == checkout.get("id") or replaced(record, checkout):
        return ""
    return ("REMOTE_DIR=%s on %s mirrors another checkout (%s); set REMOTE_DIR to another path for this one, "
            "or take it over with --take-over" % (root, checkout.get("host") or "this host", shown(record)))


def mirror(root, checkout):
    """Record that REMOTE_DIR now mirrors ``checkout`` (synced from its machine:path, now)."""
    if checkout:
        earlier = checkout_of(root)
        if replaced(earlier, checkout):
            say("REMOTE_DIR=%s mirrored an earlier checkout in this same place (%s); it mirrors this one now, "
                "with that one's runs" % (root, shown(earlier)))
        record = {"id": checkout["id"], "from": checkout.get("from", ""), "synced": round(time.time(), 3)}
        write_text(os.path.join(root, CHECKOUT), json.dumps(record) + "\n")


def whose(root):
    """What `pull-logs` and `clean` say about REMOTE_DIR: whether it exists, the checkout it mirrors
    (checkout_of) and how many runs it holds."""
    runs = layout.runs_dir(root)
    try:
        count = sum(1 for name in os.listdir(runs) if os.path.isfile(os.path.join(runs, name, "meta.json")))
    except OSError:
        count = 0
    return {"exists": os.path.isdir(root), "checkout": checkout_of(root), "runs": count}


def claim(root, stamp, check, command, checkout=None):
    """The sync's side on the host: refuse REMOTE_DIR unless it is ours and mirrors ``checkout``
    (other_checkout), create it (mode 700), mark it as remote-run's, record the checkout, run
    ``command`` (rsync's receiving side, or on `local` the whole rsync) and, when that succeeded,
    write the sync ``stamp``. ``check`` (`sync --dry-run`): the same checks, then ``command``, and
    nothing is created, marked, recorded or stamped."""
    found = examine(root)
    if found["state"] == "absent":
        if check:
            return _run(command)
        try:
            os.makedirs(os.path.dirname(root), exist_ok=True)
            os.mkdir(root, 0o700)
        except FileExistsError:
            pass  # someone was quicker: what they made is examined below
        except OSError:
            return fail("cannot create REMOTE_DIR=%s (permission denied or disk full); choose a writable location"
                        % root, exits.REFUSED)
        found = examine(root)
    line = refusal(root, found) or other_checkout(root, checkout)
    if line:
        return fail(("a sync would refuse it: " if check else "") + line, exits.REFUSED)
    if check:
        return _run(command)
    try:
        if not os.path.isfile(os.path.join(root, MARKER)):
            write_text(os.path.join(root, MARKER),
                       "created by remote-run; delete this directory with: inv clean --yes\n")
        mirror(root, checkout)  # before rsync writes: a sync from another checkout meanwhile is refused
        line = layout.settle(root)  # an older layout's runs/ and data/ move out of the workspace's way
    except OSError:
        return fail("cannot write to REMOTE_DIR=%s; check free space and permissions" % root, exits.REFUSED)
    if line:
        return fail(line, exits.REFUSED)
    if not command:
        return exits.OK
    remove(os.path.join(root, tree.STAMP))
    snapshot.invalidate(root)  # rsync is about to write the tree: a spare of it is stale
    status = _run(command)
    os.chmod(root, stat.S_IMODE(os.lstat(root).st_mode) & 0o700)  # rsync -a gave it the workspace's mode
    if status == 0:
        remove(os.path.join(root, tree.RENDERED))
        if stamp:
            write_text(os.path.join(root, tree.STAMP), stamp + "\n")
    return status


def _run(command):
    if not command:
        return exits.OK
    try:
        return subprocess.call(command)
    except OSError as exc:
        return fail("cannot start %s on this host: %s" % (command[0], exc.strerror or exc), exits.MISSING)
