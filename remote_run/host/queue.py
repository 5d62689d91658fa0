"""The host's GPU queue, shared by every user of the host.

Each user's entries live in a folder of their own, QUEUE_DIR + "." + uid, which only they can
write (a real directory, theirs, mode 755, in a sticky /tmp): everyone reads every folder, nobody
can edit or remove another's entries. An entry is a run that waits for GPUs ("waiting") or holds
them ("running"). Waiting entries are served in arrival order.

Other users' entries are hostile input: a reader opens them without following links or blocking,
takes only small regular files of the folder's owner with fields of the right types and ranges,
and skips anything else with a note. An entry counts only while the kernel says a process of the
folder's owner holds it: beside each entry NAME.json its supervisor holds a write lock (lockf) on
NAME.lock, which only the owner can open for writing and which the kernel drops when that process
dies. The name shown for an entry is the folder owner's account name, never a field of the entry.
"""

import errno
import fcntl
import json
import math
import os
import stat
import time

from . import gpus as gpu_info
from .files import remove, write_text
from .owner import user_name
from .sampler import dies_with_this_process

# Every user of a host must agree on it; REMOTE_RUN_GPU_QUEUE in the host's environment moves it
# (the test suite gives each fake host, with its fake GPUs, a queue of its own).
QUEUE_DIR = os.environ.get("REMOTE_RUN_GPU_QUEUE") or "/tmp/remote-run-gpu-queue"
POLL = 1.0
WAITING, HOLDING = "waiting", "running"  # an entry's state
MAX_BYTES = 4096  # an entry is a few hundred bytes: anything larger is not one
MAX_ENTRIES = 256  # read per folder: a user's folder full of files cannot slow every reader down
MAX_GPUS = 1024
READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)

# The lock files this process holds, by path. A reader in this process must never open one: with
# POSIX locks, closing any descriptor of the file drops the process's lock on it.
_held = {}


def started_at(pid):
    """The process's start time (clock ticks since boot): kept in entries for older readers."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def examine_folder(folder, uid):
    """Why ``folder`` cannot be trusted as ``uid``'s queue folder ("" when it can, None when it is absent)."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return "cannot be read (%s)" % (exc.strerror or exc)
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link owned by %s" % user_name(info.st_uid)
    if not stat.S_ISDIR(info.st_mode):
        return "not a directory (owned by %s)" % user_name(info.st_uid)
    if info.st_uid != uid:
        return "owned by %s" % user_name(info.st_uid)
    if info.st_mode & 0o022:
        return "writable by other users (mode %o)" % stat.S_IMODE(info.st_mode)
    return ""


def own_folder_problem():
    """{"folder", "why"} when this user's queue folder exists and is not theirs; None when it is, or is absent."""
    folder = "%s.%d" % (QUEUE_DIR, os.geteuid())
    why = examine_folder(folder, os.geteuid())
    return {"folder": folder, "why": why} if why else None


def own_folder():
    """This user's queue folder, created private to writers; None when it cannot be trusted."""
    folder = "%s.%d" % (QUEUE_DIR, os.geteuid())
    try:
        os.mkdir(folder, 0o755)
        os.chmod(folder, 0o755)  # readable by every user whatever the umask: others must see our holds
    except FileExistsError:
        pass
    except OSError:
        return None
    return folder if examine_folder(folder, os.geteuid()) == "" else None


class Skip(Exception):
    """An entry that is not one: why, for the note in the run's log."""


def _number(value, low, high):
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and low <= value <= high)


