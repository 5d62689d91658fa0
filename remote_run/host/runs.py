"""A run's folder on the host, REMOTE_DIR/runs/<id>/, and the readers of it: its state, the
listing of every run (`inv status`), showing and following its log, and stopping it.

The folder holds run.log (all output), meta.json (what ran; variable names, never values), pid
(the program's process group, written as it starts), exit_code (written when it ends; the times
of these two are the run's own start and end: a run of a group, or one that waited for GPUs,
starts well after meta.json is written), and markers: killed (a stop was
asked for), waiting (it waits for GPUs; its supervisor's pid and place in the queue), queued (a
run of a group waiting its turn), timeout (it gave up waiting), skipped (its group was stopped
before its turn). A group's folder holds group.json, its supervisor's pid and its exit_code.
"""

import json
import os
import select
import signal
import sys
import time

from . import exits, states
from .control import fail, say
from .files import read_int, read_json, read_text, write_text
from .queue import alive

GRACE_SECONDS = 3.0
WAITING_MARKER = "waiting"
QUEUED_MARKER = "queued"
KILLED_MARKER = "killed"
TIMEOUT_MARKER = "timeout"
SKIPPED_MARKER = "skipped"
DISK_FULL_MARKER = "disk_full"
PID_PENDING = "pid.pending"  # the supervisor's pid while it starts the run, then the run's (renamed to pid)


def has(run_dir, marker):
    return os.path.exists(os.path.join(run_dir, marker))


def waiting_of(run_dir):
    """The `waiting` marker of a run in the GPU queue ({"pid": its supervisor, "position"}), or None."""
    found = read_json(os.path.join(run_dir, WAITING_MARKER))
    return found if isinstance(found, dict) else None


def group_of(run_dir):
    """The folder of the group a run belongs to ("" for none)."""
    group = (read_json(os.path.join(run_dir, "meta.json")) or {}).get("group")
    return os.path.join(os.path.dirname(run_dir), group) if group else ""


def facts(run_dir):
    """What the run's folder and processes say, as states.decide() takes it."""
    code = read_int(os.path.join(run_dir, "exit_code"))
    found = {"exit_code": code, "stopped": has(run_dir, KILLED_MARKER), "timed_out": has(run_dir, TIMEOUT_MARKER),
             "skipped": has(run_dir, SKIPPED_MARKER)}
    if code is None:
        waiting = waiting_of(run_dir)
        if waiting is not None:
            found["waiting"] = alive(waiting.get("pid"))
        elif has(run_dir, QUEUED_MARKER):
            found["waiting"] = alive(read_int(os.path.join(group_of(run_dir), "pid")))
        else:
            pid = read_int(os.path.join(run_dir, "pid"))
            found["alive"] = alive(pid if pid else read_int(os.path.join(run_dir, PID_PENDING)))
    return found


def state_of(run_dir):
    """(state, exit code) of a run."""
    known = facts(run_dir)
    return states.decide(**known), known["exit_code"]


def queue_place(run_dir):
    """Where a queued run stands: {"for": "gpu", "position": N, "busy", "ahead"} in the GPU queue
    (what holds its GPUs, queue.holders(); the runs before it), or {"for": "turn"} in its group;
    None when it does not wait."""
    waiting = waiting_of(run_dir)
    if waiting is not None:
        return {"for": "gpu", "position": waiting.get("position", "?"), "busy": waiting.get("busy", []),
                "ahead": waiting.get("ahead", [])}
    if has(run_dir, QUEUED_MARKER):
        return {"for": "turn"}
    return None


def group_state(group_dir, members):
    """A group's state from its runs'."""
    return states.group([state_of(os.path.join(os.path.dirname(group_dir), m))[0] for m in members])


def last_result(path):
    """The last RESULT_ line of a log (its last 64 KiB), or None."""
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


