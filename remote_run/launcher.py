"""The host side of remote-run, sent as `python -S -c` together with exits.py and tree.py.

Standard library only, Python 3.6+. One invocation does what would otherwise take several round
trips: it checks that REMOTE_DIR holds the workspace as last synced (and applies a small delta),
that the environment is current and what the GPUs say, and then starts the run detached from
SSH and follows it. A run lives in REMOTE_DIR/runs/<run-id>/: run.log (all output), meta.json
(what ran; variable names, never values), pid (the program's process group), exit_code (written
when it ends) and killed (when it was stopped on request).

Control lines start with CONTROL: the report of the checks is the first line on stdout, before
the run's output; the exit status is the last line on stderr. A command that ends without that
last line lost its connection.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time

if __package__:  # imported on this machine as remote_run.launcher
    from . import exits, tree
# On the host, the program that transport.host_program() builds defines `exits` and `tree` first.

CONTROL = "\x1e"
GRACE_SECONDS = 3.0
GPU_FIELDS = "index,name,uuid,memory.used,memory.total,utilization.gpu"
APP_FIELDS = "gpu_uuid,pid,process_name,used_memory"


def say(message):
    sys.stderr.write("remote-run: " + message + "\n")
    sys.stderr.flush()


def fail(message, code=exits.USAGE):
    say(message)
    return code


def control(stream, data):
    stream.write(CONTROL + json.dumps(data) + "\n")
    stream.flush()


def write_text(path, text):
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tree.write_atomic(path, text.encode("utf-8"))


def read_int(path):
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
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


# ----------------------------------------------------------------------------- the checks

def check_sync(root, spec):
    """Is REMOTE_DIR the tree the workspace last synced (spec["expect"])? Then apply spec["delta"]."""
    if not os.path.isfile(os.path.join(root, ".remote-run", "owner")):
        return {"state": "stale", "detail": "REMOTE_DIR is not set up by remote-run yet"}
    try:
        with open(os.path.join(root, tree.STAMP)) as handle:
            stamp = handle.read().strip()
    except OSError:
        stamp = None
    rules = tree.compile_rules(spec["rules"])
    if stamp != spec["expect"] or tree.host_fingerprint(root, rules, spec.get("protected", {})) != spec["expect"]:
        return {"state": "stale", "detail": "REMOTE_DIR differs from the last sync"}
    delta = spec.get("delta")
    if not delta:
        return {"state": "ok"}
    try:
        os.unlink(os.path.join(root, tree.STAMP))  # a delta cut short must not look synced
        tree.apply_delta(root, delta)
    except OSError as exc:
        return {"state": "stale", "detail": "applying the changes failed: %s" % (exc.strerror or exc)}
    if tree.host_fingerprint(root, rules, delta.get("protected", {})) != delta["target"]:
        return {"state": "stale", "detail": "the tree differs after applying the changes"}
    write_text(os.path.join(root, tree.STAMP), delta["target"] + "\n")
    return {"state": "applied"}


def check_env(root, spec):
    if spec["kind"] == "venv":
        try:
            with open(os.path.join(root, ".venv", ".remote-run-stamp")) as handle:
                current = handle.read().strip() == spec["stamp"]
        except OSError:
            current = False
        current = current and os.access(os.path.join(root, ".venv", "bin", "python"), os.X_OK)
        return {"state": "ok" if current else "stale"}
    # REMOTE_PYTHON (or this machine's interpreter): the one running this program. Whether torch
    # is importable, without importing it (that takes seconds); -S left site-packages out.
    import importlib.util
    import platform
    import site

    site.main()
    text = "python %s %s; " % (platform.python_version(), sys.executable)
    if importlib.util.find_spec("torch") is None:
        text += "torch is not installed"
    else:
        from importlib.metadata import version

        text += "torch " + version("torch")
    return {"state": "ok", "text": text}


def _number(text):
    try:
        return int(float(text.strip()))
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def parse_gpus(gpu_text, app_text):
    """GPUs and their processes from nvidia-smi's ``--format=csv,noheader,nounits`` output."""
    gpus = []
    for line in gpu_text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 6 or not cells[0].isdigit():
            continue
        # A GPU name may itself contain commas: the fixed fields are at both ends.
        gpus.append({"index": int(cells[0]), "name": ", ".join(cells[1:-4]), "uuid": cells[-4],
                     "memory_used": _number(cells[-3]), "memory_total": _number(cells[-2]),
                     "utilization": _number(cells[-1]), "processes": []})
    by_uuid = {g["uuid"]: g for g in gpus}
    for line in app_text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 4 or not cells[1].isdigit():
            continue
        if cells[0] in by_uuid:
            by_uuid[cells[0]]["processes"].append(
                {"pid": int(cells[1]), "name": ", ".join(cells[2:-1]), "memory": _number(cells[-1])})
    return gpus


def visible(gpus, devices):
    """The GPUs a run may use under CUDA_VISIBLE_DEVICES (indices or UUID prefixes)."""
    if not devices:
        return list(gpus)
    chosen = []
    for item in devices.split(","):
        for gpu in gpus:
            if (item.isdigit() and gpu["index"] == int(item)) or (not item.isdigit() and gpu["uuid"].startswith(item)):
                chosen.append(gpu)
    return chosen


def start_gpu_query():
    """Both nvidia-smi queries, started at once: the slowest check runs while the others do."""
    commands = [["nvidia-smi", "--query-gpu=" + GPU_FIELDS, "--format=csv,noheader,nounits"],
                ["nvidia-smi", "--query-compute-apps=" + APP_FIELDS, "--format=csv,noheader,nounits"]]
    try:
        return [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                for argv in commands]
    except OSError:
        return None


