"""Runs on the target (sent as `python -c`): starts runs detached from SSH, follows, lists, kills.

Standard library only, Python 3.6+. A run lives in REMOTE_DIR/runs/<run-id>/: run.log (all
output), meta.json (what ran; variable names, never values), pid (the program's process group),
exit_code (written when it ends) and killed (when it was stopped on request).
"""

import json
import os
import signal
import subprocess
import sys
import time

GRACE_SECONDS = float(os.environ.get("REMOTE_RUN_KILL_GRACE", "3"))


def fail(message, code=2):
    sys.stderr.write("remote-run: " + message + "\n")
    sys.stderr.flush()
    return code


def write_atomic(path, text):
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    temp = "%s.tmp%d" % (path, os.getpid())
    with open(temp, "w") as handle:
        handle.write(text)
    os.replace(temp, path)


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


def start(payload):
    root = payload["root"]
    try:
        os.chdir(root)
    except OSError:
        return fail("REMOTE_DIR %s does not exist on this host; run `inv sync` first" % root)
    try:
        for rel, text in payload.get("files", {}).items():
            write_atomic(rel, text)
        run_dir = payload["run_dir"]
        os.makedirs(run_dir)
        meta = dict(payload.get("meta", {}), argv=payload["argv"], started=time.time())
        write_atomic(os.path.join(run_dir, "meta.json"), json.dumps(meta, indent=1))
        open(os.path.join(run_dir, "run.log"), "ab").close()
    except OSError as exc:
        return fail("cannot prepare the run in %s: %s" % (root, exc.strerror or exc))
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork():
            os._exit(0)
        supervise(run_dir, payload["argv"], payload.get("env", {}))
    os.waitpid(child, 0)
    pid_path = os.path.join(run_dir, "pid")
    for _ in range(200):
        if os.path.exists(pid_path) or os.path.exists(os.path.join(run_dir, "exit_code")):
            break
        time.sleep(0.01)
    sys.stderr.write("remote-run: run %s started (pid %s)\n" % (os.path.basename(run_dir), read_int(pid_path)))
    sys.stderr.flush()
    if payload.get("detach"):
        return 0
    return follow(run_dir, 0, stop_run=True)


def supervise(run_dir, argv, env):
    """The detached parent of the run: owns its log, records its pid and exit status."""
    log = os.open(os.path.join(run_dir, "run.log"), os.O_WRONLY | os.O_APPEND)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    environment = dict(os.environ)
    if env.get("PYTHONPATH") and environment.get("PYTHONPATH"):
        env = dict(env, PYTHONPATH=env["PYTHONPATH"] + os.pathsep + environment["PYTHONPATH"])
    environment.update(env)
    environment["PYTHONUNBUFFERED"] = "1"
    try:
        proc = subprocess.Popen(argv, env=environment, stdin=null, stdout=log, stderr=log, start_new_session=True)
    except OSError as exc:
        os.write(log, ("remote-run: cannot start %s: %s\n" % (argv[0], exc.strerror or exc)).encode())
        write_atomic(os.path.join(run_dir, "exit_code"), "127\n")
        os._exit(0)
    write_atomic(os.path.join(run_dir, "pid"), "%d\n" % proc.pid)
    # Room for the exit status is taken now: the run may fill the disk before it ends.
    pending = os.path.join(run_dir, "exit_code.pending")
    with open(pending, "w") as handle:
        handle.write(" " * 16)
    code = proc.wait()
    code = 128 - code if code < 0 else code
    with open(pending, "r+") as handle:
        handle.write(("%d\n" % code).ljust(16))
    os.replace(pending, os.path.join(run_dir, "exit_code"))
    os._exit(0)