def listing(runs):
    """Every run under ``runs`` (REMOTE_DIR/runs) and every group, as `inv status` shows them."""
    rows = []
    if not os.path.isdir(runs):
        return rows
    for name in sorted(os.listdir(runs)):
        run_dir = os.path.join(runs, name)
        if not os.path.isdir(run_dir):
            continue
        if os.path.isfile(os.path.join(run_dir, "group.json")):
            group = read_json(os.path.join(run_dir, "group.json"))
            if not isinstance(group, dict):
                continue
            rows.append({"id": name, "task": group.get("task", "?"), "started": group.get("started"), "group": True,
                         **what_ran(group), **({"against": group["against"]} if group.get("against") else {}),
                         "members": group.get("members", []), "state": group_state(run_dir, group.get("members", [])),
                         "exit_code": read_int(os.path.join(run_dir, "exit_code")), "result": None, "log_bytes": 0})
            continue
        meta = read_json(os.path.join(run_dir, "meta.json"))
        meta = meta if isinstance(meta, dict) else {}
        state, code = state_of(run_dir)
        log = os.path.join(run_dir, "run.log")
        row = {"id": name, "task": meta.get("task", "?"), "started": written(run_dir, "pid") or meta.get("started"),
               "wall_s": wall(run_dir), **what_ran(meta), "member_of": meta.get("group"), "state": state,
               "exit_code": code, "result": last_result(log),
               "log_bytes": os.path.getsize(log) if os.path.exists(log) else 0}
        if state == states.QUEUED:
            row["queue"] = queue_place(run_dir)
        rows.append(row)
    return rows


def what_ran(meta):
    """The script or module of a `run` task, from its meta.json: `inv status` names it."""
    options = meta.get("options")
    options = options if isinstance(options, dict) else {}
    return {key: options[key] for key in ("script", "module") if isinstance(options.get(key), str)}


def written(run_dir, name):
    """When the run's file ``name`` was last written, or None."""
    try:
        return os.stat(os.path.join(run_dir, name)).st_mtime
    except OSError:
        return None


def wall(run_dir):
    """Seconds from the program's start (its pid file) to its end (its exit status), once both are
    written; else None. Their times, not new files: a run may have filled the disk by its end."""
    began, ended = written(run_dir, "pid"), written(run_dir, "exit_code")
    return round(ended - began, 3) if began is not None and ended is not None else None


def status(runs):
    sys.stdout.write(json.dumps(listing(runs)) + "\n")
    return exits.OK


def disk_full(path):
    try:
        return os.statvfs(path).f_bavail == 0
    except OSError:
        return False


def follow(run_dir, offset, stop_run, grace=GRACE_SECONDS, ended=None):
    """Copy the run's log to stdout from ``offset`` until it ends; returns its exit status.
    ``ended``: a pipe the supervisor closes once the exit status is written (start() has one)."""
    if not os.path.isdir(run_dir):
        return fail("no run %s in %s" % (os.path.basename(run_dir), os.path.dirname(os.path.dirname(run_dir))),
                    exits.USAGE)
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
                if code and (disk_full(run_dir) or has(run_dir, DISK_FULL_MARKER)):
                    say("the disk is full on this host (%s has no free space left); "
                        "free space or choose another REMOTE_DIR" % os.path.dirname(os.path.dirname(run_dir)))
                return code
            if has(run_dir, SKIPPED_MARKER):
                return exits.INTERRUPTED  # its group was stopped before its turn
            known = facts(run_dir)
            if not known.get("waiting") and not known.get("alive"):
                lost_since = lost_since or time.time()
                if time.time() - lost_since > 5:
                    say("run %s ended without recording an exit status (was its supervisor killed?)"
                        % os.path.basename(run_dir))
                    return exits.VANISHED
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
        return fail("no run %s in %s" % (os.path.basename(run_dir), os.path.dirname(os.path.dirname(run_dir))),
                    exits.USAGE)
    with open(os.path.join(run_dir, "run.log"), "rb") as log:
        log.seek(offset)
        sys.stdout.buffer.write(log.read())
    sys.stdout.buffer.flush()
    return exits.OK


