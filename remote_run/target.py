"""Where commands run: this machine, or an SSH host reached through one Fabric connection.

One `Target` per process (one ``inv`` invocation), shared by every chained task. Remote
commands go over a single Fabric/paramiko connection opened on first use; rsync goes through
OpenSSH with the host exactly as the user wrote it, multiplexed over a ControlMaster socket
that persists between invocations.
"""

from __future__ import annotations

import io
import os
import re
import socket
import stat
import sys
from pathlib import Path

from . import settings as settings_mod
from .errors import Failure
from .shell import join, summary

CONNECT_TIMEOUT = 10
KEEPALIVE = 15
CONTROL_PERSIST = "10m"
# Seconds for quick looks (GPU query, environment stamp, run listing); runs never time out.
CHECK_TIMEOUT = float(os.environ.get("REMOTE_RUN_CHECK_TIMEOUT", "60"))

# Flags given on the command line of the `remote-run` program (--env-file, --host).
cli_overrides: dict = {}
_current: Target | None = None


class Target:
    def __init__(self, settings: settings_mod.Settings, context):
        self.settings = settings
        self.host = settings.host
        self.context = context
        self._connection = None
        self.commands: list[str] = []
        self.done: dict[str, object] = {}

    @property
    def is_local(self) -> bool:
        return self.host.is_local

    @property
    def label(self) -> str:
        return "this machine (local)" if self.is_local else self.host.spec

    @property
    def python(self) -> str:
        """The interpreter runs use: REMOTE_PYTHON, this interpreter on `local`, else the venv."""
        if self.settings.remote_python:
            return self.settings.remote_python
        if self.is_local:
            return sys.executable
        return f"{self.settings.remote_dir}/.venv/bin/python"

    @property
    def connection(self):
        """The invoke Context for `local`, else the Fabric Connection (opened once, on first use)."""
        if self.is_local:
            return self.context
        if self._connection is None:
            self._connection = open_connection(self.host)
        return self._connection

    def run(self, argv, *, hide=False, stream=None, stdin: str | None = None, timeout=None):
        """Run ``argv`` on the target; returns invoke's Result (never raises on a non-zero exit)."""
        command = join(argv)
        self.commands.append(summary(argv))
        kwargs = dict(hide=hide, warn=True, timeout=timeout, in_stream=False)
        if stream is not None:
            kwargs["out_stream"] = stream
        if stdin is not None:
            kwargs["in_stream"] = _WholeInput(stdin)
        try:
            result = self.connection.run(command, **kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped to one line, re-raised otherwise
            from invoke.exceptions import CommandTimedOut

            if isinstance(exc, CommandTimedOut):
                raise Failure(f"`{summary(argv)[:80]}` did not finish within {timeout} s on {self.label}; the host may be overloaded or a tool (nvidia-smi, a full disk) may hang: check it with ssh") from None
            raise connection_failure(self.host, exc) from None
        if result.exited == -1 and not self.is_local:
            # paramiko's way of saying the channel closed without an exit status
            raise Failure(f"the connection to {self.label} dropped")
        return result

    def local(self, argv, *, hide=False, stream=None, timeout=None):
        """Run ``argv`` on this machine (rsync, git); recorded like remote commands."""
        command = join(argv)
        self.commands.append(summary(argv))
        kwargs = dict(hide=hide, warn=True, timeout=timeout, in_stream=False)
        if stream is not None:
            kwargs["out_stream"] = stream
        return self.context.run(command, **kwargs)

    def ssh_argv(self) -> list[str]:
        """OpenSSH for rsync: the user's ssh_config in full, plus a persistent ControlMaster."""
        argv = [
            "ssh",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", f"ServerAliveInterval={KEEPALIVE}",
            "-o", "ServerAliveCountMax=4",
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={control_dir()}/%C",
            "-o", f"ControlPersist={CONTROL_PERSIST}",
        ]
        if self.host.port:
            argv += ["-p", str(self.host.port)]
        return argv

    def rsync_path(self, path: str) -> str:
        """How rsync names ``path`` on the target."""
        return path if self.is_local else f"{self.host.ssh_destination}:{path}"

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _WholeInput(io.StringIO):
    """Data for a command's stdin, handed over in one read.

    Invoke reads a file-like in_stream one character per read, sleeping 10 ms between reads.
    """

    def read(self, size=-1):
        return super().read()


def control_dir() -> str:
    """A private directory for ControlMaster sockets (short path: sockets are limited to ~100 bytes)."""
    path = Path(os.environ.get("REMOTE_RUN_CONTROL_DIR") or f"/tmp/remote-run-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise Failure(f"{path} must be a directory only you can access (chmod 700 {path}); it holds SSH control sockets")
    return str(path)


def current(context) -> Target:
    """The one Target of this invocation, built from the settings on first use."""
    global _current
    if _current is None:
        loaded = settings_mod.load(env_file=cli_overrides.get("env_file"), overrides=cli_overrides.get("settings"))
        _current = Target(loaded, context)
    elif _current.context is None:
        _current.context = context
    return _current


def reset() -> None:
    """Forget this invocation's target (tests run several invocations in one process)."""
    global _current
    if _current is not None:
        _current.close()
    _current = None


def open_connection(host: settings_mod.Host):
    """A connected Fabric Connection with known hosts loaded, a keepalive, and clear failures."""
    from fabric import Config, Connection

    config = Config(overrides={"timeouts": {"connect": CONNECT_TIMEOUT}, "load_ssh_configs": True})
    connection = Connection(host.spec, config=config, connect_timeout=CONNECT_TIMEOUT)
    if connection.ssh_config.get("identitiesonly", "").lower() == "yes":
        # Fabric ignores IdentitiesOnly; without this paramiko also offers ~/.ssh/id_* and agent keys.
        connection.connect_kwargs.update(look_for_keys=False, allow_agent=False)
    # Fabric accepts unknown hosts but loads no known_hosts at all; without these a changed
    # host key would go unnoticed.
    files = [Path("~/.ssh/known_hosts").expanduser()]
    for entry in connection.ssh_config.get("userknownhostsfile", "").split():
        files.append(Path(entry).expanduser())
    for path in files:
        if path.is_file():
            try:
                connection.client.load_system_host_keys(str(path))
            except Exception:  # noqa: BLE001 - an unreadable known_hosts is not fatal
                pass
    try:
        connection.open()
    except Exception as exc:  # noqa: BLE001
        raise connection_failure(host, exc) from None
    connection.transport.set_keepalive(KEEPALIVE)
    return connection


def connection_failure(host: settings_mod.Host, exc: BaseException) -> BaseException:
    """One clear line for the ways connecting can fail; other errors pass through unchanged."""
    import paramiko

    name = host.spec
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, socket.gaierror):
        return Failure(f"cannot resolve host {name!r} (REMOTE_HOST): it is neither a Host alias in ~/.ssh/config nor a known hostname; add a Host entry or fix REMOTE_HOST")
    if isinstance(exc, paramiko.BadHostKeyException):
        return Failure(f"the host key of {name} has CHANGED since it was recorded in known_hosts; if the machine was really reinstalled, run `ssh-keygen -R {exc.hostname}` and connect once with ssh, otherwise do not connect")
    if isinstance(exc, paramiko.AuthenticationException):
        return Failure(f"{name} refused our SSH key (authentication failed); check IdentityFile in ~/.ssh/config or load the key into ssh-agent, then try `ssh {name}`")
    if isinstance(exc, (paramiko.ssh_exception.NoValidConnectionsError, ConnectionRefusedError)):
        return Failure(f"cannot reach {name}: connection refused; check that the machine is up and its SSH port is right (`ssh {name}`)")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return Failure(f"cannot reach {name}: timed out after {CONNECT_TIMEOUT}s; check the network, VPN or ProxyJump (`ssh {name}`)")
    if isinstance(exc, OSError) and exc.errno is not None:
        return Failure(f"cannot reach {name}: {exc.strerror}; check `ssh {name}`")
    if isinstance(exc, paramiko.SSHException):
        return Failure(f"SSH to {name} failed: {exc}; check `ssh {name}`")
    return exc


_SSH_ERRORS = [
    (re.compile(r"Could not resolve hostname"), "cannot resolve host {name!r} (REMOTE_HOST): it is neither a Host alias in ~/.ssh/config nor a known hostname; add a Host entry or fix REMOTE_HOST"),
    (re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed"), "the host key of {name} has CHANGED or is not trusted; if the machine was really reinstalled, remove the old key with ssh-keygen -R and connect once with ssh, otherwise do not connect"),
    (re.compile(r"Permission denied \((publickey|password|keyboard)"), "{name} refused our SSH key (authentication failed); check IdentityFile in ~/.ssh/config or load the key into ssh-agent, then try `ssh {name}`"),
    (re.compile(r"Connection refused"), "cannot reach {name}: connection refused; check that the machine is up and its SSH port is right (`ssh {name}`)"),
    (re.compile(r"timed out|No route to host|Network is unreachable"), "cannot reach {name}: the connection timed out or has no route; check the network, VPN or ProxyJump (`ssh {name}`)"),
    (re.compile(r"Connection (closed|reset)|Broken pipe|connection unexpectedly closed"), "the connection to {name} dropped; run the command again (a sync resumes where it stopped)"),
]


def ssh_failure(host: settings_mod.Host, stderr: str) -> str | None:
    """Translate OpenSSH's error text into our one line, or None if it is not a connection error."""
    for pattern, message in _SSH_ERRORS:
        if pattern.search(stderr):
            return message.format(name=host.spec)
    return None