def gpu_answer(procs, limit):
    """(state, gpus, text) from start_gpu_query(); a query still running after ``limit`` seconds is ended."""
    if procs is None:
        return "missing", [], "nvidia-smi is not installed"
    outputs, deadline = [], time.time() + limit
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=max(0.1, deadline - time.time()))[0].decode("utf-8", "replace"))
        except subprocess.TimeoutExpired:
            for each in procs:
                each.kill()
                each.wait()
            return "hung", [], ""
    if procs[0].returncode:
        text = outputs[0]
        state = "nodriver" if ("NVIDIA driver" in text or "NVIDIA-SMI has failed" in text) else "failed"
        return state, [], "exit %d: %s" % (procs[0].returncode, text.strip()[-300:])
    return "ok", parse_gpus(outputs[0], outputs[1] if procs[1].returncode == 0 else ""), ""


def check_gpu(spec, procs):
    """What the GPUs say, and whether a run may start under ``spec`` (devices or auto, require,
    allow_busy, wait). A GPU is busy when it has processes or another remote-run run (any user's)
    holds it in the queue."""
    state, gpus, text = gpu_answer(procs, spec["limit"])
    report = {"state": state, "gpus": gpus, "chosen": [], "busy": [], "text": text}
    if state != "ok":
        report["go"] = not spec["require"]
        return report
    if not gpus:
        report.update(state="none", go=not spec["require"])
        return report
    entries = queue_entries()
    mark_held(gpus, entries)
    report["waiting"] = len([e for e in entries if e.get("state") == "waiting"])  # for choosing among hosts
    if spec["devices"] == "auto":
        free = idle(gpus)
        report["chosen"] = [g["index"] for g in free[:spec.get("count") or 1]]
        if len(free) < (spec.get("count") or 1):
            report.update(state="busy", busy=[g["index"] for g in gpus if not is_idle(g)], auto=spec.get("count") or 1)
            report.update(go=bool(spec["allow_busy"] or spec.get("wait")), waits=bool(spec.get("wait")))
            return report
        report["go"] = True
        return report
    chosen = visible(gpus, spec["devices"])
    report["chosen"] = [g["index"] for g in chosen]
    if spec["devices"] and not chosen:
        report.update(state="nomatch", go=False)
        return report
    report["busy"] = [g["index"] for g in chosen if not is_idle(g)]
    if report["busy"]:
        report.update(state="busy", go=bool(spec["allow_busy"] or spec.get("wait")), waits=bool(spec.get("wait")))
        return report
    report["go"] = True
    return report


# --------------------------------------------------------------------------- the GPU queue
#
# One queue per host, shared by every user of it. Each user's entries live in a folder of their
# own, QUEUE_DIR + "." + uid, which only they can write (a real directory, theirs, mode 755, in a
# sticky /tmp): everyone reads every folder, nobody can edit or remove another's entries. An entry
# is a run that waits for GPUs ("waiting") or holds them ("running"), with the pid and start time
# of its supervisor: an entry whose process is gone is ignored by everyone and removed by its
# owner. Waiting entries are served in arrival order.

# Every user of a host must agree on it; REMOTE_RUN_GPU_QUEUE in the host's environment moves it
# (the test suite gives each fake host, with its fake GPUs, a queue of its own).
QUEUE_DIR = os.environ.get("REMOTE_RUN_GPU_QUEUE") or "/tmp/remote-run-gpu-queue"
QUEUE_POLL = 1.0


def is_idle(gpu):
    return not gpu["processes"] and not gpu.get("held_by")


def idle(gpus):
    """The idle GPUs, least memory used first."""
    return sorted((g for g in gpus if is_idle(g)), key=lambda g: (g["memory_used"] or 0, g["index"]))


def _started_at(pid):
    """The process's start time (clock ticks since boot), to tell it from a later one with its pid."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _own_queue():
    """This user's queue folder, created private to writers; None when it cannot be trusted."""
    folder = "%s.%d" % (QUEUE_DIR, os.geteuid())
    try:
        os.mkdir(folder, 0o755)
    except FileExistsError:
        pass
    except OSError:
        return None
    return folder if _trusted(folder, os.geteuid()) else None


def _trusted(folder, uid):
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    import stat
    return stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o022


def queue_entries():
    """Every live entry of every user, oldest first."""
    import glob

    entries = []
    for folder in glob.glob(QUEUE_DIR + ".*"):
        suffix = folder.rsplit(".", 1)[1]
        if not suffix.isdigit() or not _trusted(folder, int(suffix)):
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
            if alive(entry.get("pid")) and _started_at(entry["pid"]) == entry.get("pid_started"):
                entries.append(entry)
            elif entry["uid"] == os.geteuid():
                _remove(entry["path"])  # its owner died: dropped
    return sorted(entries, key=lambda e: (e.get("arrived", 0), e["path"]))


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def mark_held(gpus, entries, me=None):
    for entry in entries:
        if entry.get("state") == "running" and entry["path"] != me:
            for gpu in gpus:
                if gpu["index"] in entry.get("gpus", []):
                    gpu["held_by"] = "%s's run %s" % (entry.get("user", "?"), entry.get("run", "?"))


class QueueEntry:
    """This run's place in the host's queue."""

    def __init__(self, run_dir, want):
        import pwd

        self.folder = _own_queue()
        self.run = os.path.basename(run_dir)
        self.want = want  # {"devices": "0,1"} or {"devices": "auto", "count": N}
        self.path = None if self.folder is None else os.path.join(self.folder, "%.6f-%d.json" % (time.time(), os.getpid()))
        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = str(os.geteuid())
        self.data = {"run": self.run, "user": user, "pid": os.getpid(), "pid_started": _started_at(os.getpid()),
                     "arrived": time.time(), "state": "waiting", "want": want, "gpus": []}

    def write(self, **changes):
        self.data.update(changes)
        if self.path:
            write_text(self.path, json.dumps(self.data))

    def remove(self):
        if self.path:
            _remove(self.path)

    def ahead(self, entries):
        """The waiting entries before ours that want some GPU we want."""
        mine = self.want.get("devices")
        return [e for e in entries if e.get("state") == "waiting" and e["path"] != self.path
                and (e.get("arrived", 0), e["path"]) < (self.data["arrived"], self.path or "")
                and (mine == "auto" or e.get("want", {}).get("devices") == "auto"
                     or set(str(mine).split(",")) & set(str(e.get("want", {}).get("devices")).split(",")))]


