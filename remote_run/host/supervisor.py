"""Starting runs: the `start` mode checks, prepares each run's folder and snapshot, and forks the
supervisor, which outlives the SSH connection: it owns the runs' logs, waits for their GPUs in the
host's queue, records their pids and exit statuses, and runs a group's runs one after another
until one is stopped on request. Then `start` follows the first run, unless detached."""

import json
import os
import signal
import subprocess
import time

from . import exits, layout, notify, queue, runs, sampler, shellenv, snapshot
from .checks import run_checks
from .control import control, fail, say
from .files import remove, write_text
from .owner import not_ours


def start(payload):
    """The checks, then the run (or, with "members", a group of runs one after another) detached
    from SSH; then follow it unless detached."""
    import sys

    root = payload["root"]
    problem = not_ours(root)
    if problem:
        return fail(problem, exits.REFUSED)
    report, payload = run_checks(root, payload)  # with "early", the payload's rest comes on stdin meanwhile
    if report["ok"] and not os.path.isdir(root):
        report.update(ok=False, missing=True)
    control(sys.stdout, report)
    if not report["ok"]:
        return exits.PREFLIGHT
    members = payload.get("members") or [{key: payload.get(key)
                                          for key in ("run_dir", "argv", "files", "meta", "cwd", "nproc_at")}]
    wanted = queue_wanted(payload, report)
    group_dir = os.path.join(root, payload["group_dir"]) if payload.get("group_dir") else None
    code = _prepare_all(root, payload, group_dir, members)
    if code is not None:
        return code
    os.chdir(root)
    started, told = os.pipe()  # the supervisor says the first run's pid on it, or "failed WHY"
    ended, ends = os.pipe()  # ... and closes this one once the first run's exit status is written
    child = os.fork()
    if child == 0:
        os.close(started)
        os.close(ended)
        os.setsid()
        if os.fork():
            os._exit(0)
        supervise(root, group_dir, members, payload.get("variables", {}), payload.get("sample"), (told, ends), wanted,
                  payload.get("notify"), payload.get("python"))
    os.close(told)
    os.close(ends)
    os.waitpid(child, 0)
    with os.fdopen(started) as pipe:
        pid = pipe.read().strip()
    snapshot.make_spare(root, payload.get("rules"))  # the next run's, made while this one runs (not before it)
    first = os.path.join(root, members[0]["run_dir"])
    if pid == "waiting":
        say("run %s is queued: it starts when its GPUs are free (see `inv status`)"
            % os.path.basename(group_dir or first))
    elif pid.isdigit():
        say("run %s started (pid %s)" % (os.path.basename(group_dir or first), pid))
    elif payload.get("detach") or group_dir:  # else following it shows why, from its log
        say("run %s could not start: %s" % (os.path.basename(first),  # a group's first run: the rest go on
                                            pid.partition(" ")[2] or "see its log (`inv logs --run ID`)"))
    if payload.get("detach") or group_dir:
        os.close(ended)
        return exits.OK
    return runs.follow(first, 0, stop_run=True, grace=payload.get("grace", runs.GRACE_SECONDS), ended=ended)


def queue_wanted(payload, report):
    """What the run asks of the host's GPU queue (queue.acquire): the payload's "queue", with what
    the check made just before found, so that the queue does not ask nvidia-smi again."""
    wanted = payload.get("queue")
    if not wanted:
        return wanted
    if payload.get("hold"):
        wanted = dict(wanted, hold=True)  # an A/B: both sides on the same GPUs, from its first run to its last
    gpu = report.get("gpu")
    if gpu and gpu["state"] == "ok" and not gpu.get("busy"):
        wanted = dict(wanted, chosen=gpu["chosen"])  # found free
    elif gpu and not gpu.get("gpus"):
        wanted = dict(wanted, found_none=True)  # none at all (no nvidia-smi, no driver), and --cpu-ok went on
    return wanted


