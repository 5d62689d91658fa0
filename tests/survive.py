"""Helpers for the fault and adversarial tests (test_faults.py, test_adversarial.py).

The loopback sshd runs on this machine, so "the host" is this machine as the user ``rrtest``:
the tests look at REMOTE_DIR, run logs and the process list directly (as root) where that is
faster than a round trip through ``runuser``.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from integration import REPO

# Runs use the host's system interpreter: no venv to build (bootstrap then only probes it),
# which keeps these tests fast; everything about starting, following and stopping runs is the same.
REMOTE_PY = "/usr/bin/python3"


def settings_env(sshd, **env) -> dict:
    """The CLI's environment, as integration.cli builds it (None = unset)."""
    settings = {"REMOTE_HOST": "l1", "TORCH_PACKAGES": "", "TRAIN_IMPL": "workspace", "REMOTE_PYTHON": REMOTE_PY}
    settings.update(env)
    return sshd.env(**settings)


def argv(*args: str, program: str = "inv") -> list[str]:
    if program == "inv":
        return [sys.executable, "-m", "invoke", "--search-root", str(REPO), *args]
    return [sys.executable, "-m", "remote_run", *args]


def cli(sshd, workspace: Path, *args: str, program: str = "inv", timeout: float = 120, **env) -> subprocess.CompletedProcess:
    """integration.cli, with REMOTE_PYTHON set unless given (None unsets it)."""
    return subprocess.run(argv(*args, program=program), cwd=workspace, env=settings_env(sshd, **env),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


class Background:
    """The real CLI started in the background, in its own session (like a terminal's foreground job)."""

    def __init__(self, sshd, workspace: Path, logdir: Path, *args: str, **env):
        logdir.mkdir(parents=True, exist_ok=True)
        stamp = f"{time.monotonic_ns()}"
        self.out_path = logdir / f"bg-{stamp}.out"
        self.err_path = logdir / f"bg-{stamp}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv(*args), cwd=workspace, env=settings_env(sshd, **env), stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.started = time.monotonic()

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
    runs = Path(remote) / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def wait_for_started_run(remote: str, timeout: float = 30, known=(), bg: Background | None = None) -> Path:
    """The first run directory (not in ``known``) whose pid file exists."""
    def found():
        if bg is not None and bg.proc.poll() is not None:
            raise AssertionError(f"the CLI exited ({bg.proc.returncode}) before a run started:\n{bg.stdout}\n{bg.stderr}")
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
    """Every process on the host: (pid, pgid, stat, user, args), from ``ps -eo``."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,pgid=,stat=,user=,args="], capture_output=True, text=True, check=True).stdout
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
    """Kill whatever is left of the runs under ``remote`` (as rrtest: nothing else can be touched)."""
    for run in run_dirs(remote):
        try:
            pgid = read_pid(run)
        except (OSError, ValueError):
            continue
        if group_alive(pgid):
            sshd.as_user(["kill", "-KILL", "--", f"-{pgid}"])


def tree(root: Path, skip=(".remote-run",)) -> dict:
    """{relative path: ("file", size, sha256) | ("link", target) | ("dir",)} below ``root``."""
    found = {}
    for folder, dirs, files in os.walk(root):
        rel_folder = Path(folder).relative_to(root)
        if rel_folder.parts and rel_folder.parts[0] in skip:
            continue
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


def no_traceback(done) -> None:
    text = (done.stdout or "") + (done.stderr or "")
    assert "Traceback" not in text, text[-3000:]


def remote_run_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("remote-run: ")]
