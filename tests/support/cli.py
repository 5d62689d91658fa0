"""Driving the real CLI as a user does (`inv` or `remote-run`), against the loopback sshd, and
looking at what it left on the host: runs, processes, files."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The host's own interpreter: runs need no venv, so bootstrap only looks at it (fast tests).
HOST_PYTHON = "/usr/bin/python3"
SETTINGS = {"REMOTE_HOST": "l1", "TORCH_PACKAGES": "", "TRAIN_IMPL": "workspace"}


def argv(*args: str, program: str = "inv") -> list[str]:
    if program == "inv":
        return [sys.executable, "-m", "invoke", "--search-root", str(REPO), *args]
    return [sys.executable, "-m", "remote_run", *args]


def environment(sshd, venv: bool = True, **env) -> dict:
    """The CLI's environment: the harness's (fake home, ssh wrapper) and the settings (None = unset).

    ``venv=False`` runs with the host's own Python (REMOTE_PYTHON, unless given): no venv to build.
    """
    defaults = SETTINGS if venv else {**SETTINGS, "REMOTE_PYTHON": HOST_PYTHON}
    return sshd.env(**{**defaults, **env})


def cli(sshd, workspace: Path, *args: str, program: str = "inv", timeout: float = 180, venv: bool = True,
        **env) -> subprocess.CompletedProcess:
    """Run `inv ARGS` (or `remote-run ARGS`) in ``workspace`` against the loopback sshd."""
    return subprocess.run(argv(*args, program=program), cwd=workspace, env=environment(sshd, venv, **env),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The failure a user sees: non-zero exit, no traceback, a `remote-run: ...` line last on stderr."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = remote_run_lines(result.stderr)
    assert lines, result.stderr
    return lines[-1]


def remote_run_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("remote-run: ")]


def no_traceback(done) -> None:
    text = (done.stdout or "") + (done.stderr or "")
    assert "Traceback" not in text, text[-3000:]


def record_of(workspace: Path, run_id: str) -> dict:
    """The result.json of run ``run_id`` in the workspace's RUNS_DIR."""
    return json.loads((workspace / "var" / "runs" / run_id / "result.json").read_text())


def latest_record(workspace: Path, task: str) -> Path:
    found = [p for p in (workspace / "var" / "runs").glob(f"*_{task}*") if (p / "result.json").exists()]
    return max(found, key=lambda p: (p / "result.json").stat().st_mtime)


def remote_exists(sshd, path: str) -> bool:
    return sshd.as_user(["test", "-e", path]).returncode == 0


def remote_read(sshd, path: str) -> str:
    done = sshd.as_user(["cat", path])
    assert done.returncode == 0, done.stderr
    return done.stdout


def no_secret_files(sshd, root: str, secret: str) -> bool:
    return sshd.as_user(["grep", "-rqs", "--", secret, root]).returncode != 0


class Background:
    """The real CLI started in the background, in its own session (like a terminal's foreground job)."""

    def __init__(self, sshd, workspace: Path, logdir: Path, *args: str, venv: bool = True, **env):
        logdir.mkdir(parents=True, exist_ok=True)
        stamp = f"{time.monotonic_ns()}"
        self.out_path = logdir / f"bg-{stamp}.out"
        self.err_path = logdir / f"bg-{stamp}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv(*args), cwd=workspace, env=environment(sshd, venv, **env),
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def ctrl_c(self) -> None:
        """What a terminal does on Ctrl+C: SIGINT to the foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if still running after ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def run_dirs(remote: str) -> list[Path]:
    runs = Path(remote) / ".remote-run" / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def wait_for_started_run(remote: str, timeout: float = 30, known=(), bg: Background | None = None) -> Path:
    """The first run directory (not in ``known``) whose pid file exists."""
    def found():
        if bg is not None and bg.proc.poll() is not None:
            raise AssertionError(f"the CLI exited ({bg.proc.returncode}) before a run started:\n"
                                 f"{bg.stdout}\n{bg.stderr}")
        for run in run_dirs(remote):
            if run.name not in known and (run / "pid").exists():
                return run
        return None

    return wait_for(found, timeout, f"a run with a pid file under {remote}/runs")


def log_has(run: Path, text: str) -> bool:
    try:
        return text in (run / "run.log").read_text(errors="replace")
    except OSError:
        return False


def read_pid(run: Path) -> int:
    return int((run / "pid").read_text().strip())


def processes() -> list[tuple[int, int, str, str, str]]:
    """Every process on this machine: (pid, pgid, stat, user, args), from ``ps -eo``."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,pgid=,stat=,user=,args="],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 4)
        if len(parts) >= 4:
            rows.append((int(parts[0]), int(parts[1]), parts[2], parts[3], parts[4] if len(parts) > 4 else ""))
    return rows