def _prepare_all(root, payload, group_dir, members):
    """Each run's folder and snapshot (and a group's record); None, or the exit status of a refusal."""
    try:
        if group_dir:
            os.makedirs(os.path.dirname(group_dir), exist_ok=True)
            os.mkdir(group_dir)
            write_text(os.path.join(group_dir, "group.json"), json.dumps(
                dict(payload.get("meta", {}), members=[os.path.basename(m["run_dir"]) for m in members],
                     started=time.time())))
        snapshot.release_ended(root)
        os.makedirs(os.path.join(root, layout.DATA), mode=0o700, exist_ok=True)
        for member in members:
            prepare(root, member, payload.get("rules"), queued=bool(group_dir))
    except snapshot.SnapshotError as exc:
        return fail(str(exc), exits.USAGE)
    except FileExistsError as exc:
        # Run ids are made on the user's machine from the second they start; another checkout that
        # shares (took over) this REMOTE_DIR can have started one in the same second.
        return fail("%s already exists in %s: a run of another checkout started in the same second; "
                    "run the command again" % (os.path.basename(exc.filename or "the run"), root), exits.ENVIRONMENT)
    except OSError as exc:
        return fail("cannot prepare the run in %s: %s" % (root, exc.strerror or exc), exits.ENVIRONMENT)
    return None


def prepare(root, member, rules, queued=False):
    """A run's folder: its snapshot of the code (work/, with the files it brings), meta.json and an
    empty run.log (and, for a run of a group that has to wait its turn, the `queued` marker)."""
    run_dir = os.path.join(root, member["run_dir"])
    os.makedirs(os.path.dirname(run_dir), mode=0o700, exist_ok=True)
    os.mkdir(run_dir)
    taken = snapshot.take(root, run_dir, rules, member.get("revision"))
    snapshot.write_files(os.path.join(run_dir, snapshot.WORK), member.get("files") or {})
    meta = dict(member.get("meta") or {}, argv=member["argv"], started=time.time(), snapshot=taken)
    write_text(os.path.join(run_dir, "meta.json"), json.dumps(meta, indent=1))
    open(os.path.join(run_dir, "run.log"), "ab").close()
    if queued:
        write_text(os.path.join(run_dir, runs.QUEUED_MARKER), "")


def supervise(root, group_dir, members, env, sample, pipes, wanted=None, webhook=None, python=None):
    """The detached parent of the runs. ``pipes``: (told, ends), see start()."""
    told, ends = pipes
    if wanted and wanted.get("found_none"):
        sample = None  # the check found no GPU (nor an nvidia-smi that answers) to sample
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    environment = dict(os.environ)
    if env.get("PYTHONPATH") and environment.get("PYTHONPATH"):
        env = dict(env, PYTHONPATH=env["PYTHONPATH"] + os.pathsep + environment["PYTHONPATH"])
    environment.update(env)
    environment["PYTHONUNBUFFERED"] = "1"
    environment["REMOTE_RUN_DATA"] = os.path.join(root, layout.DATA)  # the dataset cache every run shares
    environment = shellenv.activated(environment, python)
    if group_dir:
        write_text(os.path.join(group_dir, "pid"), "%d\n" % os.getpid())
    code = 0
    held = None  # (entry, devices) that --against holds through all its runs
    for member in members:
        run_dir = os.path.join(root, member["run_dir"])
        if group_dir and os.path.exists(os.path.join(group_dir, "stopped")):
            write_text(os.path.join(run_dir, runs.SKIPPED_MARKER), "")  # stopped before its turn
            continue
        if group_dir:
            os.unlink(os.path.join(run_dir, runs.QUEUED_MARKER))
        entry, devices = held or (None, None)
        if held is None and wanted and wanted.get("want"):
            if wanted.get("wait") and told is not None:
                write_text(os.path.join(run_dir, runs.WAITING_MARKER),
                           json.dumps({"pid": os.getpid(), "position": "?"}))
                os.write(told, b"waiting\n")  # `start` returns; the run's log tells what it waits for
                os.close(told)
                told = None
            first = dict(wanted, want=dict(wanted["want"], chosen=wanted.get("chosen"),
                                           **({"found_none": True} if wanted.get("found_none") else {})))
            entry, devices = wait_turn(run_dir, first if member is members[0] else wanted)
            if entry is None:
                code = exits.PREFLIGHT
                notify.run_ended(webhook, run_dir, code)  # it timed out waiting
                continue
            if wanted.get("hold"):
                held = (entry, devices)
        run_env = dict(environment, CUDA_VISIBLE_DEVICES=devices) if devices is not None else environment
        if devices is not None:
            write_text(os.path.join(run_dir, "gpus"), devices + "\n")
        try:
            given = len(entry.data.get("gpus") or []) if entry is not None else 0  # the GPUs it holds
            argv = shellenv.with_nproc(member["argv"], member.get("nproc_at"), given)
            code = run_one(run_dir, argv, run_env, member.get("cwd") or "",
                           dict(sample or {}, devices=devices) if devices else sample, told, ends)
        finally:
            if entry is not None and held is None:
                entry.remove()  # before the release: the GPU is free once the run has ended
            snapshot.release_behind(run_dir)
        notify.run_ended(webhook, run_dir, code)
        told = ends = None  # only the first run's pid and end are awaited
    if held is not None:
        held[0].remove()
    if group_dir:
        write_text(os.path.join(group_dir, "exit_code"), "%d\n" % code)
    os._exit(0)


