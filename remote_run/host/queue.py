"""The host's GPU queue, shared by every user of the host.

Each user's entries live in a folder of their own, QUEUE_DIR + "." + uid, which only they can
write (a real directory, theirs, mode 755, in a sticky /tmp): everyone reads every folder, nobody
can edit or remove another's entries. An entry is a run that waits for GPUs ("waiting") or holds
them ("running"), with the pid and start time of its supervisor: an entry whose process is gone is
ignored by everyone and removed by its owner. Waiting entries are served in arrival order.
"""

import json
import os
import stat
import time

from . import gpus as gpu_info
from .files import remove, write_text

# Every user of a host must agree on it; REMOTE_RUN_GPU_QUEUE in the host's environment moves it
# (the test suite gives each fake host, with its fake GPUs, a queue of its own).
QUEUE_DIR = os.environ.get("REMOTE_RUN_GPU_QUEUE") or "/tmp/remote-run-gpu-queue"
POLL = 1.0
WAITING, HOLDING = "waiting", "running"  # an entry's state


def started_at(pid):
    """The process's start time (clock ticks since boot), to tell it from a later one with its pid."""
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


def live(entry):
    """Whether the entry's supervisor still runs: its pid, and that process's start time, so that a
    later process given the same pid does not count as it."""
    # Weighed against a flock held by the supervisor (bench/bench_queue.py): a little faster, and it also
    # works where /proc hides other users' processes (hidepid) or pids differ (pid namespaces), but
    # it needs a lock file beside each entry, since a rewritten entry is a new file, and any reader
    # may hold a flock, so it cannot say that the entry's own user holds it.
    pid = entry.get("pid")
    return alive(pid) and started_at(pid) == entry.get("pid_started")


def own_folder():
    """This user's queue folder, created private to writers; None when it cannot be trusted."""
    folder = "%s.%d" % (QUEUE_DIR, os.geteuid())
    try:
        os.mkdir(folder, 0o755)
    except FileExistsError:
        pass
    except OSError:
        return None
    return folder if trusted(folder, os.geteuid()) else None


def trusted(folder, uid):
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o022


def entries(drop_stale=True):
    """Every live entry of every user, oldest first; ``drop_stale``: remove this user's dead ones."""
    import glob

    found = []
    for folder in glob.glob(QUEUE_DIR + ".*"):
        suffix = folder.rsplit(".", 1)[1]
        if not suffix.isdigit() or not trusted(folder, int(suffix)):
            continue  # not the user its name says, or others may write into it
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(folder, name)) as handle:
                    entry = json.load(handle)
                entry["uid"], entry["path"] = int(suffix), os.path.join(folder, name)
            except (OSError, ValueError, TypeError):
                continue
            if live(entry):
                found.append(entry)
            elif drop_stale and entry["uid"] == os.geteuid():
                remove(entry["path"])  # its owner died: dropped
    return sorted(found, key=lambda e: (e.get("arrived", 0), e["path"]))


def mark_held(gpus, found, me=None):
    """Note on each GPU the entry of another run that holds it (``held_by``)."""
    for entry in found:
        if entry.get("state") == HOLDING and entry["path"] != me:
            for gpu in gpus:
                if gpu["index"] in entry.get("gpus", []):
                    gpu["held_by"] = "%s's run %s" % (entry.get("user", "?"), entry.get("run", "?"))


def waiting_count(found):
    return len([e for e in found if e.get("state") == WAITING])


class Entry:
    """This run's place in the host's queue."""

    def __init__(self, run_dir, want):
        import pwd

        self.folder = own_folder()
        self.run = os.path.basename(run_dir)
        self.want = want  # {"devices": "0,1"} or {"devices": "auto", "count": N}
        self.path = (None if self.folder is None
                     else os.path.join(self.folder, "%.6f-%d.json" % (time.time(), os.getpid())))
        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = str(os.geteuid())
        self.data = {"run": self.run, "user": user, "pid": os.getpid(), "pid_started": started_at(os.getpid()),
                     "arrived": time.time(), "state": WAITING, "want": want, "gpus": []}

    def write(self, **changes):
        self.data.update(changes)
        if self.path:
            write_text(self.path, json.dumps(self.data))

    def remove(self):
        if self.path:
            remove(self.path)

    def ahead(self, found):
        """The waiting entries before ours that want some GPU we want."""
        mine = self.want.get("devices")
        return [e for e in found if e.get("state") == WAITING and e["path"] != self.path
                and (e.get("arrived", 0), e["path"]) < (self.data["arrived"], self.path or "")
                and (mine == "auto" or e.get("want", {}).get("devices") == "auto"
                     or set(str(mine).split(",")) & set(str(e.get("want", {}).get("devices")).split(",")))]


def acquire(run_dir, want, wait, timeout, log, holder=None):
    """Wait until the GPUs the run wants are free and no earlier waiter wants them, then hold them
    (a "running" entry). Returns (entry, CUDA_VISIBLE_DEVICES for the run or None to keep the
    configured one); (None, None) when the wait timed out. ``log``: the run's log (a file
    descriptor) for what it waits for; the run's `waiting` marker says its place."""
    from .runs import WAITING_MARKER

    entry = Entry(run_dir, want)
    if holder is not None:
        holder["entry"] = entry
    entry.write()
    deadline = time.time() + timeout if timeout else None
    told = None
    chosen = want.get("chosen")
    if chosen is not None and not [e for e in entries() if e.get("state") == HOLDING and e["path"] != entry.path
                                   and set(e.get("gpus", [])) & set(chosen)]:
        entry.write(state=HOLDING, gpus=chosen)
        return entry, (",".join(str(i) for i in chosen) if want.get("devices") == "auto" else None)
    while True:
        state, gpus, _text = gpu_info.answer(gpu_info.start_query(), 30)
        found = entries()
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
        busy = ["GPU %d: %s" % (g["index"], g.get("held_by")
                                or ", ".join("pid %s %s" % (p["pid"], p["name"]) for p in g["processes"]))
                for g in (chosen if want.get("devices") != "auto" else gpus) if not gpu_info.is_idle(g)]
        news = "waiting for a GPU: %s%s" % (
            "%d ahead in the queue (%s)" % (len(ahead),
                                            ", ".join("%s's run %s" % (e.get("user"), e.get("run")) for e in ahead[:3]))
            if ahead else "first in the queue", "; busy: " + "; ".join(busy) if busy else "")
        if news != told:
            os.write(log, ("remote-run: %s\n" % news).encode())
            write_text(os.path.join(run_dir, WAITING_MARKER),
                       json.dumps({"pid": os.getpid(), "position": len(ahead) + 1}))
            told = news
        if deadline and time.time() > deadline:
            entry.remove()
            os.write(log, ("remote-run: gave up waiting for a GPU after %g s (--wait-timeout)\n" % timeout).encode())
            return None, None
        time.sleep(POLL)