def terminate(run_dir, grace):
    """SIGINT, then SIGTERM, then SIGKILL to the run's process group, each after ``grace`` seconds.
    A run its supervisor is starting (its output may already flow) is waited for until its pid is in."""
    pid = read_int(os.path.join(run_dir, "pid"))
    starting = read_int(os.path.join(run_dir, PID_PENDING))
    if not pid and not alive(starting):
        return False
    write_text(os.path.join(run_dir, KILLED_MARKER), "%f\n" % time.time())
    deadline = time.time() + 30
    while not pid and alive(starting) and time.time() < deadline:
        time.sleep(0.01)
        pid = read_int(os.path.join(run_dir, "pid"))
    if not pid:
        return True  # its supervisor failed to start it, or died: it records the exit status, or nobody will
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


def kill(run_dir, grace, offset):
    """Stop a run; with ``offset``, then print its log from there and return its exit status.
    Stopping a group stops the run going on and the ones waiting their turn."""
    if not os.path.isdir(run_dir):
        return fail("no run %s in %s" % (os.path.basename(run_dir), os.path.dirname(os.path.dirname(run_dir))),
                    exits.USAGE)
    name = os.path.basename(run_dir)
    group = read_json(os.path.join(run_dir, "group.json"))
    if isinstance(group, dict):
        members = group.get("members", [])
        if group_state(run_dir, members) not in states.LIVE:
            return fail("group %s is not running" % name, exits.NOT_RUNNING)
        write_text(os.path.join(run_dir, "stopped"), "%f\n" % time.time())
        for member in members:
            member_dir = os.path.join(os.path.dirname(run_dir), member)
            if state_of(member_dir)[0] in (states.RUNNING, states.STOPPING):
                terminate(member_dir, grace)
        say("group %s stopped" % name)
        return exits.OK
    state, _ = state_of(run_dir)
    waiting = waiting_of(run_dir)
    if state == states.QUEUED and waiting is not None:  # its supervisor leaves the queue and records it as killed
        try:
            os.kill(waiting["pid"], signal.SIGTERM)
        except (OSError, KeyError, TypeError):
            pass
        for _ in range(100):
            if read_int(os.path.join(run_dir, "exit_code")) is not None:
                break
            time.sleep(0.05)
        say("run %s left the GPU queue" % name)
        return exits.OK if offset is None else follow(run_dir, offset, stop_run=False)
    if state not in (states.RUNNING, states.STOPPING):
        return fail("run %s is not running (%s)" % (name, state), exits.NOT_RUNNING)
    terminate(run_dir, grace)
    say("run %s stopped" % name)
    if offset is None:
        return exits.OK
    return follow(run_dir, offset, stop_run=False)


def trailer(run_dir, code):
    """The last line of a run command (see control): its exit status and, for a run, its state,
    the GPUs `auto` picked, the snapshot it ran from and its GPU samples."""
    found = {"exit": code}
    if run_dir and os.path.isfile(os.path.join(run_dir, "meta.json")):
        found["state"] = state_of(run_dir)[0]
        found["wall_s"] = wall(run_dir)
        devices = read_text(os.path.join(run_dir, "gpus"))
        if devices is not None:
            found["devices"] = devices  # what `auto` picked
        meta = read_json(os.path.join(run_dir, "meta.json"))
        if isinstance(meta, dict):
            found["snapshot"] = meta.get("snapshot")
        try:
            with open(os.path.join(run_dir, "gpu.csv"), encoding="utf-8", errors="replace") as handle:
                found["gpu_csv"] = handle.read()  # the GPU samples travel back with the end of the run
        except OSError:
            pass
    return found


def meta_age(run_dir):
    """Seconds since the run's meta.json was written (0 when there is none)."""
    try:
        return time.time() - os.stat(os.path.join(run_dir, "meta.json")).st_mtime
    except OSError:
        return 0