def wait_turn(run_dir, wanted):
    """queue.acquire() with the run's log open; SIGTERM (`inv kill`, Ctrl+C) while waiting leaves
    the queue and ends the run as killed. (entry, devices), or (None, None) when it gave up."""
    log = os.open(os.path.join(run_dir, "run.log"), os.O_WRONLY | os.O_APPEND)
    holder = {}

    def on_term(signum, frame):
        if holder.get("entry") is not None:
            holder["entry"].remove()
        remove(os.path.join(run_dir, runs.WAITING_MARKER))
        write_text(os.path.join(run_dir, runs.KILLED_MARKER), "%f\n" % time.time())
        os.write(log, b"remote-run: stopped while waiting for a GPU\n")
        write_text(os.path.join(run_dir, "exit_code"), "%d\n" % exits.INTERRUPTED)
        snapshot.release(run_dir)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    try:
        entry, devices = queue.acquire(run_dir, wanted["want"], wanted.get("wait"), wanted.get("timeout"), log, holder)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    remove(os.path.join(run_dir, runs.WAITING_MARKER))
    if entry is None:
        write_text(os.path.join(run_dir, runs.TIMEOUT_MARKER), "")
        write_text(os.path.join(run_dir, "exit_code"), "%d\n" % exits.PREFLIGHT)
        snapshot.release(run_dir)
    os.close(log)
    return entry, devices


def _fill(pending, number, final):
    """Write ``number`` into the room taken for it (``pending``, 16 bytes) and give it its name."""
    with open(pending, "r+") as handle:
        handle.write(("%d\n" % number).ljust(16))
    os.replace(pending, final)


def run_one(run_dir, argv, environment, cwd, sample, told, ends=None):
    """Run ``argv`` with its output in run.log, its pid in pid, the GPU sampled beside it, and its
    exit status in exit_code (then ``ends`` is closed); returns that status."""
    log = os.open(os.path.join(run_dir, "run.log"), os.O_WRONLY | os.O_APPEND)
    work = os.path.join(run_dir, snapshot.WORK)
    # src/ too: a project installed editable into .venv points at REMOTE_DIR, which a sync changes
    src = [os.path.join(work, "src")] if os.path.isdir(os.path.join(work, "src")) else []
    environment = dict(environment, PYTHONPATH=os.pathsep.join(
        [os.path.join(work, ".remote-run", "site"), work] + src + [p for p in [environment.get("PYTHONPATH")] if p]))
    # Room for the pid and the exit status is taken before the run starts: it may fill the disk at once.
    # Until the run's pid is in, the room names this supervisor: a stop then waits for the run (runs.terminate).
    pending, pid_pending = os.path.join(run_dir, "exit_code.pending"), os.path.join(run_dir, runs.PID_PENDING)
    for path, held in ((pending, ""), (pid_pending, "%d\n" % os.getpid())):
        with open(path, "w") as handle:
            handle.write(held.ljust(16))
    try:
        proc = shellenv.start(subprocess.Popen, argv, env=environment, cwd=os.path.join(work, cwd),
                              stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    except OSError as exc:
        why = "cannot start %s: %s" % (argv[0], exc.strerror or exc)
        os.write(log, ("remote-run: %s\n" % why).encode())
        code = shellenv.status_of(exc, argv[0], os.path.join(work, cwd))
        remove(pid_pending)
        _fill(pending, code, os.path.join(run_dir, "exit_code"))
        if told is not None:
            os.write(told, ("failed %s\n" % why).encode())
        for fd in (told, ends):
            if fd is not None:
                os.close(fd)
        return code
    _fill(pid_pending, proc.pid, os.path.join(run_dir, "pid"))
    if told is not None:
        os.write(told, b"%d\n" % proc.pid)
        os.close(told)
    sampling = sampler.start(run_dir, sample)
    code = proc.wait()
    code = 128 - code if code < 0 else code
    sampler.stop(sampling)
    _fill(pending, code, os.path.join(run_dir, "exit_code"))
    if ends is not None:
        os.close(ends)
    os.close(log)
    if code and runs.disk_full(run_dir):
        open(os.path.join(run_dir, runs.DISK_FULL_MARKER), "w").close()  # releasing the snapshot frees a little
    return code