def acquire(run_dir, want, wait, timeout, log, holder=None):
    """Wait until the GPUs the run wants are free and no earlier waiter wants them, then hold them
    (a "running" entry). Returns (entry, CUDA_VISIBLE_DEVICES for the run or None to keep the
    configured one); (None, None) when the wait timed out."""
    entry = QueueEntry(run_dir, want)
    if holder is not None:
        holder["entry"] = entry
    entry.write()
    deadline = time.time() + timeout if timeout else None
    told = None
    chosen = want.get("chosen")
    if chosen is not None and not [e for e in queue_entries() if e.get("state") == "running" and e["path"] != entry.path
                                   and set(e.get("gpus", [])) & set(chosen)]:
        entry.write(state="running", gpus=chosen)
        return entry, (",".join(str(i) for i in chosen) if want.get("devices") == "auto" else None)
    while True:
        state, gpus, _text = gpu_answer(start_gpu_query(), 30)
        entries = queue_entries()
        ahead = entry.ahead(entries)
        if state != "ok" or not gpus:
            entry.write(state="running")  # nothing to wait for: the GPU check decided already
            return entry, None
        mark_held(gpus, entries, me=entry.path)
        if want.get("devices") == "auto":
            chosen = idle(gpus)[:want.get("count") or 1]
            ready = len(chosen) == (want.get("count") or 1)
        else:
            chosen = visible(gpus, want.get("devices"))
            ready = bool(chosen) and all(is_idle(g) for g in chosen)
        if ready and not ahead:
            indices = [g["index"] for g in chosen]
            entry.write(state="running", gpus=indices)
            return entry, (",".join(str(i) for i in indices) if want.get("devices") == "auto" else None)
        if not wait:  # checked before the start; raced by another run since: go on as checked
            entry.write(state="running", gpus=[g["index"] for g in chosen])
            return entry, None
        busy = ["GPU %d: %s" % (g["index"], g.get("held_by") or ", ".join("pid %s %s" % (p["pid"], p["name"]) for p in g["processes"]))
                for g in (chosen if want.get("devices") != "auto" else gpus) if not is_idle(g)]
        news = "waiting for a GPU: %s%s" % (
            "%d ahead in the queue (%s)" % (len(ahead), ", ".join("%s's run %s" % (e.get("user"), e.get("run")) for e in ahead[:3]))
            if ahead else "first in the queue", "; busy: " + "; ".join(busy) if busy else "")
        if news != told:
            os.write(log, ("remote-run: %s\n" % news).encode())
            write_text(os.path.join(run_dir, "waiting"), json.dumps({"pid": os.getpid(), "position": len(ahead) + 1}))
            told = news
        if deadline and time.time() > deadline:
            entry.remove()
            os.write(log, ("remote-run: gave up waiting for a GPU after %g s (--wait-timeout)\n" % timeout).encode())
            return None, None
        time.sleep(QUEUE_POLL)


