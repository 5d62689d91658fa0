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
from pathlib import Path

from . import ship
from .errors import Failure, Kind
from .host import exits
from .host.control import CONTROL, ours
from .runner import QuickLocal
from .settings import Settings
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


class Adopted(QuickLocal):
    """The runner of a command started before it was asked for (Host.prestart): it takes that
    process over instead of starting one."""

    def __init__(self, context, process):
        super().__init__(context)
        self.adopted = process

    def start(self, command, shell, env):
        self.process = self.adopted


class WholeInput(io.StringIO):
    """Data for a command's stdin, handed over in one read.

    Invoke reads a file-like in_stream one character per read, sleeping between reads.
    """

    def read(self, size=-1):
        return super().read()


class Deferred:
    """A command's stdin whose second part comes later: ``first`` at once, then ``rest()`` (called
    in invoke's stdin thread, where it may wait), then the end; ``begin()`` is called once the
    command has started, before anything is read. A command run again (the host had not kept its
    program) gets both again."""

    def __init__(self, first: str, rest, begin=None):
        self.first, self.rest, self.begin = first, rest, begin

    def stream(self):
        return _DeferredStream(self.first, self.rest, self.begin)


class _DeferredStream(io.StringIO):
    def __init__(self, first: str, rest, begin=None):
        super().__init__()
        self.parts, self.rest, self.begin = [first] if first else [], rest, begin

    def read(self, size=-1):
        if self.begin is not None:
            begin, self.begin = self.begin, None
            begin()
        if self.parts:
            return self.parts.pop()
        if self.rest is not None:
            rest, self.rest = self.rest, None
            return rest()
        return ""


def _before(text: str, stdin: str | Deferred | None) -> str | Deferred:
    """``stdin`` with ``text`` first."""
    if isinstance(stdin, Deferred):
        return Deferred(text + stdin.first, stdin.rest, stdin.begin)
    return text + (stdin or "")