def group_alive(pgid: int) -> list[tuple[int, int, str, str, str]]:
    """The live (non-zombie) processes of process group ``pgid``."""
    return [row for row in processes() if row[1] == pgid and not row[2].startswith("Z")]


def stop_runs(sshd, remote: str) -> None:
    """Kill whatever is left of the runs under ``remote`` (as the remote user: nothing else can be touched)."""
    for run in run_dirs(remote):
        try:
            pgid = read_pid(run)
        except (OSError, ValueError):
            continue
        if group_alive(pgid):
            sshd.as_user(["kill", "-KILL", "--", f"-{pgid}"])


SPARES = (".remote-run", "spares")  # the host's spare snapshots: a cache it makes in the background


def tree(root: Path, skip=(".remote-run",)) -> dict:
    """{relative path: ("file", size, sha256) | ("link", target) | ("dir",)} below ``root``, without
    the spare snapshots (a cache the host makes in its own time, whatever a test does)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        rel_folder = Path(folder).relative_to(root)
        if rel_folder.parts and rel_folder.parts[0] in skip or rel_folder.parts[:2] == SPARES:
            dirs[:] = []
            continue
        if rel_folder.parts == SPARES[:1] and "spares" in dirs:
            dirs.remove("spares")
        for name in list(dirs):
            path = Path(folder) / name
            rel = (rel_folder / name).as_posix()
            if not rel_folder.parts and name in skip:
                continue
            found[rel] = ("link", os.readlink(path)) if path.is_symlink() else ("dir",)
        for name in files:
            path = Path(folder) / name
            rel = (rel_folder / name).as_posix()
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            else:
                data = path.read_bytes()
                found[rel] = ("file", len(data), hashlib.sha256(data).hexdigest())
    return found


def released(remote: str, timeout: float = 15) -> None:
    """Wait until the runs that ended have released their snapshots (after their exit status)."""
    wait_for(lambda: not list(Path(remote).glob(".remote-run/runs/*/work.linked"))
             and not list(Path(remote).glob(".remote-run/runs/*/work.releasing")), timeout,
             "the ended runs' snapshots released")


def write_pip_conf(sshd, text: str):
    """Give the host's pip this configuration (e.g. no index: a realistic offline GPU box); returns
    a function that removes it."""
    conf = sshd.remote_home / ".config" / "pip" / "pip.conf"
    sshd.as_user(["mkdir", "-p", str(conf.parent)])
    done = sshd.as_user(["sh", "-c", 'cat > "$1"', "sh", str(conf)], input=text)
    assert done.returncode == 0, done.stderr
    return lambda: sshd.as_user(["rm", "-f", str(conf)])


OFFLINE_PIP = "[global]\nno-index = true\n"
# torch from this machine's local package indexes (the machines this project is built on have them).
LOCAL_INDEX_PIP = ("[global]\n"
                   "index-url = file:///opt/pypi/simple\n"
                   "extra-index-url = file:///opt/pypi-more/simple\n"
                   "find-links = /opt/wheels\n")
