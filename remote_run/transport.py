"""The one transport: commands on this machine, or on the host through the user's own OpenSSH.

Every remote command is ``ssh HOST COMMAND`` with HOST exactly as the user wrote it, so
~/.ssh/config applies in full (Include, Match, ProxyJump, certificates, agent, known_hosts);
every command and rsync share one ControlMaster per host that outlives the invocation, so a
command costs one round trip and no handshake while the master lives. Processes are started
through invoke's runner (streaming, stdin, hide/warn, timeouts). OpenSSH's errors are turned
into one line here and nowhere else.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

from . import exits
from .errors import Failure
from .settings import Settings
from .launcher import CONTROL
from .runner import QuickLocal
from .shell import join, summary

CONNECT_TIMEOUT = 10
ARGUMENT_LIMIT = 96 * 1024
KEEPALIVE = 15
CONTROL_PERSIST = "10m"


class OwnSession(QuickLocal):
    """The runner for a command that follows a run: in a session of its own, so the terminal's
    Ctrl+C does not reach it. An ssh multiplexing client that gets SIGINT stops passing the run's
    output on; remote-run decides what Ctrl+C does (remote_run.pipeline.CtrlC)."""

    def start(self, command, shell, env):
        if self.using_pty:
            return super().start(command, shell, env)
        self.process = subprocess.Popen(command, shell=True, executable=shell, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, stdin=subprocess.PIPE, start_new_session=True)


class WholeInput(io.StringIO):
    """Data for a command's stdin, handed over in one read.

    Invoke reads a file-like in_stream one character per read, sleeping between reads.
    """

    def read(self, size=-1):
        return super().read()


# What an SSH host runs for a launcher command: this loader, the launcher's version and the mode.
# It executes the launcher as compiled the first time, kept in ~/.cache/remote-run (one file per
# version of it and exact version of Python, whose byte code may change between releases), so a
# command carries 1 KB instead of the 64 KB program and the host does not compile it again (24 ms
# on the test machine). Without it, nothing is done: the command comes again as KEEPER, which
# carries the program and keeps it. The file is used only if it is ours and no one else can
# write it (opened without following links, then checked).
LOADER = r"""
import marshal, os, sys
def kept(name):
    try:
        handle = open(os.open(os.path.expanduser("~/.cache/remote-run/" + name), os.O_RDONLY | os.O_NOFOLLOW), "rb")
    except OSError:
        return None
    with handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            return None
        try:
            return marshal.loads(handle.read())
        except (EOFError, ValueError, TypeError):
            return None
code = kept("launcher-%s.%s.%x" % (sys.argv.pop(1), sys.implementation.cache_tag, sys.hexversion))
if code is None:
    if sys.argv[1:2] in (["check"], ["start"]) and len(sys.argv) == 2:
        sys.stdin.readline()  # its payload, so that what was sent is taken
    home = os.path.expanduser("~")
    storable = os.access(os.path.join(home, ".cache") if os.path.isdir(os.path.join(home, ".cache")) else home, os.W_OK)
    sys.stderr.write("CONTROL" + '{"program": "missing", "storable": %s}\n' % ("true" if storable else "false"))
    sys.exit(NO_PROGRAM)
exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
""".replace("CONTROL", "\\x1e").replace("NO_PROGRAM", str(exits.NO_PROGRAM))

KEEPER = r"""
import marshal, os, stat, sys
code = compile(SOURCE, "<remote-run launcher>", "exec")
def keep(name):
    try:
        folder = os.path.expanduser("~/.cache/remote-run")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            return
        part = os.path.join(folder, ".%s.%d" % (name, os.getpid()))
        with open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "wb") as handle:
            handle.write(marshal.dumps(code))
        os.replace(part, os.path.join(folder, name))
    except OSError:
        pass
