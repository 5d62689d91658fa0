"""How the GPU queue tells a live entry from a dead one, two ways, timed and checked: the
supervisor's pid and start time (remote_run/host/queue.py) against a flock that the entry's
process holds on a lock file beside it, which the kernel drops when that process dies.

Times, in this process, medians of ``--reps``: a reader's scan of N entries (queue.entries(), what
checks and every waiter do each second) when all are live and when all are dead, and one run's
enqueue (wait, then hold) and dequeue. Then the cases each way must get right, each played by real
processes (as root, one case plays another user, "nobody"). The flock way is a prototype here
(FlockEntry, flock_live), plugged into queue.py's own entries() through queue.live. Exits 1 when
queue.py's own way gets a case wrong.

    python3 bench/bench_queue.py [--reps 50]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remote_run.host import queue  # noqa: E402
from remote_run.host.files import remove  # noqa: E402


def lock_of(path):
    return path[:-len(".json")] + ".lock"


def flock_live(entry):
    """A process holds the entry's lock (LOCK_EX): our LOCK_SH probe is refused. Probes of other
    readers do not refuse each other, and a read-only descriptor is enough (another user's file)."""
    try:
        fd = os.open(lock_of(entry["path"]), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class FlockEntry(queue.Entry):
    """queue.Entry whose process holds a flock on ``<entry>.lock`` from its first write to its
    removal. The lock is a file of its own because the entry's JSON is replaced on each write (a
    reader sees the old or the new one), and a replaced file would take the lock with it."""

    lock = None

    def write(self, **changes):
        if self.lock is None and self.path:
            # Locked before anyone may open it (0600), so nobody can take it first.
            self.lock = os.open(lock_of(self.path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(self.lock, fcntl.LOCK_EX)
            os.fchmod(self.lock, 0o644)
        super().write(**changes)

    def remove(self):
        super().remove()
        if self.lock is not None:
            remove(lock_of(self.path))
            os.close(self.lock)
            self.lock = None


WAYS = {"pid": (queue.Entry, queue.live), "flock": (FlockEntry, flock_live)}


@contextmanager
def way(name, queue_dir=None):
    """queue.py deciding liveness the ``name`` way (and reading ``queue_dir``); yields its Entry class."""
    kept = queue.live, queue.QUEUE_DIR
    queue.live, queue.QUEUE_DIR = WAYS[name][1], queue_dir or queue.QUEUE_DIR
    try:
        yield WAYS[name][0]
    finally:
        queue.live, queue.QUEUE_DIR = kept


def new_entry(kind, folder, run, arrived=None):
    made = kind("/x/runs/" + run, {"devices": "0"})
    made.path = os.path.join(folder, "%.6f-%s.json" % (arrived or time.time(), run))
    return made


def in_child(body):
    """Fork a process that runs ``body`` and tells when it is done; returns its pid (still running)."""
    ready, tell = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready)
        body()
        os.write(tell, b"x")
        time.sleep(60)
        os._exit(0)
    os.close(tell)
    os.read(ready, 1)
    os.close(ready)
    return pid


def scene(name, queue_dir, count, dead):
    """``count`` entries in a queue of their own: live (held by this process: a flock belongs to an
    open file, not to a process), or dead (left by a process that ended without removing them)."""
    with way(name, queue_dir) as kind:
        folder = queue.own_folder()
        if dead:
            pid = os.fork()
            if pid == 0:
                for i in range(count):
                    new_entry(kind, folder, "r%d" % i, 1000.0 + i).write()
                os._exit(0)
            os.waitpid(pid, 0)
            made = []
        else:
            made = [new_entry(kind, folder, "r%d" % i, 1000.0 + i) for i in range(count)]
            for entry in made:
                entry.write()
        assert len(queue.entries(drop_stale=False)) == (0 if dead else count)
        return made  # keeps the live ones' locks open


def cycle(name, queue_dir):
    """One run's entry: enqueued waiting, then holding, then removed."""
    with way(name, queue_dir) as kind:
        entry = new_entry(kind, queue.own_folder(), "c")
        entry.write()
        entry.write(state=queue.HOLDING, gpus=[0])
        entry.remove()


def scan(name, queue_dir):
    with way(name, queue_dir):
        queue.entries(drop_stale=False)


def timings(tmp, reps):
    """Median µs per step, the two ways interleaved rep by rep (so load from elsewhere hits both)."""
    steps, kept = [], []
    for count, dead in ((1, False), (10, False), (100, False), (100, True)):
        queue_dirs = {name: os.path.join(tmp, "%s-%d-%s" % (name, count, dead)) for name in WAYS}
        kept += [scene(name, queue_dirs[name], count, dead) for name in WAYS]
        steps.append(("%d %s" % (count, "dead" if dead else "live"), scan, queue_dirs))
    steps.append(("enqueue+hold+dequeue", cycle, {name: os.path.join(tmp, name + "-cycle") for name in WAYS}))
    medians = {}
    for label, step, queue_dirs in steps:
        times = {name: [] for name in WAYS}
        for _ in range(reps):
            for name in WAYS:
                started = time.perf_counter()
                step(name, queue_dirs[name])
                times[name].append(time.perf_counter() - started)
        for name in WAYS:
            medians[label, name] = statistics.median(times[name]) * 1e6
    labels = [step[0] for step in steps]
    print("µs, medians of %d, interleaved; %d cores. A scan: queue.entries(), reading every entry and deciding "
          "which are live" % (reps, os.cpu_count()))
    print("%-6s" % "way" + "".join(" %*s" % (max(9, len(label)), label) for label in labels))
    for name in WAYS:
        print("%-6s" % name + "".join(" %*.0f" % (max(9, len(label)), medians[label, name]) for label in labels))
    for made in kept:
        for entry in made:
            entry.remove()


CASES = {
    "holder": "alive, holding GPU 0: every reader counts it",
    "killed": "its holder was killed with -9: nobody counts it, its owner drops it",
    "ended": "its process ended without removing it: the same",
    "reused": "names a live process that is not its own (a reused pid): the same",
    "spoofed": "dead, and another user holds a flock on it: the same",
    "orphan": "its supervisor was killed, the run it started lives on: the same",
}


def cases(folder):
    """Each case played by real processes, each way; True when queue.py's own way gets all right."""
    results = []
    for name in WAYS:
        with way(name) as kind:
            def check(case, should_live, pid=None, name=name):
                found = [e["run"] for e in queue.entries(drop_stale=False)]
                ok = (case in found) == should_live
                queue.entries()  # its owner's next look drops what is dead
                left = any(n.endswith("-%s.json" % case) for n in os.listdir(folder))
                ok = ok and left == should_live
                results.append((name, case, "ok" if ok else "WRONG"))
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)

            holder = in_child(lambda: new_entry(kind, folder, "holder").write(state=queue.HOLDING, gpus=[0]))
            check("holder", True, holder)

            killed = in_child(lambda: new_entry(kind, folder, "killed").write(state=queue.HOLDING, gpus=[0]))
            os.kill(killed, signal.SIGKILL)  # a supervisor killed with -9: no chance to remove its entry
            os.waitpid(killed, 0)
            check("killed", False)

            left = os.fork()
            if left == 0:  # ended without removing its entry (os._exit skips every finally)
                new_entry(kind, folder, "ended").write()
                os._exit(0)
            os.waitpid(left, 0)
            check("ended", False)

            # A live process with the entry's pid that is not its process: the pid was reused (a
            # later process, or after a reboot). Here: our own pid, with another start time and no lock.
            reused = new_entry(queue.Entry, folder, "reused")
            reused.data["pid_started"] = 1
            reused.write()
            check("reused", False)

            if os.geteuid() == 0:  # root can play a second user of the box ("nobody")
                gone = os.fork()
                if gone == 0:
                    new_entry(kind, folder, "spoofed").write(state=queue.HOLDING, gpus=[0])
                    os._exit(0)
                os.waitpid(gone, 0)
                [path] = [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith("-spoofed.json")]

                def hold_as_nobody(path=path):
                    # Another user opens the dead entry's lock (or, the pid way, the entry) to read,
                    # which its mode allows, and holds a flock on it: a read-only descriptor suffices.
                    os.setuid(65534)
                    fcntl.flock(os.open(lock_of(path) if os.path.exists(lock_of(path)) else path, os.O_RDONLY),
                                fcntl.LOCK_EX)

                check("spoofed", False, in_child(hold_as_nobody))

            orphan_pid = os.path.join(os.path.dirname(folder), "orphan.pid")

            def run_outlives(orphan_pid=orphan_pid):
                # The run's process, started as the supervisor starts it (subprocess: close_fds, exec),
                # lives on after its supervisor is killed.
                new_entry(kind, folder, "orphan").write(state=queue.HOLDING, gpus=[0])
                run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
                Path(orphan_pid).write_text(str(run.pid))

            supervisor = in_child(run_outlives)
            os.kill(supervisor, signal.SIGKILL)
            os.waitpid(supervisor, 0)
            check("orphan", False)  # as today: what shows the run's own use of the GPU is nvidia-smi
            os.kill(int(Path(orphan_pid).read_text()), signal.SIGKILL)
            for leftover in os.listdir(folder):
                os.unlink(os.path.join(folder, leftover))
    verdicts = {(way_name, case): verdict for way_name, case, verdict in results}
    print()
    print("%-8s %-70s %6s %6s" % ("case", "what happened, and what must follow", *WAYS))
    for case, what in CASES.items():
        if ("pid", case) in verdicts:
            print("%-8s %-70s %6s %6s" % (case, what, *(verdicts[way_name, case] for way_name in WAYS)))
    if os.geteuid() != 0:
        print("(spoofed: needs root, to play another user)")
    return all(verdict == "ok" for (way_name, _), verdict in verdicts.items() if way_name == "pid")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rr-queue-") as tmp:
        os.chmod(tmp, 0o755)  # as /tmp is to the queue's folders: every user may read them
        timings(tmp, args.reps)
        queue.QUEUE_DIR = os.path.join(tmp, "q")
        return 0 if cases(queue.own_folder()) else 1


if __name__ == "__main__":
    sys.exit(main())