class Host:
    """Where remote-run's commands run: ``local`` (this machine) or an SSH host."""

    def __init__(self, settings: Settings, context):
        self.settings = settings
        self.spec = settings.host
        self.context = context
        self.commands: list[str] = []  # what ran, for the run record
        self._early: tuple | None = None  # prestart()'s (argv, own_session, process)

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
        if self.settings.run_environment != "auto":  # docker, none: no venv is built
            return "python3"
        return f"{self.settings.remote_dir}/.venv/bin/python"

    @property
    def uses_venv(self) -> bool:
        return not (self.settings.remote_python or self.is_local) and self.settings.run_environment == "auto"

    def program(self, mode: str, *args: str, keep: bool = True) -> list[str]:
        """argv running the host program (remote_run.host) in ``mode``: standard library only, so
        any python3 will do. On an SSH host it runs what the host kept, unless the host cannot
        keep it (see run()); not ``keep``: nothing is written there, not even the program."""
        if self.is_local:
            return ship.local_argv(self.settings.remote_python or sys.executable, mode, *args)
        try:
            noted = time.time() - self._cannot_keep().stat().st_mtime < 24 * 3600  # then it is asked again
        except FileNotFoundError:
            noted = False
        return ship.remote_argv(self.settings.remote_python or "python3", mode, *args, carry=noted or not keep,
                                keep=keep and not noted)

    def _cannot_keep(self) -> Path:
        """A note, beside the control sockets, that this host cannot keep the launcher (its home is
        not writable): then every command carries it, as the loader would only ask for it again."""
        spec = hashlib.sha256(self.spec.spec.encode()).hexdigest()[:16]
        return control_dir(self.settings) / f"no-launcher-cache-{spec}"

    def program_with(self, mode: str, payload: dict, *, private: bool = False) -> tuple[list[str], str | None]:
        """(argv, stdin) of a launcher command that takes ``payload``.

        On the command line when it can be: ssh spends a round trip before it sends stdin. On
        stdin when it is private (forwarded values, workspace files: the host's process list is
        public) or too long for one argument (128 KiB on Linux, quoted twice on the way).
        """
        text = json.dumps(payload)
        if private or self._early_argv(mode):  # (a command started early reads its payload on stdin)
            return self.program(mode), text + "\n"
        argv = self.program(mode, text)
        # Sized as it goes: a host that has not kept the program gets it carried, and run() moves
        # the payload to stdin then if need be (making the carried form costs every command 15 ms).
        if len(join(self.full_argv(argv))) > ARGUMENT_LIMIT:
            return self.program(mode), text + "\n"
        return argv, None

    def prestart(self, mode: str, *, own_session: bool = False) -> None:
        """Start the command of ``mode`` now, its payload to come on its stdin once run() of that
        command takes it over: the SSH session, the host's Python and the program's imports (35 ms
        on loopback) then overlap this machine's work until then. Not on `local`. A command nothing
        took over ends at close_prestarted(), having done nothing on the host: it never got a payload."""
        if self.is_local or self._early is not None:
            return
        argv = self.program(mode)
        try:
            process = subprocess.Popen(self.full_argv(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, start_new_session=own_session)
        except OSError:  # no ssh: the command says so when it is run
            return
        self._early = (argv, own_session, process)

    def close_prestarted(self) -> None:
        """End a prestart()ed command that nothing took over: the end of its stdin ends it."""
        early, self._early = self._early, None
        if early is not None:
            for pipe in (early[2].stdin, early[2].stdout, early[2].stderr):
                pipe.close()

    def _early_argv(self, mode: str) -> bool:
        return self._early is not None and self._early[0] == self.program(mode)

    def _take_early(self, argv, own_session: bool):
        """The process prestart() started for exactly this command, if it did (and only once)."""
        if self._early is None or self._early[:2] != (argv, own_session):
            return None
        process, self._early = self._early[2], None
        return process

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

    def run(self, argv, *, hide=False, stream=None, err_stream=None, stdin: str | Deferred | None = None, timeout=None,
            record=True, own_session=False):
        """Run ``argv`` on the host; invoke's Result, never raising on a non-zero exit.

        A connection that cannot be made or breaks is a Failure naming the cause (see failure()).
        ``own_session``: out of reach of the terminal's Ctrl+C (see OwnSession).
        """
        if record:
            self.commands.append(summary(argv))
        for _ in range(2):  # as it is; again carrying the program when the host has not kept it
            result = self.local(self.full_argv(argv), hide=hide, stream=stream, err_stream=err_stream, stdin=stdin,
                                timeout=timeout, own_session=own_session, process=self._take_early(argv, own_session))
            if argv[4:5] != [ship.LOADER] or not self.missed_program(result):
                break
            argv = ship.carrying(argv)  # once per host and version of remote-run
            if len(join(self.full_argv(argv))) > ARGUMENT_LIMIT and ship.payload_of(argv) is not None:
                argv, stdin = argv[:-1], _before(argv[-1] + "\n", stdin)  # the payload: too long with the program
        # A launcher command that ended on its own said so on stderr (CONTROL): then the 255 and
        # any text in there are the run's, not ssh's.
        if not self.is_local and result.exited == exits.SSH and CONTROL not in result.stderr:
            found = failure(self.label, result.stderr)
            if found:
                raise found
        return result

    def missed_program(self, result, *, wrapped: bool = False) -> bool:
        """Whether a command found no kept host program (and then nothing was done); notes a host
        that cannot keep it, so that its commands carry the program for a day. ``wrapped``: the
        program ran inside another command (rsync), whose exit status is its own."""
        if (result.exited != exits.NO_PROGRAM and not wrapped) or ship.MISSING not in (result.stderr or ""):
            return False
        if f"{ship.MISSING}false" in result.stderr:
            self._cannot_keep().touch()
        return True

    def failed(self, result, doing: str) -> Failure:
        """The Failure of a host program command that did not run or did not answer: its own last
        line (the problem and fix as the host wrote them) with the kind its exit status says."""
        python = self.settings.remote_python or ("python3" if not self.is_local else "this Python")
        text = (result.stderr or "").strip()
        if result.exited == exits.MISSING or self.interpreter_missing(text):
            if self.settings.remote_python:
                lines = text.splitlines()
                last = next((line for line in lines if self.interpreter_missing(line)),
                            lines[-1] if lines else "not found")[:160]
                return Failure(f"REMOTE_PYTHON={self.settings.remote_python} does not run on {self.label} ({last})",
                               "fix REMOTE_PYTHON or unset it to create a venv", Kind.ENVIRONMENT)
            return Failure(f"{python} is not installed on {self.label}", "install Python 3 there or set REMOTE_PYTHON",
                           Kind.ENVIRONMENT)
        said = ours(text.splitlines())
        if said:
            return Failure(said[-1], kind=Kind.of(result.exited))
        last = text.splitlines()[-1][:200] if text else "no output"
        return Failure(f"{doing} {self.label} failed (exit {result.exited}): {last}", kind=Kind.ENVIRONMENT)

    def interpreter_missing(self, stderr: str) -> bool:
        """Whether the shell found no interpreter to run the host program with."""
        python = self.settings.remote_python or "python3"
        return bool(re.search(re.escape(python) + r"\S*: (?:No such file or directory|(?:command )?not found)",
                              stderr or ""))

    def quick(self, argv, *, stdin: str | Deferred | None = None, record=True):
        """A short command with hidden output, bounded by REMOTE_RUN_CHECK_TIMEOUT."""
        result = self.run(argv, hide=True, stdin=stdin, timeout=self.settings.check_timeout, record=record)
        if not self.is_local and result.exited == exits.SSH and not result.stdout.strip():
            raise Failure(dropped(self.label), kind=Kind.UNREACHABLE)
        return result

    def local(self, argv, *, hide=False, stream=None, err_stream=None, stdin: str | Deferred | None = None,
              timeout=None, env=None, own_session=False, process=None):
        """Run ``argv`` on this machine through invoke's runner (``env`` is added to the environment);
        ``process``: that command, already started (prestart())."""
        from invoke.exceptions import CommandTimedOut

        kwargs = dict(hide=hide, warn=True, timeout=timeout,
                      in_stream=(stdin.stream() if isinstance(stdin, Deferred) else WholeInput(stdin)
                                 if stdin is not None else False), env=env or {})
        if stream is not None:
            kwargs["out_stream"] = stream
        if err_stream is not None:
            kwargs["err_stream"] = err_stream
        try:
            if process is not None:
                return Adopted(self.context, process).run(join(argv), **kwargs)
            if own_session:
                return OwnSession(self.context).run(join(argv), **kwargs)
            return self.context.run(join(argv), **kwargs)
        except CommandTimedOut:
            raise Failure(f"`{summary(argv)[:80]}` did not finish within {timeout:g} s on {self.label}",
                          "the host may be overloaded or a tool (nvidia-smi, a full disk) may hang: check it with ssh",
                          Kind.UNREACHABLE) from None

    def rsync_path(self, path: str) -> str:
        """How rsync names ``path`` on the host."""
        return path if self.is_local else f"{self.spec.ssh_destination}:{path}"

    def master_running(self) -> bool:
        """Whether this host's ControlMaster is up (``ssh -O check``, a question to the local socket)."""
        return self.local([*self.ssh_argv(), "-O", "check", "--", self.spec.ssh_destination], hide=True,
                          timeout=CONNECT_TIMEOUT).exited == 0

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
        raise Failure(f"cannot create {path} for SSH control sockets ({exc.strerror})",
                      "set REMOTE_RUN_CONTROL_DIR to a directory of yours", Kind.ENVIRONMENT) from None
    if exposed(path.lstat()):
        raise Failure(f"{path} must be a directory only you can access: it holds SSH control sockets",
                      f"chmod 700 {path}", Kind.ENVIRONMENT)
    return path


def exposed(info) -> str:
    """What makes a directory with lstat ``info`` unfit for the SSH control sockets ("" when it is
    this user's and nobody else can use it); doctor asks the same."""
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISDIR(info.st_mode):
        return "not a directory"
    return f"owner uid {info.st_uid}, mode {mode:04o}" if info.st_uid != os.getuid() or mode & 0o077 else ""


# OpenSSH's messages (regular expressions) and our (problem, fix) for each, first match wins. A
# dropped link through a master says nothing at all: callers that stream (the launcher) treat a
# missing end-of-command line as a dropped link.
_SSH_ERRORS = [
    (r"Could not resolve hostname|Name or service not known|nodename nor servname",
     "cannot resolve host {name!r} (REMOTE_HOST): it is neither a Host alias in ~/.ssh/config nor a known hostname",
     "add a Host entry or fix REMOTE_HOST"),
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED",
     "the host key of {name} has CHANGED since it was recorded in known_hosts",
     "if the machine was really reinstalled, remove the old key with `ssh-keygen -R` "
     "and connect once with `ssh {name}`, otherwise do not connect"),
    (r"Host key verification failed|No ED25519 host key is known|host key is not known",
     "the host key of {name} is not trusted (unknown or changed)",
     "connect once with `ssh {name}` to check and accept it"),
    (r"Permission denied \((publickey|password|keyboard|gssapi|hostbased)",
     "{name} refused our SSH key (authentication failed)",
     "check IdentityFile in ~/.ssh/config or load the key into ssh-agent, then try `ssh {name}`"),
    (r"Connection refused",
     "cannot reach {name}: connection refused",
     "check that the machine is up and its SSH port is right (`ssh {name}`)"),
    (r"timed out|No route to host|Network is unreachable",
     "cannot reach {name}: the connection timed out or has no route",
     "check the network, VPN or ProxyJump (`ssh {name}`)"),
    (r"Connection (closed|reset)|Broken pipe|connection unexpectedly closed|Control master terminated",
     "the connection to {name} dropped", ""),
    (r"Bad configuration option|Unsupported option|Bad key types|Can't open user config|"
     r"Too many authentication failures",
     "ssh cannot use its configuration for {name} ({detail})", "fix ~/.ssh/config and check with `ssh {name}`"),
]


def failure(name: str, stderr: str) -> Failure | None:
    """OpenSSH's error text (or rsync's, which passes it on) as our Failure; None if it is not one."""
    for pattern, problem, fix in _SSH_ERRORS:
        match = re.search(pattern, stderr or "")  # compiled only when something failed
        if match:
            line = next((each for each in stderr.splitlines() if match.group(0) in each), "")
            return Failure(problem.format(name=name, detail=line.strip()[:120]), fix.format(name=name),
                           Kind.UNREACHABLE)
    return None


def dropped(name: str) -> str:
    """The problem of a connection that broke (Kind.UNREACHABLE)."""
    return f"the connection to {name} dropped"