keep("launcher-%s.%s.%x" % (sys.argv.pop(1), sys.implementation.cache_tag, sys.hexversion))
exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
"""


@lru_cache(maxsize=None)
def host_program() -> str:
    """The launcher and the two modules it needs, as one program for ``python -S -c``."""
    here = Path(__file__).resolve().parent
    parts = ["import types as _types\n"]
    for name in ("exits", "tree"):
        source = (here / f"{name}.py").read_text(encoding="utf-8")
        parts.append(f"{name} = _types.ModuleType({name!r})\nexec(compile({source!r}, {name + '.py'!r}, 'exec'), {name}.__dict__)\n")
    parts.append((here / "launcher.py").read_text(encoding="utf-8"))
    return "".join(parts)


@lru_cache(maxsize=None)
def program_version() -> str:
    return hashlib.sha256(host_program().encode()).hexdigest()[:20]


@lru_cache(maxsize=None)
def keeper() -> str:
    return KEEPER.replace("SOURCE", repr(host_program()), 1)


def carrying_launcher(argv: list[str]) -> list[str]:
    """A loader command as the keeper: the same command, carrying the launcher."""
    return [*argv[:3], keeper(), *argv[4:]] if argv[3:4] == [LOADER] else argv


MISSING = f'{CONTROL}{{"program": "missing", "storable": '  # the loader found no launcher kept


class Host:
    """Where remote-run's commands run: ``local`` (this machine) or an SSH host."""

    def __init__(self, settings: Settings, context):
        self.settings = settings
        self.spec = settings.host
        self.context = context
        self.commands: list[str] = []  # what ran, for the run record

    @property
    def is_local(self) -> bool:
        return self.spec.is_local

    @property
    def label(self) -> str:
        return "this machine (local)" if self.is_local else self.spec.spec

    @property
    def python(self) -> str:
        """The interpreter runs use: REMOTE_PYTHON, this interpreter on `local`, else the venv."""
        if self.settings.remote_python:
            return self.settings.remote_python
        if self.is_local:
            return sys.executable
        return f"{self.settings.remote_dir}/.venv/bin/python"

    @property
    def uses_venv(self) -> bool:
        return not (self.settings.remote_python or self.is_local)

    def launcher(self, mode: str, *args: str) -> list[str]:
        """argv running the launcher in ``mode``: standard library only, so any python3 will do.
        On an SSH host the loader runs what the host kept, unless it cannot keep it (see run())."""
        if self.is_local:
            return [self.settings.remote_python or sys.executable, "-S", "-c", host_program(), mode, *args]
        try:
            noted = time.time() - self._cannot_keep().stat().st_mtime < 24 * 3600  # then it is asked again
        except FileNotFoundError:
            noted = False
        program = keeper() if noted else LOADER
        return [self.settings.remote_python or "python3", "-S", "-c", program, program_version(), mode, *args]

    def _cannot_keep(self) -> Path:
        """A note, beside the control sockets, that this host cannot keep the launcher (its home is
        not writable): then every command carries it, as the loader would only ask for it again."""
        spec = hashlib.sha256(self.spec.spec.encode()).hexdigest()[:16]
        return control_dir(self.settings) / f"no-launcher-cache-{spec}"

    def launcher_with(self, mode: str, payload: dict, *, private: bool = False) -> tuple[list[str], str | None]:
        """(argv, stdin) of a launcher command that takes ``payload``.

        On the command line when it can be: ssh spends a round trip before it sends stdin. On
        stdin when it is private (forwarded values, workspace files: the host's process list is
        public) or too long for one argument (128 KiB on Linux, quoted twice on the way).
        """
        text = json.dumps(payload)
        argv = self.launcher(mode, text)
        if private or len(join(self.full_argv(carrying_launcher(argv)))) > ARGUMENT_LIMIT:  # what it may be sent as
            return self.launcher(mode), text + "\n"
        return argv, None

    def ssh_argv(self) -> list[str]:
        """OpenSSH with our options; the user's ssh_config decides the rest."""
        argv = [
            "ssh",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", f"ServerAliveInterval={KEEPALIVE}",
            "-o", "ServerAliveCountMax=4",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={control_dir(self.settings)}/%C",
            "-o", f"ControlPersist={CONTROL_PERSIST}",
        ]
        if self.spec.port:
            argv += ["-p", str(self.spec.port)]
        return argv

    def full_argv(self, argv) -> list[str]:
        """What this machine runs for ``argv`` on the host."""
        if self.is_local:
            return [str(a) for a in argv]
        return [*self.ssh_argv(), "-T", "--", self.spec.ssh_destination, join(argv)]

    def run(self, argv, *, hide=False, stream=None, err_stream=None, stdin: str | None = None, timeout=None, record=True,
            own_session=False):
        """Run ``argv`` on the host; invoke's Result, never raising on a non-zero exit.

        A connection that cannot be made or breaks is a Failure naming the cause (see failure()).
        ``own_session``: out of reach of the terminal's Ctrl+C (see OwnSession).
        """
        if record:
            self.commands.append(summary(argv))
        for _ in range(2):  # as it is; again with the launcher when the host has not kept it
            result = self.local(self.full_argv(argv), hide=hide, stream=stream, err_stream=err_stream, stdin=stdin, timeout=timeout,
                                own_session=own_session)
            if argv[3:4] != [LOADER] or result.exited != exits.NO_PROGRAM or MISSING not in result.stderr:
                break
            if f"{MISSING}false" in result.stderr:
                self._cannot_keep().touch()
            argv = carrying_launcher(argv)  # once per host and version of remote-run
        # A launcher command that ended on its own said so on stderr (CONTROL): then the 255 and
        # any text in there are the run's, not ssh's.
        if not self.is_local and result.exited == exits.SSH and CONTROL not in result.stderr:
            line = failure(self.label, result.stderr)
            if line:
                raise Failure(line)
        return result

    def quick(self, argv, *, stdin: str | None = None, record=True):
        """A short command with hidden output, bounded by REMOTE_RUN_CHECK_TIMEOUT."""
        result = self.run(argv, hide=True, stdin=stdin, timeout=self.settings.check_timeout, record=record)
        if not self.is_local and result.exited == exits.SSH and not result.stdout.strip():
            raise Failure(dropped(self.label))
        return result

    def local(self, argv, *, hide=False, stream=None, err_stream=None, stdin: str | None = None, timeout=None, env=None,
              own_session=False):
        """Run ``argv`` on this machine through invoke's runner (``env`` is added to the environment)."""
        from invoke.exceptions import CommandTimedOut

        kwargs = dict(hide=hide, warn=True, timeout=timeout, in_stream=WholeInput(stdin) if stdin is not None else False, env=env or {})
        if stream is not None:
            kwargs["out_stream"] = stream
        if err_stream is not None:
            kwargs["err_stream"] = err_stream
        try:
            if own_session:
                return OwnSession(self.context).run(join(argv), **kwargs)
            return self.context.run(join(argv), **kwargs)
        except CommandTimedOut:
            raise Failure(f"`{summary(argv)[:80]}` did not finish within {timeout:g} s on {self.label}; the host may be overloaded "
                          "or a tool (nvidia-smi, a full disk) may hang: check it with ssh") from None

    def rsync_path(self, path: str) -> str:
        """How rsync names ``path`` on the host."""
        return path if self.is_local else f"{self.spec.ssh_destination}:{path}"

    def master_running(self) -> bool:
        """Whether this host's ControlMaster is up (``ssh -O check``, a question to the local socket)."""
        return self.local([*self.ssh_argv(), "-O", "check", "--", self.spec.ssh_destination], hide=True, timeout=CONNECT_TIMEOUT).exited == 0

    def forward(self, local: int, remote: int, *, cancel: bool = False):
        """Add (``cancel``: remove) a forward of 127.0.0.1:``local`` here to 127.0.0.1:``remote`` on
        the host, on the live master (``ssh -O forward|cancel -L``); invoke's Result."""
        spec = f"127.0.0.1:{int(local)}:127.0.0.1:{int(remote)}"
        argv = [*self.ssh_argv(), "-O", "cancel" if cancel else "forward", "-L", spec, "--", self.spec.ssh_destination]
        return self.local(argv, hide=True, timeout=CONNECT_TIMEOUT)