def follow(run_dir, offset, stop_run):
    """Copy the run's log to stdout from ``offset`` until it ends; exit with its status."""
    if not os.path.isdir(run_dir):
        return fail("no run %s in %s" % (os.path.basename(run_dir), os.getcwd()))
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout

    def on_interrupt(signum, frame):
        if stop_run:
            sys.stderr.write("\nremote-run: stopping run %s (Ctrl+C)\n" % os.path.basename(run_dir))
            sys.stderr.flush()
            terminate(run_dir)
        else:
            sys.stderr.write("\nremote-run: stopped following; the run goes on\n")
            sys.stderr.flush()
            os._exit(130)

    signal.signal(signal.SIGINT, on_interrupt)
    exit_path = os.path.join(run_dir, "exit_code")
    lost_since = None
    with open(os.path.join(run_dir, "run.log"), "rb") as log:
        log.seek(offset)
        while True:
            chunk = log.read(65536)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            code = read_int(exit_path)
            if code is not None:
                rest = log.read()
                if rest:
                    out.write(rest)
                    out.flush()
                if code and disk_full("."):
                    fail("the disk is full on this host (%s has no free space left); free space or choose another REMOTE_DIR" % os.getcwd())
                return code
            if not alive(read_int(os.path.join(run_dir, "pid"))):
                lost_since = lost_since or time.time()
                if time.time() - lost_since > 5:
                    return fail("run %s ended without recording an exit status (was its supervisor killed?)" % os.path.basename(run_dir), 255)
            time.sleep(0.05)


def show(run_dir, offset):
    if not os.path.isdir(run_dir):
        return fail("no run %s in %s" % (os.path.basename(run_dir), os.getcwd()))
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout
    with open(os.path.join(run_dir, "run.log"), "rb") as log:
        log.seek(offset)
        out.write(log.read())
    out.flush()
    return 0


def disk_full(path):
    try:
        return os.statvfs(path).f_bavail == 0
    except OSError:
        return False


def terminate(run_dir):
    """SIGINT, then SIGTERM, then SIGKILL to the run's process group, each after a grace period."""
    pid = read_int(os.path.join(run_dir, "pid"))
    if not pid:
        return False
    write_atomic(os.path.join(run_dir, "killed"), "%f\n" % time.time())
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.time() + GRACE_SECONDS
        while time.time() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
    return True


def state_of(run_dir):
    code = read_int(os.path.join(run_dir, "exit_code"))
    if os.path.exists(os.path.join(run_dir, "killed")):
        return "killed" if code is not None or not alive(read_int(os.path.join(run_dir, "pid"))) else "stopping", code
    if code is not None:
        return ("finished" if code == 0 else "failed"), code
    return ("running" if alive(read_int(os.path.join(run_dir, "pid"))) else "lost"), None


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
            state, code = state_of(run_dir)
            log = os.path.join(run_dir, "run.log")
            rows.append({
                "id": name, "task": meta.get("task", "?"), "started": meta.get("started"),
                "state": state, "exit_code": code, "result": last_result(log),
                "log_bytes": os.path.getsize(log) if os.path.exists(log) else 0,
            })
    sys.stdout.write(json.dumps(rows) + "\n")
    return 0


def kill(run_dir):
    if not os.path.isdir(run_dir):
        return fail("no run %s in %s" % (os.path.basename(run_dir), os.getcwd()))
    state, _ = state_of(run_dir)
    if state != "running":
        return fail("run %s is not running (%s)" % (os.path.basename(run_dir), state), 3)
    terminate(run_dir)
    sys.stdout.write("remote-run: run %s stopped\n" % os.path.basename(run_dir))
    return 0


def main(argv):
    mode = argv[0] if argv else ""
    if mode == "start":
        return start(json.loads(sys.stdin.read()))
    try:
        os.chdir(argv[1])
    except (IndexError, OSError):
        return fail("REMOTE_DIR %s does not exist on this host; run `inv sync` first" % argv[1:2])
    if mode in ("follow", "attach"):
        return follow(argv[2], int(argv[3]), stop_run=mode == "follow")
    if mode == "cat":
        return show(argv[2], int(argv[3]))
    if mode == "status":
        return status("runs")
    if mode == "kill":
        return kill(argv[2])
    return fail("unknown launcher mode %r" % mode)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