def check_docker(limit):
    """Can Docker start GPU containers: is the NVIDIA runtime among its runtimes?"""
    try:
        done = subprocess.run(["docker", "info", "--format", "{{json .Runtimes}}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=limit)
    except OSError:
        return {"state": "missing"}
    except subprocess.TimeoutExpired:
        return {"state": "error", "text": "docker info did not answer within %g s" % limit}
    if done.returncode:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return {"state": "error", "text": lines[-1][:200] if lines else "exit %d" % done.returncode}
    try:
        runtimes = sorted(json.loads(done.stdout.decode("utf-8", "replace") or "{}"))
    except ValueError:
        runtimes = []
    return {"state": "ok" if "nvidia" in runtimes else "noruntime", "text": ", ".join(runtimes)}


def checks(root, payload):
    """The report of every check the payload asks for; ``ok`` when a run may start."""
    report = {}
    gpu_query = start_gpu_query() if payload.get("gpu") else None
    if payload.get("sync"):
        report["sync"] = check_sync(root, payload["sync"])
    if payload.get("env"):
        report["env"] = check_env(root, payload["env"])
    if payload.get("gpu"):
        report["gpu"] = check_gpu(payload["gpu"], gpu_query)
    if payload.get("docker"):
        report["docker"] = check_docker(payload.get("gpu", {}).get("limit", 20))
    report["ok"] = (report.get("sync", {}).get("state", "ok") in ("ok", "applied")
                    and report.get("env", {}).get("state", "ok") == "ok"
                    and report.get("gpu", {}).get("go", True))
    return report


def check(payload):
    report = checks(payload["root"], payload)
    sys.stdout.write(json.dumps(report) + "\n")
    return exits.OK if report["ok"] else exits.PREFLIGHT


# ------------------------------------------------------------------------------------- runs

def not_ours(root):
    """Why REMOTE_DIR is not a real directory of ours that no one else may write to ("" if it is).
    The sync that created it checked this; it is checked again before a run writes into it."""
    try:
        info = os.lstat(root)
    except OSError:
        return ""
    if not os.path.isdir(root) or os.path.islink(root):
        return "REMOTE_DIR=%s is not a real directory (a symbolic link or a file); choose another REMOTE_DIR" % root
    mode = info.st_mode & 0o7777
    if info.st_uid != os.geteuid():
        return "REMOTE_DIR=%s belongs to uid %d (mode %o), not to you; choose another REMOTE_DIR" % (root, info.st_uid, mode)
    if mode & 0o022:
        return ("REMOTE_DIR=%s is writable by other users (mode %o), so they could swap its files; run chmod go-w on it "
                "on the host if only you use it, or choose another REMOTE_DIR" % (root, mode))
    return ""


def start(payload):
    """The checks, then the run (or, with "members", a group of runs one after another) detached
    from SSH; then follow it unless detached."""
    root = payload["root"]
    problem = not_ours(root)
    if problem:
        return fail(problem, exits.REFUSED)
    report = checks(root, payload)
    if report["ok"] and not os.path.isdir(root):
        report.update(ok=False, missing=True)
    control(sys.stdout, report)
    if not report["ok"]:
        return exits.PREFLIGHT
    members = payload.get("members") or [{key: payload.get(key) for key in ("run_dir", "argv", "files", "meta", "cwd")}]
    queue = payload.get("queue")
    if queue and report.get("gpu", {}).get("state") == "ok" and not report["gpu"].get("busy"):
        queue = dict(queue, chosen=report["gpu"]["chosen"])  # the check just found them free: no second query
    group_dir = os.path.join(root, payload["group_dir"]) if payload.get("group_dir") else None
    try:
        if group_dir:
            os.makedirs(os.path.dirname(group_dir), exist_ok=True)
            os.mkdir(group_dir)
            write_text(os.path.join(group_dir, "group.json"), json.dumps(
                dict(payload.get("meta", {}), members=[os.path.basename(m["run_dir"]) for m in members], started=time.time())))
        release_ended(root)
        for member in members:
            prepare_run(root, member, payload.get("rules"), queued=bool(group_dir))
    except SnapshotError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail("cannot prepare the run in %s: %s" % (root, exc.strerror or exc))
    os.chdir(root)
    started, told = os.pipe()  # the supervisor says the first run's pid on it (or closes it when it cannot start)
    ended, ends = os.pipe()  # ... and closes this one once the first run's exit status is written
    child = os.fork()
    if child == 0:
        os.close(started)
        os.close(ended)
        os.setsid()
        if os.fork():
            os._exit(0)
        supervise(root, group_dir, members, payload.get("variables", {}), payload.get("sample"), (told, ends), queue,
                  payload.get("notify"))
    os.close(told)
    os.close(ends)
    os.waitpid(child, 0)
    with os.fdopen(started) as pipe:
        pid = pipe.read().strip()
    first = os.path.join(root, members[0]["run_dir"])
    if pid == "waiting":
        say("run %s is queued: it starts when its GPUs are free (see `inv status`)" % os.path.basename(group_dir or first))
    else:
        say("run %s started (pid %s)" % (os.path.basename(group_dir or first), pid or None))
    if payload.get("detach") or group_dir:
        os.close(ended)
        return exits.OK
    return follow(first, 0, stop_run=True, grace=payload.get("grace", GRACE_SECONDS), ended=ended)


def prepare_run(root, member, rules, queued=False):
    """A run's folder: its snapshot of the code (work/, with the rendered runners), meta.json and an
    empty run.log (and, for a run of a group that has to wait its turn, the `queued` marker)."""
    run_dir = os.path.join(root, member["run_dir"])
    os.makedirs(os.path.dirname(run_dir), mode=0o700, exist_ok=True)
    os.mkdir(run_dir)
    taken = snapshot(root, run_dir, rules)
    render(os.path.join(run_dir, WORK), member.get("files") or {}, remember=False)
    meta = dict(member.get("meta") or {}, argv=member["argv"], started=time.time(), snapshot=taken)
    write_text(os.path.join(run_dir, "meta.json"), json.dumps(meta, indent=1))
    open(os.path.join(run_dir, "run.log"), "ab").close()
    if queued:
        write_text(os.path.join(run_dir, "queued"), "")


# ------------------------------------------------------------------------------- snapshots

WORK = "work"  # runs/<id>/work: the run's own copy of the synced tree, and its working directory
LINKED = "work.linked"  # what the snapshot hard-linked: "path\0inode\0" pairs, to tell code from outputs


class SnapshotError(Exception):
    pass


def snapshot(root, run_dir, rules):
    """Hard-link the synced tree into run_dir/work. A later sync replaces files (rsync writes a new
    file and renames it; so does a delta) and never writes into one, so the run keeps the code it
    started with. data/, .venv and the top-level paths the sync leaves alone are linked as
    symlinks: shared, not copied. Returns {"tree": the sync stamp, "files", "seconds"}."""
    began = time.time()
    stamp_path = os.path.join(root, tree.STAMP)
    before = _read(stamp_path)
    work = os.path.join(run_dir, WORK)
    os.mkdir(work, 0o700)
    skip = set(tree.read_rendered(root)) | set(tree.PROTECTED)
    entries = tree.walk(root, tree.compile_rules(rules or []), skip)
    linked = []
    for rel in sorted(entries):  # a folder sorts before what is in it
        kind, _size, _mtime, mode, target = entries[rel]
        source, dest = os.path.join(root, rel), os.path.join(work, rel)
        if kind == tree.DIR:
            os.mkdir(dest, 0o700)
        elif kind == tree.FILE:
            os.link(source, dest)
            linked.append("%s\0%d\0" % (rel, os.lstat(dest).st_ino))
        elif kind == tree.LINK:
            os.symlink(target, dest)
    for rel in sorted(entries, reverse=True):  # the folders' own modes, once their contents are in
        if entries[rel][0] == tree.DIR:
            os.chmod(os.path.join(work, rel), entries[rel][3])
    for name in os.listdir(root):
        if name not in entries and name not in ("runs", ".remote-run") and name not in skip - {"data", ".venv"}:
            os.symlink(os.path.join(root, name), os.path.join(work, name))
    if "data" not in entries and not os.path.lexists(os.path.join(work, "data")):
        os.makedirs(os.path.join(root, "data"), mode=0o700, exist_ok=True)  # the dataset cache stays shared
        os.symlink(os.path.join(root, "data"), os.path.join(work, "data"))
    with open(os.path.join(run_dir, LINKED), "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write("".join(linked))
    if before is None:
        raise SnapshotError("REMOTE_DIR has no sync stamp, so the run's snapshot cannot be checked; run `inv sync` and then the run again")
    if _read(stamp_path) != before:
        raise SnapshotError("REMOTE_DIR changed while the run's snapshot was taken (a sync from another terminal?); run again")
    return {"tree": before, "files": len(linked), "seconds": round(time.time() - began, 3)}


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def release_snapshot(run_dir):
    """After the run: remove the code the snapshot linked, unless the run changed it, and the
    folders and links left empty, so that work/ keeps only what the run wrote (its outputs)."""
    work = os.path.join(run_dir, WORK)
    try:
        with open(os.path.join(run_dir, LINKED), encoding="utf-8", errors="surrogateescape") as handle:
            parts = handle.read().split("\0")
    except OSError:
        return
    for rel, inode in zip(parts[0::2], parts[1::2]):
        path = os.path.join(work, rel)
        try:
            if os.lstat(path).st_ino == int(inode):
                os.unlink(path)
        except (OSError, ValueError):
            pass
    for folder, dirs, files in os.walk(work, topdown=False):
        for name in files + dirs:
            path = os.path.join(folder, name)
            if os.path.islink(path) and os.path.isabs(os.readlink(path)) and os.readlink(path).startswith(os.path.dirname(os.path.dirname(run_dir)) + os.sep):
                os.unlink(path)  # a link into REMOTE_DIR the snapshot made (data/, .venv, ...)
        try:
            if folder != work:
                os.rmdir(folder)
        except OSError:
            pass
    try:
        os.unlink(os.path.join(run_dir, LINKED))
    except OSError:
        pass


def release_ended(root):
    """Release the snapshots of runs that ended without doing it (a supervisor that was killed)."""
    runs = os.path.join(root, "runs")
    try:
        names = os.listdir(runs)
    except OSError:
        return
    for name in names:
        run_dir = os.path.join(runs, name)
        if not os.path.exists(os.path.join(run_dir, LINKED)):
            continue
        state = state_of(run_dir)[0]
        # "lost" also reads a run being prepared by another terminal this moment: give it a minute
        if state in ("finished", "failed", "killed", "skipped") or (state == "lost" and _age(run_dir) > 60):
            release_snapshot(run_dir)


def _age(run_dir):
    try:
        return time.time() - os.stat(os.path.join(run_dir, "meta.json")).st_mtime
    except OSError:
        return 0


def render(root, files, remember=True):
    """Write the rendered runners; remember them (and the folders made for them) in tree.RENDERED."""
    made = []
    for rel, text in files.items():
        path = os.path.join(root, rel)
        folder, parts = os.path.dirname(rel), []
        while folder and not os.path.isdir(os.path.join(root, folder)):
            parts.append(folder)
            folder = os.path.dirname(folder)
        made.extend(parts)
        write_text(path, text)
        made.append(rel)
    if made and remember:
        known = tree.read_rendered(root)
        names = known + [rel for rel in made if rel not in known]
        write_text(os.path.join(root, tree.RENDERED), "\0".join(names))


def supervise(root, group_dir, members, env, sample, pipes, queue=None, notify=None):
    """The detached parent of the runs: owns their logs, records their pids and exit statuses; a
    group's runs go one after another until one is stopped on request. ``pipes``: (told, ends),
    see start()."""
    told, ends = pipes
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    environment = dict(os.environ)
    if env.get("PYTHONPATH") and environment.get("PYTHONPATH"):
        env = dict(env, PYTHONPATH=env["PYTHONPATH"] + os.pathsep + environment["PYTHONPATH"])
    environment.update(env)
    environment["PYTHONUNBUFFERED"] = "1"
    if group_dir:
        write_text(os.path.join(group_dir, "pid"), "%d\n" % os.getpid())
    code = 0
    for member in members:
        run_dir = os.path.join(root, member["run_dir"])
        if group_dir and os.path.exists(os.path.join(group_dir, "stopped")):
            write_text(os.path.join(run_dir, "skipped"), "")  # stopped before its turn
            continue
        if group_dir:
            os.unlink(os.path.join(run_dir, "queued"))
        entry, devices = None, None
        if queue and queue.get("want"):
            if queue.get("wait") and told is not None:
                write_text(os.path.join(run_dir, "waiting"), json.dumps({"pid": os.getpid(), "position": "?"}))
                os.write(told, b"waiting\n")  # `start` returns; the run's log tells what it waits for
                os.close(told)
                told = None
            entry, devices = wait_turn(run_dir, dict(queue, want=dict(queue["want"], chosen=queue.get("chosen"))) if member is members[0] else queue)
            if entry is None:
                code = exits.PREFLIGHT
                notify_end(notify, run_dir, code)  # NOTIFY_URL: it timed out waiting
                continue
        run_env = dict(environment, CUDA_VISIBLE_DEVICES=devices) if devices is not None else environment
        if devices is not None:
            write_text(os.path.join(run_dir, "gpus"), devices + "\n")
        try:
            code = run_one(run_dir, member["argv"], run_env, member.get("cwd") or "", dict(sample or {}, devices=devices) if devices else sample, told, ends)
        finally:
            if entry is not None:
                entry.remove()
        notify_end(notify, run_dir, code)  # NOTIFY_URL
        told = ends = None  # only the first run's pid and end are awaited
    if group_dir:
        write_text(os.path.join(group_dir, "exit_code"), "%d\n" % code)
    os._exit(0)


def wait_turn(run_dir, queue):
    """acquire() with the run's log open; SIGTERM (`inv kill`, Ctrl+C) while waiting leaves the
    queue and ends the run as killed. (entry, devices), or (None, None) when it gave up."""
    log = os.open(os.path.join(run_dir, "run.log"), os.O_WRONLY | os.O_APPEND)
    holder = {}

    def on_term(signum, frame):
        if holder.get("entry") is not None:
            holder["entry"].remove()
        _remove(os.path.join(run_dir, "waiting"))
        write_text(os.path.join(run_dir, "killed"), "%f\n" % time.time())
        os.write(log, b"remote-run: stopped while waiting for a GPU\n")
        write_text(os.path.join(run_dir, "exit_code"), "%d\n" % exits.INTERRUPTED)
        release_snapshot(run_dir)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    try:
        entry, devices = acquire(run_dir, queue["want"], queue.get("wait"), queue.get("timeout"), log, holder)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _remove(os.path.join(run_dir, "waiting"))
    if entry is None:
        write_text(os.path.join(run_dir, "timeout"), "")
        write_text(os.path.join(run_dir, "exit_code"), "%d\n" % exits.PREFLIGHT)
        release_snapshot(run_dir)
    os.close(log)
    return entry, devices


def run_one(run_dir, argv, environment, cwd, sample, told, ends=None):
    """Run ``argv`` with its output in run.log, its pid in pid, the GPU sampled beside it, and its
    exit status in exit_code (then ``ends`` is closed); returns that status."""
    log = os.open(os.path.join(run_dir, "run.log"), os.O_WRONLY | os.O_APPEND)
    work = os.path.join(run_dir, WORK)
    environment = dict(environment, PYTHONPATH=os.pathsep.join(
        [os.path.join(work, ".remote-run", "site"), work] + [p for p in [environment.get("PYTHONPATH")] if p]))
    try:
        proc = subprocess.Popen(argv, env=environment, cwd=os.path.join(work, cwd), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    except OSError as exc:
        os.write(log, ("remote-run: cannot start %s: %s\n" % (argv[0], exc.strerror or exc)).encode())
        write_text(os.path.join(run_dir, "exit_code"), "%d\n" % exits.MISSING)
        for fd in (told, ends):
            if fd is not None:
                os.close(fd)
        return exits.MISSING
    write_text(os.path.join(run_dir, "pid"), "%d\n" % proc.pid)
    if told is not None:
        os.write(told, b"%d\n" % proc.pid)
        os.close(told)
    sampler = start_sampler(run_dir, sample)
    # Room for the exit status is taken now: the run may fill the disk before it ends.
    pending = os.path.join(run_dir, "exit_code.pending")
    with open(pending, "w") as handle:
        handle.write(" " * 16)
    code = proc.wait()
    code = 128 - code if code < 0 else code
    if sampler is not None:
        sampler.terminate()
        sampler.wait()
    with open(pending, "r+") as handle:
        handle.write(("%d\n" % code).ljust(16))
    os.replace(pending, os.path.join(run_dir, "exit_code"))
    if ends is not None:
        os.close(ends)
    os.close(log)
    if code and disk_full(run_dir):
        open(os.path.join(run_dir, "disk_full"), "w").close()  # releasing the snapshot frees a little
    release_snapshot(run_dir)
    return code


def notify_end(notify, run_dir, code):
    """Tell NOTIFY_URL how the run ended, from a process of its own (nothing waits for it). The URL
    is only in this process's memory (it came on stdin); a failure is one line in the run's log,
    without it, and changes nothing else."""
    if not notify or not notify.get("url"):
        return
    child = os.fork()
    if child:
        os.waitpid(child, 0)  # the grandchild is on its own
        return
    try:
        if not os.fork():
            post_end(notify, run_dir, code)
    finally:
        os._exit(0)


def post_end(notify, run_dir, code):
    import socket
    import urllib.request

    url, run_id = notify["url"], os.path.basename(run_dir)
    outcome = "killed" if os.path.exists(os.path.join(run_dir, "killed")) or code == exits.INTERRUPTED else (
        "finished" if code == 0 else "failed")
    result = last_result(os.path.join(run_dir, "run.log")) or ""
    host = socket.gethostname()
    text = "remote-run: run %s %s (exit %d) on %s%s" % (run_id, outcome, code, host, "\n" + result if result else "")
    if notify.get("format") == "text":  # ntfy: the body is the message
        data, headers = text.encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8", "Title": "remote-run: run " + outcome}
    else:  # Slack-compatible JSON: "text" is the message
        data = json.dumps({"text": text, "run": run_id, "outcome": outcome, "exit": code, "result": result, "host": host}).encode("utf-8")
        headers = {"Content-Type": "application/json"}
    headers["User-Agent"] = "remote-run"
    try:
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=notify.get("timeout", 10)) as answer:
            answer.read(4096)
        return
    except urllib.error.HTTPError as exc:
        why = "HTTP %d %s" % (exc.code, exc.reason)
    except urllib.error.URLError as exc:
        why = str(exc.reason)
    except (OSError, ValueError) as exc:
        why = "%s: %s" % (type(exc).__name__, exc)
    parts = urllib.parse.urlsplit(url)
    for secret in (url, parts.netloc, parts.path, parts.query):  # never the URL, nor a piece of it
        if len(secret) > 1:
            why = why.replace(secret, "<NOTIFY_URL>")
    try:
        with open(os.path.join(run_dir, "run.log"), "ab") as log:
            log.write(("remote-run: the NOTIFY_URL notification failed (%s); the run's outcome is unchanged\n" % why[:200]).encode())
    except OSError:
        pass


def start_sampler(run_dir, sample):
    """`nvidia-smi -lms` writing the run's GPUs' utilisation, memory and power to gpu.csv every
    ``sample["seconds"]``; None when sampling is off or there is no nvidia-smi."""
    if not sample or not sample.get("seconds") or sample.get("devices") == "-1":
        return None
    argv = ["nvidia-smi", "--query-gpu=timestamp,index,uuid,utilization.gpu,memory.used,memory.total,power.draw",
            "--format=csv,noheader,nounits", "-lms", str(int(sample["seconds"] * 1000))]
    if sample.get("devices"):
        argv += ["-i", sample["devices"]]
    try:
        with open(os.path.join(run_dir, "gpu.csv"), "wb") as out:
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    except OSError:
        return None


def follow(run_dir, offset, stop_run, grace=GRACE_SECONDS, ended=None):
    """Copy the run's log to stdout from ``offset`` until it ends; returns its exit status.
    ``ended``: a pipe the supervisor closes once the exit status is written (start() has one)."""
    if not os.path.isdir(run_dir):
        return fail("no run %s in %s" % (os.path.basename(run_dir), os.path.dirname(os.path.dirname(run_dir))))
    out = sys.stdout.buffer

    def on_interrupt(signum, frame):
        # Only on this machine (`local`): over SSH no signal reaches the host.
        if stop_run:
            say("stopping run %s (Ctrl+C)" % os.path.basename(run_dir))
            terminate(run_dir, grace)
        else:
            os._exit(exits.INTERRUPTED)

    signal.signal(signal.SIGINT, on_interrupt)
    exit_path = os.path.join(run_dir, "exit_code")
    lost_since, nap = None, 0.001
    with open(os.path.join(run_dir, "run.log"), "rb") as log:
        log.seek(offset)
        while True:
            chunk = log.read(65536)
            if chunk:
                out.write(chunk)
                out.flush()
                nap = 0.001
                continue
            code = read_int(exit_path)
            if code is not None:
                rest = log.read()
                if rest:
                    out.write(rest)
                    out.flush()
                if code and (disk_full(run_dir) or os.path.exists(os.path.join(run_dir, "disk_full"))):
                    say("the disk is full on this host (%s has no free space left); free space or choose another REMOTE_DIR"
                        % os.path.dirname(os.path.dirname(run_dir)))
                return code
            if os.path.exists(os.path.join(run_dir, "skipped")):
                return exits.INTERRUPTED  # its group was stopped before its turn
            waiting = (os.path.exists(os.path.join(run_dir, "queued")) and alive(read_int(os.path.join(group_of(run_dir), "pid")))
                       or alive((waiting_of(run_dir) or {}).get("pid")))
            if not waiting and not alive(read_int(os.path.join(run_dir, "pid"))):
                lost_since = lost_since or time.time()
                if time.time() - lost_since > 5:
                    return fail("run %s ended without recording an exit status (was its supervisor killed?)"
                                % os.path.basename(run_dir), exits.VANISHED)
            # Short naps while output flows or the run just started (a quick run ends sooner),
            # backing off to a tenth of a second for a long quiet one; woken at once by the end.
            if ended is not None and select.select([ended], [], [], nap)[0]:
                os.close(ended)  # the exit status is written (or the supervisor is gone)
                ended = None
            elif ended is None:
                time.sleep(nap)
            nap = min(nap * 1.5, 0.1)


def show(run_dir, offset):
    if not os.path.isdir(run_dir):
        return fail("no run %s in %s" % (os.path.basename(run_dir), os.path.dirname(os.path.dirname(run_dir))))
    with open(os.path.join(run_dir, "run.log"), "rb") as log:
        log.seek(offset)
        sys.stdout.buffer.write(log.read())
    sys.stdout.buffer.flush()
    return exits.OK


def disk_full(path):
    try:
        return os.statvfs(path).f_bavail == 0
    except OSError:
        return False


def terminate(run_dir, grace):
    """SIGINT, then SIGTERM, then SIGKILL to the run's process group, each after ``grace`` seconds."""
    pid = read_int(os.path.join(run_dir, "pid"))
    if not pid:
        return False
    write_text(os.path.join(run_dir, "killed"), "%f\n" % time.time())
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.time() + grace
        while time.time() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
    return True


def state_of(run_dir):
    code = read_int(os.path.join(run_dir, "exit_code"))
    if os.path.exists(os.path.join(run_dir, "skipped")):
        return "skipped", None
    if os.path.exists(os.path.join(run_dir, "timeout")):
        return "timed out", code
    waiting = waiting_of(run_dir)
    if waiting is not None and code is None:
        return ("waiting" if alive(waiting.get("pid")) else "lost"), None
    if os.path.exists(os.path.join(run_dir, "queued")):
        return ("queued" if alive(read_int(os.path.join(group_of(run_dir), "pid"))) else "lost"), None
    if os.path.exists(os.path.join(run_dir, "killed")):
        return ("killed" if code is not None or not alive(read_int(os.path.join(run_dir, "pid"))) else "stopping"), code
    if code is not None:
        return ("finished" if code == 0 else "failed"), code
    return ("running" if alive(read_int(os.path.join(run_dir, "pid"))) else "lost"), None


def waiting_of(run_dir):
    """The `waiting` marker of a run in the GPU queue ({"pid": its supervisor, "position"}), or None."""
    try:
        with open(os.path.join(run_dir, "waiting")) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def group_of(run_dir):
    """The folder of the group a run belongs to ("" for none)."""
    try:
        with open(os.path.join(run_dir, "meta.json")) as handle:
            group = json.load(handle).get("group")
    except (OSError, ValueError):
        return ""
    return os.path.join(os.path.dirname(run_dir), group) if group else ""


def group_state(group_dir, members):
    """A group's state from its runs': running while one runs or waits, else how it ended."""
    states = [state_of(os.path.join(os.path.dirname(group_dir), m))[0] for m in members]
    for busy in ("running", "stopping", "queued"):
        if busy in states:
            return "running"
    if "killed" in states or "skipped" in states:
        return "killed"
    return "failed" if "failed" in states or "lost" in states else "finished"


def last_result(path):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 65536))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("RESULT_"):
            return line.strip()
    return None


def status(runs):
    rows = []
    if os.path.isdir(runs):
        for name in sorted(os.listdir(runs)):
            run_dir = os.path.join(runs, name)
            if not os.path.isdir(run_dir):
                continue
            try:
                with open(os.path.join(run_dir, "meta.json")) as handle:
                    meta = json.load(handle)
            except (OSError, ValueError):
                meta = {}
            if os.path.isfile(os.path.join(run_dir, "group.json")):
                try:
                    with open(os.path.join(run_dir, "group.json")) as handle:
                        group = json.load(handle)
                except (OSError, ValueError):
                    continue
                rows.append({"id": name, "task": group.get("task", "?"), "started": group.get("started"), "group": True,
                             "members": group.get("members", []), "state": group_state(run_dir, group.get("members", [])),
                             "exit_code": read_int(os.path.join(run_dir, "exit_code")), "result": None, "log_bytes": 0})
                continue
            state, code = state_of(run_dir)
            log = os.path.join(run_dir, "run.log")
            if state == "waiting":
                state = "waiting, #%s in the GPU queue" % (waiting_of(run_dir) or {}).get("position", "?")
            rows.append({
                "id": name, "task": meta.get("task", "?"), "started": meta.get("started"), "member_of": meta.get("group"),
                "state": state, "exit_code": code, "result": last_result(log),
                "log_bytes": os.path.getsize(log) if os.path.exists(log) else 0,
            })
    sys.stdout.write(json.dumps(rows) + "\n")
    return exits.OK


def kill(run_dir, grace, offset):
    """Stop a run; with ``offset``, then print its log from there and return its exit status.
    Stopping a group stops the run going on and the ones waiting their turn."""
    if not os.path.isdir(run_dir):
        return fail("no run %s in %s" % (os.path.basename(run_dir), os.path.dirname(os.path.dirname(run_dir))))
    if os.path.isfile(os.path.join(run_dir, "group.json")):
        with open(os.path.join(run_dir, "group.json")) as handle:
            members = json.load(handle).get("members", [])
        if group_state(run_dir, members) != "running":
            return fail("group %s is not running" % os.path.basename(run_dir), exits.NOT_RUNNING)
        write_text(os.path.join(run_dir, "stopped"), "%f\n" % time.time())
        for member in members:
            member_dir = os.path.join(os.path.dirname(run_dir), member)
            if state_of(member_dir)[0] in ("running", "stopping"):
                terminate(member_dir, grace)
        say("group %s stopped" % os.path.basename(run_dir))
        return exits.OK
    state, _ = state_of(run_dir)
    if state == "waiting":  # its supervisor leaves the queue and records it as killed
        try:
            os.kill(waiting_of(run_dir)["pid"], signal.SIGTERM)
        except (OSError, KeyError, TypeError):
            pass
        for _ in range(100):
            if read_int(os.path.join(run_dir, "exit_code")) is not None:
                break
            time.sleep(0.05)
        say("run %s left the GPU queue" % os.path.basename(run_dir))
        return exits.OK if offset is None else follow(run_dir, offset, stop_run=False)
    if state not in ("running", "stopping"):
        return fail("run %s is not running (%s)" % (os.path.basename(run_dir), state), exits.NOT_RUNNING)
    terminate(run_dir, grace)
    say("run %s stopped" % os.path.basename(run_dir))
    if offset is None:
        return exits.OK
    return follow(run_dir, offset, stop_run=False)


def main(argv):
    mode = argv[0] if argv else ""
    if mode in ("check", "start"):  # the payload: on the command line, or on stdin when private
        payload = json.loads(argv[1] if len(argv) > 1 else sys.stdin.readline())
    if mode == "check":
        return check(payload)
    if mode == "start":
        run_dir = os.path.join(payload["root"], payload.get("run_dir") or payload["members"][0]["run_dir"])
        code = start(payload)
    else:
        root = argv[1] if len(argv) > 1 else ""
        run_dir = os.path.join(root, "runs", argv[2]) if len(argv) > 2 else None
        code = run_mode(mode, root, run_dir, argv[3:])
    # The last line on stderr: the command ended on its own (see CONTROL), and how the run stands.
    trailer = {"exit": code}
    if run_dir and os.path.isfile(os.path.join(run_dir, "meta.json")):
        trailer["state"] = state_of(run_dir)[0]
        if os.path.isfile(os.path.join(run_dir, "gpus")):
            with open(os.path.join(run_dir, "gpus")) as handle:
                trailer["devices"] = handle.read().strip()  # what `auto` picked
        try:
            with open(os.path.join(run_dir, "meta.json")) as handle:
                trailer["snapshot"] = json.load(handle).get("snapshot")
        except (OSError, ValueError):
            pass
        try:
            with open(os.path.join(run_dir, "gpu.csv"), encoding="utf-8", errors="replace") as handle:
                trailer["gpu_csv"] = handle.read()  # the GPU samples travel back with the end of the run
        except OSError:
            pass
    control(sys.stderr, trailer)
    return code


def run_mode(mode, root, run_dir, args):
    if not os.path.isdir(root):
        return fail("REMOTE_DIR %s does not exist on this host; run `inv sync` first" % root)
    if mode == "status":
        return status(os.path.join(root, "runs"))
    if run_dir is None:
        return fail("launcher mode %s needs a run id" % mode)
    if mode in ("follow", "attach"):
        return follow(run_dir, int(args[0]), stop_run=mode == "follow")
    if mode == "cat":
        return show(run_dir, int(args[0]))
    if mode == "kill":
        return kill(run_dir, float(args[0]), int(args[1]) if len(args) > 1 else None)
    return fail("unknown launcher mode %r" % mode)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