def control_dir(settings: Settings) -> Path:
    """The private directory of the ControlMaster sockets: ours, mode 700, created so if missing."""
    path = settings.control_dir
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise Failure(f"cannot create {path} for SSH control sockets ({exc.strerror}); set REMOTE_RUN_CONTROL_DIR to a directory of yours") from None
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise Failure(f"{path} must be a directory only you can access (chmod 700 {path}); it holds SSH control sockets")
    return path


# OpenSSH's messages (regular expressions), first match wins. A dropped link through a master says nothing at all:
# callers that stream (the launcher) treat a missing end-of-command line as a dropped link.
_SSH_ERRORS = [
    (r"Could not resolve hostname|Name or service not known|nodename nor servname",
     "cannot resolve host {name!r} (REMOTE_HOST): it is neither a Host alias in ~/.ssh/config nor a known hostname; add a Host entry or fix REMOTE_HOST"),
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED",
     "the host key of {name} has CHANGED since it was recorded in known_hosts; if the machine was really reinstalled, remove the old key with `ssh-keygen -R` and connect once with `ssh {name}`, otherwise do not connect"),
    (r"Host key verification failed|No ED25519 host key is known|host key is not known",
     "the host key of {name} is not trusted (unknown or changed); connect once with `ssh {name}` to check and accept it"),
    (r"Permission denied \((publickey|password|keyboard|gssapi|hostbased)",
     "{name} refused our SSH key (authentication failed); check IdentityFile in ~/.ssh/config or load the key into ssh-agent, then try `ssh {name}`"),
    (r"Connection refused",
     "cannot reach {name}: connection refused; check that the machine is up and its SSH port is right (`ssh {name}`)"),
    (r"timed out|No route to host|Network is unreachable",
     "cannot reach {name}: the connection timed out or has no route; check the network, VPN or ProxyJump (`ssh {name}`)"),
    (r"Connection (closed|reset)|Broken pipe|connection unexpectedly closed|Control master terminated",
     "the connection to {name} dropped"),
    (r"Bad configuration option|Unsupported option|Bad key types|Can't open user config|Too many authentication failures",
     "ssh cannot use its configuration for {name} ({detail}); fix ~/.ssh/config and check with `ssh {name}`"),
]


def failure(name: str, stderr: str) -> str | None:
    """OpenSSH's error text (or rsync's, which passes it on) as our one line; None if it is not one."""
    for pattern, message in _SSH_ERRORS:
        match = re.search(pattern, stderr or "")  # compiled only when something failed
        if match:
            line = next((l for l in stderr.splitlines() if match.group(0) in l), "")
            return message.format(name=name, detail=line.strip()[:120])
    return None


def dropped(name: str) -> str:
    return f"the connection to {name} dropped"
