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
    """What the GPUs say, and whether a run may start under ``spec`` (devices, require, allow_busy)."""
    state, gpus, text = gpu_answer(procs, spec["limit"])
    report = {"state": state, "gpus": gpus, "chosen": [], "busy": [], "text": text}
    if state != "ok":
        report["go"] = not spec["require"]
        return report
    if not gpus:
        report.update(state="none", go=not spec["require"])
        return report
    chosen = visible(gpus, spec["devices"])
    report["chosen"] = [g["index"] for g in chosen]
    if spec["devices"] and not chosen:
        report.update(state="nomatch", go=False)
        return report
    report["busy"] = [g["index"] for g in chosen if g["processes"]]
    if report["busy"]:
        report.update(state="busy", go=spec["allow_busy"])
        return report
    report["go"] = True
    return report


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
    members = payload.get("members") or [{key: payload.get(key) for key in ("run_dir", "argv", "files", "meta")}]
    group_dir = os.path.join(root, payload["group_dir"]) if payload.get("group_dir") else None
    try:
        if group_dir:
            os.makedirs(os.path.dirname(group_dir), exist_ok=True)
            os.mkdir(group_dir)
            write_text(os.path.join(group_dir, "group.json"), json.dumps(
                dict(payload.get("meta", {}), members=[os.path.basename(m["run_dir"]) for m in members], started=time.time())))
        for member in members:
            prepare_run(root, member, queued=bool(group_dir))
    except OSError as exc:
        return fail("cannot prepare the run in %s: %s" % (root, exc.strerror or exc))
    os.chdir(root)
    started, told = os.pipe()  # the supervisor says the first run's pid on it (or closes it when it cannot start)
    child = os.fork()
    if child == 0:
        os.close(started)
        os.setsid()
        if os.fork():
            os._exit(0)
        supervise(root, group_dir, members, payload.get("variables", {}), payload.get("sample"), told)
    os.close(told)
    os.waitpid(child, 0)
    with os.fdopen(started) as pipe:
        pid = pipe.read().strip()
    first = os.path.join(root, members[0]["run_dir"])
    say("run %s started (pid %s)" % (os.path.basename(group_dir or first), pid or None))
    if payload.get("detach") or group_dir:
        return exits.OK
    return follow(first, 0, stop_run=True, grace=payload.get("grace", GRACE_SECONDS))


def prepare_run(root, member, queued=False):
    """A run's folder: meta.json and an empty run.log (and, for a run of a group that has to wait
    its turn, the `queued` marker; its files are written when it starts)."""
    run_dir = os.path.join(root, member["run_dir"])
    os.makedirs(os.path.dirname(run_dir), exist_ok=True)
    os.mkdir(run_dir)
    meta = dict(member.get("meta") or {}, argv=member["argv"], started=time.time())
    write_text(os.path.join(run_dir, "meta.json"), json.dumps(meta, indent=1))
    open(os.path.join(run_dir, "run.log"), "ab").close()
    if queued:
        write_text(os.path.join(run_dir, "queued"), "")
    else:
        render(root, member.get("files") or {})


def render(root, files):
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
    if made:
        known = tree.read_rendered(root)
        names = known + [rel for rel in made if rel not in known]
        write_text(os.path.join(root, tree.RENDERED), "\0".join(names))


def supervise(root, group_dir, members, env, sample, told):
    """The detached parent of the runs: owns their logs, records their pids and exit statuses; a
    group's runs go one after another until one is stopped on request."""
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
            render(root, member.get("files") or {})
            os.unlink(os.path.join(run_dir, "queued"))
        code = run_one(run_dir, member["argv"], environment, sample, told)
        told = None  # only the first run's pid is awaited
    if group_dir:
        write_text(os.path.join(group_dir, "exit_code"), "%d\n" % code)
    os._exit(0)


def run_one(run_dir, argv, environment, sample, told):
    """Run ``argv`` with its output in run.log, its pid in pid, the GPU sampled beside it, and its
    exit status in exit_code; returns that status."""
    log = os.open(os.path.join(run_dir, "run.log"), os.O_WRONLY | os.O_APPEND)
    try:
        proc = subprocess.Popen(argv, env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    except OSError as exc:
        os.write(log, ("remote-run: cannot start %s: %s\n" % (argv[0], exc.strerror or exc)).encode())
        write_text(os.path.join(run_dir, "exit_code"), "%d\n" % exits.MISSING)
        if told is not None:
            os.close(told)
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
    os.close(log)
    return code


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


def follow(run_dir, offset, stop_run, grace=GRACE_SECONDS):
    """Copy the run's log to stdout from ``offset`` until it ends; returns its exit status."""
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
                if code and disk_full(run_dir):
                    say("the disk is full on this host (%s has no free space left); free space or choose another REMOTE_DIR"
                        % os.path.dirname(os.path.dirname(run_dir)))
                return code
            if os.path.exists(os.path.join(run_dir, "skipped")):
                return exits.INTERRUPTED  # its group was stopped before its turn
            waiting = os.path.exists(os.path.join(run_dir, "queued")) and alive(read_int(os.path.join(group_of(run_dir), "pid")))
            if not waiting and not alive(read_int(os.path.join(run_dir, "pid"))):
                lost_since = lost_since or time.time()
                if time.time() - lost_since > 5:
                    return fail("run %s ended without recording an exit status (was its supervisor killed?)"
                                % os.path.basename(run_dir), exits.VANISHED)
            # Short naps while output flows or the run just started (a quick run ends sooner),
            # backing off to a tenth of a second for a long quiet one.
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
    if os.path.exists(os.path.join(run_dir, "queued")):
        return ("queued" if alive(read_int(os.path.join(group_of(run_dir), "pid"))) else "lost"), None
    if os.path.exists(os.path.join(run_dir, "killed")):
        return ("killed" if code is not None or not alive(read_int(os.path.join(run_dir, "pid"))) else "stopping"), code
    if code is not None:
        return ("finished" if code == 0 else "failed"), code
    return ("running" if alive(read_int(os.path.join(run_dir, "pid"))) else "lost"), None


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