def _index(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_GPUS


def checked(data):
    """The entry's fields, each of its type and in its range; Skip otherwise."""
    if not isinstance(data, dict):
        raise Skip("not a JSON object")
    run, want, gpus = data.get("run"), data.get("want"), data.get("gpus", [])
    if not isinstance(run, str) or not 0 < len(run) <= 200 or not run.isprintable():
        raise Skip("no run name")
    if data.get("state") not in (WAITING, HOLDING):
        raise Skip("no state")
    if not _number(data.get("arrived"), 0, time.time() + 86400):
        raise Skip("no arrival time")
    if not isinstance(gpus, list) or len(gpus) > MAX_GPUS or not all(_index(i) for i in gpus):
        raise Skip("bad GPU list")
    if not isinstance(want, dict):
        raise Skip("no GPU request")
    devices, count = want.get("devices"), want.get("count", 1)
    if not isinstance(devices, str) or len(devices) > 1000 or (count is not None and not _index(count)):
        raise Skip("bad GPU request")
    return {"run": run, "state": data["state"], "arrived": float(data["arrived"]), "gpus": list(gpus),
            "want": {"devices": devices, "count": count}}


def read_entry(folder_fd, name, uid):
    """The checked entry ``name`` in the folder open as ``folder_fd``, owned by ``uid``; Skip when
    it is not a small regular file of that user holding a valid entry."""
    try:
        fd = os.open(name, READ, dir_fd=folder_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Skip("a symbolic link") from None
        raise Skip(exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Skip("not a regular file")
        if info.st_uid != uid:
            raise Skip("a file of %s" % user_name(info.st_uid))
        if info.st_size > MAX_BYTES:
            raise Skip("%d bytes, more than an entry" % info.st_size)
        data = os.read(fd, MAX_BYTES + 1)
    except OSError as exc:
        raise Skip(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise Skip("more than %d bytes" % MAX_BYTES)
    try:
        return checked(json.loads(data.decode("utf-8")))
    except (ValueError, RecursionError):
        raise Skip("not JSON") from None


def holds(folder_fd, name, uid):
    """Whether a process of ``uid`` holds the lock of entry ``name`` (NAME.lock beside NAME.json).

    Our probe is a read lock, refused while a write lock is held; only a process that can open
    the lock for writing (its owner, or root) can hold one. The probe is released at once."""
    try:
        fd = os.open(name[:-len(".json")] + ".lock", READ, dir_fd=folder_fd)
    except OSError:
        return False  # no lock: an entry of a run that ended, or of a remote-run too old to lock
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != uid or info.st_mode & 0o022:
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            return exc.errno in (errno.EAGAIN, errno.EACCES)
        return False
    finally:
        os.close(fd)


def _read_folder(folder, uid, drop_stale, found, notes):
    try:
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | READ)
    except OSError:
        return
    try:
        info = os.fstat(folder_fd)
        if info.st_uid != uid or info.st_mode & 0o022:
            return  # not the user its name says (or others may write into it): swapped since the look
        names = sorted(n for n in os.listdir(folder_fd) if n.endswith(".json") and not n.startswith("."))
        if len(names) > MAX_ENTRIES:
            notes.append("%s: %d entries, only the first %d read" % (folder, len(names), MAX_ENTRIES))
        for name in names[:MAX_ENTRIES]:
            path = os.path.join(folder, name)
            try:
                entry = read_entry(folder_fd, name, uid)
            except Skip as why:
                notes.append("%s (%s's) skipped: %s" % (path, user_name(uid), why))
                continue
            entry.update(uid=uid, user=user_name(uid), path=path)
            if path in _held or holds(folder_fd, name, uid):
                found.append(entry)
            elif drop_stale and uid == os.geteuid():
                for stale in (name, name[:-len(".json")] + ".lock"):  # its supervisor died
                    try:
                        os.unlink(stale, dir_fd=folder_fd)
                    except OSError:
                        pass
    except OSError:
        return
    finally:
        os.close(folder_fd)


def entries(drop_stale=True, notes=None):
    """Every held entry of every user, oldest first; ``drop_stale``: remove this user's dead ones.
    ``notes``: a list to which what was skipped, and why, is added."""
    import glob

    found, notes = [], [] if notes is None else notes
    for folder in glob.glob(QUEUE_DIR + ".*"):
        suffix = folder.rsplit(".", 1)[1]
        if suffix.isdigit() and examine_folder(folder, int(suffix)) == "":
            _read_folder(folder, int(suffix), drop_stale, found, notes)
    return sorted(found, key=lambda e: (e["arrived"], e["path"]))


def holder_of(entry):
    return "%s's run %s" % (entry["user"], entry["run"])


def mark_held(gpus, found, me=None):
    """Note on each GPU the entry of another run that holds it (``held_by``, ``holder``)."""
    for entry in found:
        if entry["state"] == HOLDING and entry["path"] != me:
            for gpu in gpus:
                if gpu["index"] in entry["gpus"]:
                    gpu["held_by"] = holder_of(entry)
                    gpu["holder"] = {"user": entry["user"], "run": entry["run"]}


def waiting_count(found):
    return len([e for e in found if e["state"] == WAITING])


class Entry:
    """This run's place in the host's queue: NAME.json, rewritten as it changes, and NAME.lock,
    locked by this process from before the first write until the entry is removed."""

    def __init__(self, run_dir, want):
        self.folder = own_folder()
        self.run = os.path.basename(run_dir)
        self.want = want  # {"devices": "0,1"} or {"devices": "auto", "count": N}
        self.path = self.lock = None
        if self.folder is not None:
            stem = os.path.join(self.folder, "%.6f-%d" % (time.time(), os.getpid()))
            self.lock = _lock(stem + ".lock")
            self.path = stem + ".json" if self.lock is not None else None
        # "user", "pid" and "pid_started" are for readers of remote-run before the locks: this one trusts none.
        self.data = {"run": self.run, "user": user_name(os.geteuid()), "pid": os.getpid(),
                     "pid_started": started_at(os.getpid()), "arrived": time.time(), "state": WAITING,
                     "want": want, "gpus": []}

    def write(self, **changes):
        self.data.update(changes)
        if self.path:
            write_text(self.path, json.dumps(self.data), mode=0o644)
            _held[self.path] = self.lock

    def remove(self):
        if self.path:
            remove(self.path)
            remove(self.path[:-len(".json")] + ".lock")
            os.close(_held.pop(self.path, self.lock))
            self.path = self.lock = None

    def ahead(self, found):
        """The waiting entries before ours that want some GPU we want."""
        mine = self.want.get("devices")
        return [e for e in found if e["state"] == WAITING and e["path"] != self.path
                and (e["arrived"], e["path"]) < (self.data["arrived"], self.path or "")
                and (mine == "auto" or e["want"]["devices"] == "auto"
                     or set(str(mine).split(",")) & set(e["want"]["devices"].split(",")))]


def _lock(path):
    """A new lock file, write-locked by this process; None when it cannot be made."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # mode 600: nobody else can have it open yet
        os.fchmod(fd, 0o644)  # now readers may probe it
    except OSError:
        os.close(fd)
        os.unlink(path)
        return None
    return fd


def busy_text(item):
    """One GPU's holder, as the run's log and `inv status` show it."""
    if item.get("run"):
        return "GPU %d: %s's run %s" % (item["gpu"], item["user"], item["run"])
    return "GPU %d: %s" % (item["gpu"], ", ".join("pid %s %s" % (p["pid"], p["name"]) for p in item["processes"]))


def holders(gpus):
    """What holds each busy GPU: another run in the queue (user, run) or processes (pid, name)."""
    found = []
    for gpu in gpus:
        if gpu.get("holder"):
            found.append(dict(gpu["holder"], gpu=gpu["index"]))
        elif gpu["processes"]:
            found.append({"gpu": gpu["index"], "processes": [{"pid": p["pid"], "name": p["name"]}
                                                             for p in gpu["processes"]]})
    return found


def acquire(run_dir, want, wait, timeout, log, holder=None):
    """Wait until the GPUs the run wants are free and no earlier waiter wants them, then hold them
    (a "running" entry). Returns (entry, CUDA_VISIBLE_DEVICES for the run or None to keep the
    configured one); (None, None) when the wait timed out. ``log``: the run's log (a file
    descriptor) for what it waits for and what it skipped; the run's `waiting` marker says its
    place and what holds its GPUs."""
    from .runs import WAITING_MARKER

    entry = Entry(run_dir, want)
    if holder is not None:
        holder["entry"] = entry
    if entry.path is None:
        problem = own_folder_problem() or {"folder": QUEUE_DIR, "why": "it cannot be written"}
        os.write(log, ("remote-run: the GPU queue folder %s is not yours (%s): this run's GPU hold is not visible "
                       "to other users\n" % (problem["folder"], problem["why"])).encode())
    entry.write()
    deadline = time.time() + timeout if timeout else None
    told, noted = None, set()

    def read():
        notes = []
        found = entries(notes=notes)
        for note in notes:
            if note not in noted:
                noted.add(note)
                os.write(log, ("remote-run: GPU queue entry %s\n" % note).encode())
        return found

    if want.get("found_none"):  # the check just found no GPU: nothing to hold or wait for, nor to ask again
        entry.write(state=HOLDING)
        return entry, None
    chosen = want.get("chosen")
    if chosen is not None and not [e for e in read() if e["state"] == HOLDING and e["path"] != entry.path
                                   and set(e["gpus"]) & set(chosen)]:
        entry.write(state=HOLDING, gpus=chosen)
        return entry, (",".join(str(i) for i in chosen) if want.get("devices") == "auto" else None)
    # The supervisor polls nvidia-smi while it waits: a query hung on the driver must not outlive it either.
    tie = dies_with_this_process()[0]  # (ctypes: 4 ms, only for a query)
    while True:
        state, gpus, _text = gpu_info.answer(gpu_info.start_query(tie), 30)
        found = read()
        ahead = entry.ahead(found)
        if state != "ok" or not gpus:
            entry.write(state=HOLDING)  # nothing to wait for: the GPU check decided already
            return entry, None
        mark_held(gpus, found, me=entry.path)
        if want.get("devices") == "auto":
            chosen = gpu_info.idle(gpus)[:want.get("count") or 1]
            ready = len(chosen) == (want.get("count") or 1)
        else:
            chosen = gpu_info.visible(gpus, want.get("devices"))
            ready = bool(chosen) and all(gpu_info.is_idle(g) for g in chosen)
        if ready and not ahead:
            indices = [g["index"] for g in chosen]
            entry.write(state=HOLDING, gpus=indices)
            return entry, (",".join(str(i) for i in indices) if want.get("devices") == "auto" else None)
        if not wait:  # checked before the start; raced by another run since: go on as checked
            entry.write(state=HOLDING, gpus=[g["index"] for g in chosen])
            return entry, None
        busy = holders(chosen if want.get("devices") != "auto" else gpus)
        news = "waiting for a GPU: %s%s" % (
            "%d ahead in the queue (%s)" % (len(ahead), ", ".join(holder_of(e) for e in ahead[:3]))
            if ahead else "first in the queue", "; busy: " + "; ".join(busy_text(b) for b in busy) if busy else "")
        if news != told:
            os.write(log, ("remote-run: %s\n" % news).encode())
            write_text(os.path.join(run_dir, WAITING_MARKER), json.dumps(
                {"pid": os.getpid(), "position": len(ahead) + 1, "busy": busy,
                 "ahead": [{"user": e["user"], "run": e["run"]} for e in ahead[:3]]}))
            told = news
        if deadline and time.time() > deadline:
            entry.remove()
            os.write(log, ("remote-run: gave up waiting for a GPU after %g s (--wait-timeout)\n" % timeout).encode())
            return None, None
        time.sleep(POLL)
