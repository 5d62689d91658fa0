"""A real OpenSSH server on loopback, for integration tests and benchmarks.

``SshServer(root)`` runs ``/usr/sbin/sshd`` as a child process, listening on 127.0.0.1 on a free
port, with its host key, config, pid file and log under ``root``. Two modes:

- as a normal user, sshd runs as you and lets only you in (that is all an unprivileged sshd
  can do; ``UsePAM no`` and ``StrictModes no`` make it work without any system file);
- as root, remote commands run as the dedicated local user ``rrtest`` (created on first use;
  never root itself, whose ``.bashrc`` is slow), and ``as_user()`` uses ``runuser``.

Either way the remote session gets a home of its own (``remote_home``, under /tmp, set with
sshd's ``SetEnv HOME=...``), so nothing is ever written into a real home directory, and a PATH
that puts this server's fake ``nvidia-smi`` (tests/support/fake_nvidia_smi.py) first: its state
file is per server, so concurrent test runs on one machine do not change each other's GPUs.
What the remote user must read (authorized_keys, the fake nvidia-smi and its state) lives in a
world-readable ``/tmp/rr-sshd-pub-*`` directory (``public_dir``), removed by ``close()``.

A fake client home, ``server.home``, holds a ``.ssh/config`` with the alias ``l1`` and a
``known_hosts`` that already trusts the server's host key. OpenSSH's ``ssh`` ignores ``$HOME``
(it takes ``~`` from the passwd entry), so ``env()`` also puts a tiny ``ssh`` wrapper first on
``PATH`` that adds ``-F <home>/.ssh/config``: a program under test that runs plain ``ssh l1 ...``
(or ``rsync -e ssh``) sees the fake config, as it would see the user's own ``~/.ssh/config``.

Plain module: no pytest import, so ``bench/`` can use it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable

from .net import free_port

__all__ = ["SshServer", "SshServerError", "REMOTE_USER", "GPU_STATES"]

REMOTE_USER = "rrtest"  # the remote user when the harness runs as root
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
GPU_STATES = ("idle", "busy", "two", "two-first-busy", "nodriver", "absent")
SSHD = "/usr/sbin/sshd"
RUNUSER = shutil.which("runuser", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/runuser"
FAKE_NVIDIA_SMI = Path(__file__).with_name("fake_nvidia_smi.py")
ROOT_MODE = os.geteuid() == 0

# Variables of the CLI under test (and of the developer's shell) that must not
# leak from the outer environment into a test run.
_DROP_EXACT = {
    "WORKSPACE", "RUNS_DIR", "PIP_PACKAGES", "CUDA_VISIBLE_DEVICES",
    "TRAIN_IMPL", "SYNC_EXCLUDE", "XDG_RUNTIME_DIR", "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
}
_DROP_PREFIXES = ("REMOTE_", "TORCH_")
_DROP_SUFFIXES = ("_MODULE",)


class SshServerError(RuntimeError):
    """sshd could not be set up or started."""


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("check", True)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(argv, **kwargs)


def _passwd_change(argv: list[str], done=(0,)) -> None:
    """useradd/usermod, again while another test worker holds the passwd lock (exit 1)."""
    for attempt in range(20):
        res = subprocess.run(argv, capture_output=True, text=True)
        if res.returncode in done:
            return
        if attempt == 19:
            raise SshServerError(f"{' '.join(argv)} failed: {res.stderr.strip()}")
        time.sleep(0.2)


def _openssh_version() -> tuple[int, int]:
    out = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stderr + out.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc): children first, then theirs."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(0), [])
        found += kids
        todo += kids
    return found


def _started(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _terminate(pids: Iterable[int], timeout: float = 2.0) -> None:
    """SIGTERM the given pids, then SIGKILL what is left after ``timeout``."""
    pids = list(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            # reap it if it is our child; ignore otherwise
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not _alive(pid):
                break
            time.sleep(0.01)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class SshServer:
    """Loopback sshd plus a fake client home; see the module docstring.

    Attributes: ``root`` (temp dir), ``home`` (fake client HOME), ``port``, ``user`` (rrtest as
    root, else you), ``remote_home`` (the remote sessions' HOME), ``ssh_config``, ``known_hosts``,
    ``client_key``, ``host_key``, ``log_path``, ``control_dir`` (for ControlMaster sockets, a short
    path: a socket path holds at most 107 bytes), ``proc`` (the sshd Popen).
    """

    def __init__(self, root: Path, user: str | None = None):
        self.root = Path(root).resolve()
        self.user = user or (REMOTE_USER if ROOT_MODE else pwd.getpwuid(os.getuid()).pw_name)
        self.server_dir = self.root / "server"
        self.home = self.root / "home"
        self.ssh_dir = self.home / ".ssh"
        self.ssh_config = self.ssh_dir / "config"
        self.known_hosts = self.ssh_dir / "known_hosts"
        self.client_key = self.ssh_dir / "id_ed25519"
        self.host_key = self.server_dir / "ssh_host_ed25519_key"
        self.sshd_config = self.server_dir / "sshd_config"
        self.pid_file = self.server_dir / "sshd.pid"
        self.log_path = self.server_dir / "sshd.log"
        self.shim_dir = self.home / "bin"
        # Made by _prepare(), under /tmp: pytest resets its base temp dir to 0700 whenever another
        # pytest run starts, which would lock the remote user out of anything under ``root``.
        # public_dir holds what the remote user must read (authorized_keys, the fake nvidia-smi
        # and its state); nothing secret is in there.
        self.control_dir: Path | None = None
        self.remote_home: Path | None = None
        self.public_dir: Path | None = None
        self.authorized_keys: Path | None = None
        self.remote_bin: Path | None = None
        self.gpu_state_file: Path | None = None
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._left_open: list[tuple[int, int | None]] = []  # (pid, start) of connections a restart left open
        self._aliases: dict[str, tuple[str, int]] = {}
        self._prepared = False

    @property
    def is_root_mode(self) -> bool:
        """Whether remote commands run as a dedicated user (the harness runs as root)."""
        return ROOT_MODE

    # ------------------------------------------------------------------ setup
    def _prepare(self) -> None:
        if not os.access(SSHD, os.X_OK) or shutil.which("ssh") is None:
            raise SshServerError(f"{SSHD} or ssh missing: apt-get install -y openssh-server rsync")
        if ROOT_MODE:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
            self._ensure_user()
        self.server_dir.mkdir(parents=True, exist_ok=True)
        self.ssh_dir.mkdir(parents=True, exist_ok=True)
        self.shim_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.ssh_dir, 0o700)
        self.control_dir = Path(tempfile.mkdtemp(prefix="rr-cm-", dir="/tmp"))
        # sshd reads AuthorizedKeysFile as the target user, so it (and the
        # remote-side fakes) go into a 0755 dir outside ``root``.
        self.public_dir = Path(tempfile.mkdtemp(prefix="rr-sshd-pub-", dir="/tmp"))
        os.chmod(self.public_dir, 0o755)
        self.authorized_keys = self.public_dir / "authorized_keys"
        self.remote_bin = self.public_dir / "bin"
        self.gpu_state_file = self.public_dir / "fake-gpu"
        # This server's fake GPUs get a GPU queue of their own (REMOTE_RUN_GPU_QUEUE on the host),
        # so concurrent test runs, each with their own fake GPUs, never queue behind each other.
        self.gpu_queue = f"/tmp/rr-gpuq-{self.public_dir.name}"
        self.remote_bin.mkdir(mode=0o755)
        os.chmod(self.remote_bin, 0o755)
        self.remote_home = Path(tempfile.mkdtemp(prefix="rr-remote-home-", dir="/tmp"))
        os.chmod(self.remote_home, 0o755)
        (self.remote_home / "bin").mkdir()
        if ROOT_MODE:
            for path in (self.remote_home, self.remote_home / "bin"):
                self._chown_user(path)
        if not self.host_key.exists():
            self._keygen(self.host_key, "rr-test-host")
        if not self.client_key.exists():
            self._keygen(self.client_key, "rr-test-client")
        pub = (self.client_key.with_suffix(".pub")).read_text()
        self.authorized_keys.write_text(pub)
        os.chmod(self.authorized_keys, 0o644)
        self._write_shim()
        self.set_gpu("idle")
        self._prepared = True

    @staticmethod
    def _keygen(path: Path, comment: str) -> None:
        for p in (path, path.with_suffix(".pub")):
            if p.exists():
                p.unlink()
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])

    def _ensure_user(self) -> None:
        if subprocess.run(["id", "-u", self.user], capture_output=True).returncode != 0:
            _passwd_change(["useradd", "-m", "-s", "/bin/bash", self.user], done=(0, 9))  # 9: made meanwhile
        # useradd locks the password ("!"); with UsePAM no sshd refuses locked
        # accounts even for key logins.  "*" = no password, not locked.
        _passwd_change(["usermod", "-p", "*", self.user])

    def _chown_user(self, path: Path) -> None:
        shutil.chown(path, self.user, self.user)

    @property
    def remote_path(self) -> str:
        """PATH of remote sessions: ~/bin, this server's fake-tool dir, system."""
        return f"{self.remote_home}/bin:{self.remote_bin}:{SYSTEM_PATH}"

    def _write_shim(self) -> None:
        shim = self.shim_dir / "ssh"
        real = shutil.which("ssh", path="/usr/bin:/bin:/usr/local/bin") or "/usr/bin/ssh"
        shim.write_text(
            "#!/bin/sh\n"
            "# Test wrapper: OpenSSH ignores $HOME, so point it at the fake home's config.\n"
            f'exec {real} -F "{self.ssh_config}" "$@"\n'
        )
        os.chmod(shim, 0o755)

    def _write_sshd_config(self) -> None:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"AllowUsers {self.user}",
            "UsePAM no",
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "LogLevel VERBOSE",
            "MaxSessions 50",
            "MaxStartups 50:30:100",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "Subsystem sftp internal-sftp",
            # Per-server remote environment: a home of its own (never a real one) and this
            # server's fake nvidia-smi first on PATH, so concurrent servers do not clash.
            f"SetEnv HOME={self.remote_home} PATH={self.remote_path} RR_FAKE_GPU={self.gpu_state_file}"
            f" REMOTE_RUN_GPU_QUEUE={self.gpu_queue}",
        ]
        if _openssh_version() >= (9, 8):
            # newer sshd penalises sources with failed logins; tests fail on purpose
            lines.append("PerSourcePenalties no")
        self.sshd_config.write_text("\n".join(lines) + "\n")

    def _host_pubkey(self) -> str:
        parts = self.host_key.with_suffix(".pub").read_text().split()
        return f"{parts[0]} {parts[1]}"

    def _write_client_files(self, known_hosts: bool = True) -> None:
        blocks = []
        for name, (hostname, port) in self._aliases.items():
            blocks.append(
                f"Host {name}\n"
                f"    HostName {hostname}\n"
                f"    Port {port}\n"
                f"    User {self.user}\n"
                f"    IdentityFile {self.client_key}\n"
                f"    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {self.known_hosts}\n"
            )
        self.ssh_config.write_text("\n".join(blocks))
        if known_hosts:
            self.trust_host_key()

    # ------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 5.0) -> "SshServer":
        """Start sshd (first call: also set everything up); returns self."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        if not self._prepared:
            self._prepare()
        fixed_port = self.port is not None
        attempts = 1 if fixed_port else 3
        for attempt in range(attempts):
            if not fixed_port:
                self.port = free_port()
            self._write_sshd_config()
            err = self._spawn(timeout)
            if err is None:
                break
            if "Address already in use" not in err or attempt == attempts - 1:
                raise SshServerError(f"sshd did not start on 127.0.0.1:{self.port}:\n{err}")
        if "l1" not in self._aliases:
            self._aliases["l1"] = ("127.0.0.1", self.port)
            self._write_client_files()
        return self

    def _spawn(self, timeout: float) -> str | None:
        """Start sshd, wait for its port; None on success, else the log text."""
        mark = self.mark()
        stderr_path = self.server_dir / "sshd.stderr"
        with open(stderr_path, "wb") as stderr:  # a file: a pipe nobody reads could fill up
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-f", str(self.sshd_config), "-E", str(self.log_path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=stderr, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = stderr_path.read_text(errors="replace")
                self.proc = None
                return (err + self.log_text(mark)).strip() or "sshd exited without a message"
            # sshd logs this right after listen(): the port accepts connections
            # from then on.  (A probe connection would leave noise in the log,
            # so it is only the fallback for a log that says nothing.)
            if "Server listening on" in self.log_text(mark):
                return None
            if time.monotonic() > deadline - timeout / 2:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return None
                except OSError:
                    pass
            time.sleep(0.01)
        text = self.log_text(mark)
        self._stop_proc(kill_sessions=True)
        return f"timed out after {timeout} s\n{text}"

    def _stop_proc(self, kill_sessions: bool) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        # Every process of a connection: sshd's child for it, the one it starts after the login and
        # what runs in its sessions. Those a restart left open (as a real `systemctl restart ssh`
        # does) are no longer below sshd: remembered, so that a stop that ends connections ends them.
        left = [pid for pid, ticks in self._left_open if _started(pid) == ticks]  # not a reused pid
        sessions = [*left, *_descendants(proc.pid)]
        self._left_open = [] if kill_sessions else [(pid, _started(pid)) for pid in sessions if _alive(pid)]
        if not kill_sessions:
            sessions = []
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # not in sshd's process group: setsid'd
        _terminate(sessions)

    def stop(self, kill_sessions: bool = True) -> None:
        """Stop sshd.  ``kill_sessions`` also ends open connections (else they
        survive, as with a real ``systemctl restart ssh``)."""
        self._stop_proc(kill_sessions)

    def restart(self, kill_sessions: bool = False) -> None:
        """Stop and start again on the same port."""
        self.stop(kill_sessions=kill_sessions)
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Stop sshd and kill leftover ``ssh`` clients (ControlMasters) that
        belong to this server's fake home.  Safe to call twice."""
        self.stop(kill_sessions=True)
        self.end_masters()
        if self.public_dir is not None:
            if ROOT_MODE:  # what runs left in the remote home belongs to the remote user
                self.as_user(["rm", "-rf", "--", str(self.remote_home)], cwd="/")
            if ROOT_MODE:
                self.as_user(["sh", "-c", 'rm -rf -- "$1".*', "-", self.gpu_queue], cwd="/")
            for path in (self.public_dir, self.remote_home, self.control_dir,
                         *Path("/tmp").glob(Path(self.gpu_queue).name + ".*")):
                shutil.rmtree(path, ignore_errors=True)
            self.public_dir = None
            self._prepared = False

    def end_masters(self) -> None:
        """End the OpenSSH clients of this server's fake home, ControlMasters included: the next
        command makes a fresh connection (and checks the host key again)."""
        _terminate(self._client_ssh_pids())

    def _client_ssh_pids(self) -> list[int]:
        marks = tuple(str(p).encode() for p in (self.home, self.root, self.control_dir) if p)
        home_env = b"HOME=" + str(self.home).encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/comm", "rb") as fh:
                    if fh.read().strip() != b"ssh":
                        continue
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmdline = fh.read()
                try:
                    with open(f"/proc/{entry}/environ", "rb") as fh:
                        environ = fh.read().split(b"\0")
                except OSError:
                    environ = []
            except OSError:
                continue
            if any(m in cmdline for m in marks) or home_env in environ:
                found.append(int(entry))
        return found

    def __enter__(self) -> "SshServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------- client side
    def add_alias(self, name: str, port: int, hostname: str = "127.0.0.1") -> None:
        """Add (or re-point) a ``Host name`` block for this server's user and
        key, e.g. ``add_alias("l1proxy", proxy.port)``, and trust the current
        host key as ``[hostname]:port`` in known_hosts (paramiko has no
        ``HostKeyAlias``, so the port-keyed line serves both clients)."""
        self._aliases[name] = (hostname, int(port))
        self._write_client_files()

    def trust_host_key(self) -> None:
        """(Re)write known_hosts so that every alias trusts the current host
        key, e.g. to undo the effect of ``regenerate_host_key()``."""
        key = self._host_pubkey()
        seen, lines = set(), []
        for hostname, port in self._aliases.values():
            entry = hostname if port == 22 else f"[{hostname}]:{port}"
            if entry not in seen:
                seen.add(entry)
                lines.append(f"{entry} {key}")
        self.known_hosts.write_text("".join(line + "\n" for line in lines))

    def ssh_argv(self, alias: str = "l1") -> list[str]:
        return ["ssh", "-F", str(self.ssh_config), alias]

    def env(self, **extra: object) -> dict[str, str]:
        """Environment for running the CLI under test against this server:
        HOME = the fake home, the ``ssh -F`` wrapper first on PATH, and the
        caller's REMOTE_*/TORCH_*/*_MODULE/... variables, SSH agent and
        XDG_RUNTIME_DIR removed, REMOTE_RUN_CONTROL_DIR set to ``control_dir``;
        then ``extra`` (values str()'d; None = unset)."""
        env = {}
        for key, value in os.environ.items():
            if (key in _DROP_EXACT or key.startswith(_DROP_PREFIXES)
                    or key.endswith(_DROP_SUFFIXES)):
                continue
            env[key] = value
        env["HOME"] = str(self.home)
        # remote-run's ControlMaster socket dir: per server, not the machine-wide
        # /tmp/remote-run-<uid> (pass REMOTE_RUN_CONTROL_DIR=None to test the default)
        env["REMOTE_RUN_CONTROL_DIR"] = str(self.control_dir)
        env["PATH"] = os.pathsep.join([str(self.shim_dir), env.get("PATH", "/usr/bin:/bin")])
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        return env

    # ------------------------------------------------------------------- log
    def log_text(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(since)
                return fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        """Current length of the sshd log, for ``count(..., since=mark)``."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def count(self, pattern: str | re.Pattern, since: int = 0) -> int:
        """Occurrences of ``pattern`` (substring, or compiled regex) in the
        log after offset ``since``.  Handshakes: ``"Accepted publickey"``;
        remote commands/sessions: ``"Starting session:"``."""
        text = self.log_text(since)
        if isinstance(pattern, re.Pattern):
            return len(pattern.findall(text))
        return text.count(pattern)

    def wait_for_log(self, pattern: str, since: int = 0, n: int = 1,
                     timeout: float = 5.0) -> int:
        """Wait until ``pattern`` occurs ``n`` times after ``since``; returns
        the count (raises TimeoutError with the log if it never does)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.count(pattern, since)
            if got >= n:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pattern!r} seen {got}/{n} times:\n{self.log_text(since)}")
            time.sleep(0.02)

    # ----------------------------------------------------------- remote side
    def set_gpu(self, state: str) -> None:
        """Select what the fake ``nvidia-smi`` of this server reports: one of
        GPU_STATES.  ``absent`` deletes the script, so the remote shell itself
        answers "command not found" (exit 127) and ``command -v`` finds nothing.

        The script is ``<public_dir>/bin/nvidia-smi`` (on the remote PATH
        after ~/bin) and its state file ``<public_dir>/fake-gpu`` (passed as
        ``RR_FAKE_GPU``): per server, so concurrent test runs do not clash."""
        if state not in GPU_STATES:
            raise ValueError(f"unknown GPU state {state!r}; expected one of {GPU_STATES}")
        script = self.remote_bin / "nvidia-smi"
        if state == "absent":
            script.unlink(missing_ok=True)
        else:
            tmp = script.with_name(".nvidia-smi.tmp")
            shutil.copyfile(FAKE_NVIDIA_SMI, tmp)
            os.chmod(tmp, 0o755)
            os.replace(tmp, script)
        self.gpu_state_file.write_text(state + "\n")
        os.chmod(self.gpu_state_file, 0o644)

    def as_user(self, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run ``cmd`` on this machine as the remote user (as root: ``runuser -u rrtest --``; else
        you), with the remote HOME, PATH and fake-GPU state; output captured, no check by default."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("check", False)
        kwargs.setdefault("cwd", str(self.remote_home))
        env = {"PATH": self.remote_path, "RR_FAKE_GPU": str(self.gpu_state_file),
               "REMOTE_RUN_GPU_QUEUE": self.gpu_queue, "HOME": str(self.remote_home), "USER": self.user,
               "LOGNAME": self.user, "LANG": "C.UTF-8"}
        env.update(kwargs.pop("env", None) or {})
        # runuser sets HOME (and USER, LOGNAME) from passwd: set ours again after it.
        argv = ([RUNUSER, "-u", self.user, "--", "env", *(f"{k}={v}" for k, v in env.items()), *cmd] if ROOT_MODE
                else list(cmd))
        return subprocess.run(argv, env=env, **kwargs)

    def cleanup_remote(self, path_prefix: str) -> None:
        """Remove ``/tmp/<something>*`` paths the tests created, as the remote
        user (so nothing outside that user's reach can be touched)."""
        prefix = os.path.normpath(path_prefix)
        if not prefix.startswith("/tmp/") or len(prefix) <= len("/tmp/") or ".." in prefix.split("/"):
            raise ValueError(f"refusing to clean {path_prefix!r}: give a prefix under /tmp/")
        import glob

        paths = glob.glob(glob.escape(prefix) + "*")
        if paths:
            self.as_user(["rm", "-rf", "--", *paths], cwd="/")

    def regenerate_host_key(self) -> None:
        """New host key + restart; known_hosts is NOT updated, so clients now
        see a changed host key.  ``trust_host_key()`` undoes that."""
        self._keygen(self.host_key, "rr-test-host")
        self.restart()

    # ------------------------------------------------------------ convenience
    def run_ssh(self, command: str, alias: str = "l1", timeout: float = 30,
                **kwargs) -> subprocess.CompletedProcess:
        """``ssh -F CONFIG alias command`` with stdin closed; text captured."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("env", self.env())
        return subprocess.run([*self.ssh_argv(alias), command], timeout=timeout, **kwargs)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SshServer 127.0.0.1:{self.port} user={self.user} {state} root={self.root}>"


def _main() -> None:  # pragma: no cover - manual use
    """``python tests/sshd.py [DIR]``: start a server and wait (Ctrl+C stops)."""
    import sys
    import tempfile

    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="rr-sshd-"))
    with SshServer(root) as server:
        print(f"sshd on 127.0.0.1:{server.port}; try: {' '.join(server.ssh_argv())} whoami", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    _main()
