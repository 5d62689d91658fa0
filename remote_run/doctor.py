"""`inv doctor`: everything a run needs, here and on the host, in one look; one line per check with
✓ / ✗ / ! (– where a check does not apply) and, for each problem, the fix.

This machine's checks run here; the host's in one remote command, the host program's `doctor`
(remote_run/host/doctor.py), which only reads. Also what `inv init`
asks of OpenSSH: the Host aliases of ~/.ssh/config and their effective values (`ssh -G`).
"""

from __future__ import annotations

import glob
import json
import os
import re
import socket
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import environment, records, ship
from . import gpu as gpus
from . import sync as syncing
from .errors import Failure, Kind
from .host import FLOOR, exits, installer, tree
from .output import say, show
from .transport import Host, exposed

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MARKS = {OK: "✓", WARN: "!", FAIL: "✗", SKIP: "–"}
ASCII_MARKS = {OK: "+", WARN: "!", FAIL: "x", SKIP: "-"}
LOCAL, HOST = "this machine", "host"

GB = 1e9
MIN_RSYNC = (3, 1)  # --info=progress2
INDEX_TIMEOUT = 3.0  # seconds the host may take to open a connection to a package index
# PyTorch's CUDA wheel indexes (download.pytorch.org/whl/cuXYZ): a driver runs wheels built for its
# CUDA version or older, so the suggestion is the newest of these the driver supports.
CUDA_WHEELS = ((11, 8), (12, 1), (12, 4), (12, 6), (12, 8), (12, 9), (13, 0))
TORCH_WHEELS = "https://download.pytorch.org/whl/"


@dataclass
class Check:
    group: str  # LOCAL or HOST
    name: str
    status: str  # OK, WARN, FAIL, SKIP
    text: str
    fix: str = ""


@dataclass
class Report:
    host: str
    checks: list = field(default_factory=list)
    gpus: list = field(default_factory=list)
    cuda: str | None = None
    suggested_torch_index_url: str | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> list:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def warnings(self) -> list:
        return [c for c in self.checks if c.status == WARN]

    def data(self) -> dict:
        return {"ok": not self.failed, **asdict(self)}


# ------------------------------------------------------------------------------------ the whole

def examine(host: Host) -> Report:
    """Every check: this machine's here, the host's in one remote command beside them."""
    started = time.perf_counter()
    s = host.settings
    report = Report(host=s.host.spec)
    local = [check_ssh(host), check_rsync(host)]
    if not host.is_local:
        local.append(check_control_dir(s))  # before the remote command, which creates the directory
    with ThreadPoolExecutor(max_workers=1) as pool:
        remote = pool.submit(host_checks, host)
        if not host.is_local:
            local.append(check_resolves(host))
        local += [check_workspace(host), *check_sync(s)]
        checks, data = remote.result()
    report.checks = local + checks
    if data and data.get("gpu"):
        report.gpus = data["gpu"]["gpus"]
        report.cuda = data["gpu"].get("cuda")
        report.suggested_torch_index_url = suggest_index(report.cuda)
    report.seconds = time.perf_counter() - started
    return report


def conclude(report: Report, as_json: bool = False) -> None:
    """Print the report; a Failure (exit 1) when any check failed."""
    show(json.dumps(report.data(), indent=1) if as_json else render(report))
    failed = report.failed
    if failed:
        names = ", ".join(c.name if c.group == LOCAL else f"{c.name} on {report.host}" for c in failed)
        raise Failure(f"{len(failed)} of {len(report.checks)} checks failed ({names})",
                      "fix them as shown above and run `inv doctor` again", Kind.RUN)
    warned = len(report.warnings)
    say(f"nothing failed ({len(report.checks)} checks{f', {warned} warnings' if warned else ''}, "
        f"{report.seconds:.2f} s)")


def render(report: Report) -> str:
    marks = MARKS if _can_print("".join(MARKS.values())) else ASCII_MARKS
    width = max(len(c.name) for c in report.checks)
    lines, group = [], None
    for c in report.checks:
        if c.group != group:
            group = c.group
            lines.append(group if group == LOCAL
                         else f"host {report.host}" + (" (this machine)" if report.host == "local" else ""))
        line = f"  {marks[c.status]} {c.name.ljust(width)}  {c.text}"
        lines.append(line + (f" — fix: {c.fix}" if c.fix else ""))
    return "\n".join(lines)


def _can_print(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


# ---------------------------------------------------------------------------- this machine

def _version_line(host: Host, argv: list[str]) -> tuple[int, str]:
    done = host.local(argv, hide=True, timeout=10)
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return done.exited, lines[0] if lines else ""


def check_ssh(host: Host) -> Check:
    code, line = _version_line(host, ["ssh", "-V"])
    if code == 0 and line:
        return Check(LOCAL, "ssh", OK, line.split(",")[0])
    if host.is_local:
        return Check(LOCAL, "ssh", SKIP, "not installed (not needed for REMOTE_HOST=local)")
    return Check(LOCAL, "ssh", FAIL, "the OpenSSH client `ssh` is not installed here",
                 "install it (apt-get install openssh-client; macOS has it)")


def check_rsync(host: Host) -> Check:
    code, line = _version_line(host, ["rsync", "--version"])
    if code != 0 or not line:
        return Check(LOCAL, "rsync", FAIL, "rsync is not installed here (sync uses it)",
                     "install rsync 3 (apt-get install rsync, brew install rsync)")
    text, match = rsync_version(line)
    if match and (int(match.group(1)), int(match.group(2))) < MIN_RSYNC:
        return Check(LOCAL, "rsync", FAIL, f"{text} is too old: sync needs rsync 3.1 or newer",
                     "install rsync 3 (brew install rsync on macOS) and put it first on PATH")
    return Check(LOCAL, "rsync", OK, text)


def rsync_version(line: str):
    """("rsync 3.2.7 (protocol 31)", the version match) from the first line of `rsync --version`."""
    match = re.search(r"version\s+v?(\d+)\.(\d+)(?:\.(\d+))?", line)
    protocol = re.search(r"protocol version (\d+)", line)
    text = f"rsync {'.'.join(g for g in match.groups() if g)}" if match else line
    return text + (f" (protocol {protocol.group(1)})" if protocol else ""), match


def ssh_config(destination: str, port: int | None = None, host: Host | None = None) -> dict | None:
    """OpenSSH's effective configuration for ``destination`` (`ssh -G`), or None when ssh refuses it."""
    import subprocess

    argv = ["ssh", "-G", *(["-p", str(port)] if port else []), "--", destination]
    try:
        if host is not None:
            done = host.local(argv, hide=True, timeout=10)
            code, out, err = done.exited, done.stdout, done.stderr
        else:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                                  stdin=subprocess.DEVNULL, check=False)
            code, out, err = done.returncode, done.stdout, done.stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    if code != 0:
        return {"error": (err.strip().splitlines() or ["ssh -G failed"])[-1][:160]}
    found = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        found.setdefault(key.lower(), value.strip())
    return found


def check_resolves(host: Host) -> Check:
    spec = host.spec
    config = ssh_config(spec.ssh_destination, spec.port, host)
    if config is None:
        return Check(LOCAL, "REMOTE_HOST", FAIL, f"`ssh -G {spec.ssh_destination}` did not run",
                     "install the OpenSSH client")
    if "error" in config:
        return Check(LOCAL, "REMOTE_HOST", FAIL, f"ssh cannot use its configuration for {spec.spec}: {config['error']}",
                     "fix ~/.ssh/config and check with `ssh -G " + spec.ssh_destination + "`")
    name, user, port = config.get("hostname", spec.name), config.get("user", ""), config.get("port", "22")
    where = f"{spec.spec} → {user + '@' if user else ''}{name}:{port}"
    hop = next((f"{key} {config[key]}" for key in ("proxyjump", "proxycommand")
                if config.get(key, "none") != "none"), "")
    if hop:
        return Check(LOCAL, "REMOTE_HOST", OK,
                     f"{where} (via {hop.replace('proxyjump', 'ProxyJump').replace('proxycommand', 'ProxyCommand')})")
    answer = _resolve(name, port)
    if answer is True:
        return Check(LOCAL, "REMOTE_HOST", OK, where)
    return Check(LOCAL, "REMOTE_HOST", FAIL, f"cannot resolve {name!r} (REMOTE_HOST={spec.spec}): {answer}",
                 "add a Host entry for it to ~/.ssh/config or fix REMOTE_HOST (`inv init` lists your aliases)")


def _resolve(name: str, port: str):
    """True, or why ``name`` does not resolve (a DNS lookup may hang: at most 5 s).

    A daemon thread of its own, not concurrent.futures: the interpreter waits at exit for an
    executor's threads, and a hung lookup would hold `inv doctor` open after its report."""
    answer = ["no answer within 5 s"]

    def look():
        try:
            socket.getaddrinfo(name, int(port) if port.isdigit() else 22, type=socket.SOCK_STREAM)
            answer[0] = True
        except (OSError, UnicodeError) as exc:
            answer[0] = getattr(exc, "strerror", None) or str(exc)

    thread = threading.Thread(target=look, daemon=True)
    thread.start()
    thread.join(5)
    return answer[0]


def check_control_dir(settings) -> Check:
    path = settings.control_dir
    try:
        info = path.lstat()
    except FileNotFoundError:
        return Check(LOCAL, "control dir", OK, f"{path} will be created, mode 700 (for SSH ControlMaster sockets)")
    except OSError as exc:
        return Check(LOCAL, "control dir", FAIL, f"{path}: {exc.strerror}",
                     "set REMOTE_RUN_CONTROL_DIR to a directory of yours")
    what = exposed(info)
    if what:
        return Check(LOCAL, "control dir", FAIL,
                     f"{path} is not private ({what}): others could use your SSH connections",
                     f"chmod 700 {path} if it is yours, else set REMOTE_RUN_CONTROL_DIR to a directory of yours")
    return Check(LOCAL, "control dir", OK, f"{path} is private (mode {stat.S_IMODE(info.st_mode):04o})")


def check_workspace(host: Host) -> Check:
    workspace = host.settings.workspace
    git = records.git_state(host.local, workspace)
    if git["commit"]:
        state = "uncommitted changes" if git["dirty"] else "clean"
        return Check(LOCAL, "workspace", OK, f"{workspace} (git checkout at {git['commit'][:12]}, {state})")
    return Check(LOCAL, "workspace", OK, f"{workspace} (not a git checkout: run records will not name a commit)")


def check_sync(settings) -> list[Check]:
    """What a sync sends and what .gitignore leaves out (one walk of the workspace for both)."""
    try:
        plan = syncing.plan(settings)
    except OSError as exc:
        return [Check(LOCAL, "sync size", FAIL, f"cannot walk {settings.workspace}: {exc}",
                      "check the permissions of the workspace")]
    except Failure as exc:
        return [Check(LOCAL, "sync size", FAIL, exc.problem, exc.fix)]
    return [check_sync_size(settings, plan), check_gitignored(settings, plan)]


def check_gitignored(settings, plan) -> Check:
    if not settings.sync_gitignore:
        return Check(LOCAL, "gitignore", OK, "SYNC_GITIGNORE=0: files git ignores are synced like any other")
    text = syncing.gitignored_text(plan, settings.workspace)
    return Check(LOCAL, "gitignore", OK, text or "git ignores nothing the sync would send")


def check_sync_size(settings, plan) -> Check:
    """What a sync sends (the same walk and rules as sync), and whether it passes sync's guardrails."""
    files = [(rel, entry[1]) for rel, entry in plan.entries.items() if entry[0] == tree.FILE]
    total = sum(size for _, size in files)
    text = f"{syncing._count(len(files))}, {syncing._size(total)}"
    folders = syncing.heavy_folders(files, by_size=True)
    if folders:
        text += "; most of it in " + ", ".join(f"{rel}/ ({syncing._size(size)})" for rel, _, size in folders)
    text = {"clean": f"synced before from here, nothing changed since ({text})",
            "delta": f"synced before from here; {plan.delta_files} small changes to send ({text})"}.get(
                plan.kind, f"a full sync sends {text}")
    over = syncing.over_limits(settings, len(files), total)
    if over:
        leave = f"add /{folders[0][0]}/ to .remoteignore" if folders else "leave folders out with .remoteignore"
        return Check(LOCAL, "sync size", WARN, f"{text}: over {over}, so a sync stops",
                     f"{leave}, or pass --force once; `inv sync --dry-run` lists it all")
    notes = syncing.notices(plan, settings.workspace, once=False)
    if notes:
        return Check(LOCAL, "sync size", WARN, f"{text}; {notes[0].split('; if a run')[0]}",
                     "if a run needs it, " + notes[0].split("; if a run needs it, ")[-1])
    return Check(LOCAL, "sync size", OK, text)


# --------------------------------------------------------------------------------- the host

def payload(host: Host) -> dict:
    s = host.settings
    needs_torch = host.uses_venv and bool(s.torch_packages) and bool(s.torch_index_url)
    project = environment.read_project(s.workspace) if host.uses_venv else environment.Project()
    return {"root": s.remote_dir, "venv": host.uses_venv, "connect_timeout": INDEX_TIMEOUT,
            "torch_index": s.torch_index_url if needs_torch else "",
            "project_indexes": list(project.indexes),  # what bootstrap's uv uses instead of pip's index
            "gpu": gpus.spec(s, cpu_ok=False, allow_busy=False)}


def host_checks(host: Host) -> tuple[list, dict | None]:
    """The host's checks, from one remote command; ``data`` is what it answered (None if nothing)."""
    s = host.settings
    argv = host.program("doctor", json.dumps(payload(host)), keep=False)  # doctor changes nothing there
    python = argv[0]  # the interpreter remote-run's host side uses there
    try:
        was_up = not host.is_local and host.master_running()
        started = time.perf_counter()
        result = host.run(argv, hide=True, timeout=s.check_timeout, record=False)
        elapsed = time.perf_counter() - started
    except Failure as exc:
        return [Check(HOST, "connection", FAIL, exc.problem,
                      exc.fix or f"check `ssh {host.spec.ssh_destination}` by hand")], None
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return [_no_answer(host, result, python)], None
    return interpret(host, data, elapsed, was_up), data


def _no_answer(host: Host, result, python: str) -> Check:
    text = (result.stderr or "").strip()
    last = text.splitlines()[-1][:200] if text else "no output"
    if result.exited == exits.ENVIRONMENT and ship.TOO_OLD in last:  # the guard first in every host command
        return Check(HOST, "python", FAIL, last.removeprefix("remote-run: ").partition(": install")[0],
                     f"install Python {FLOOR[0]}.{FLOOR[1]} or newer there, or set REMOTE_PYTHON to one")
    if result.exited == exits.MISSING or "No such file or directory" in text or "not found" in text:
        if host.settings.remote_python:
            return Check(HOST, "python", FAIL,
                         f"REMOTE_PYTHON={host.settings.remote_python} does not run on {host.label} ({last})",
                         "fix REMOTE_PYTHON, or unset it so bootstrap builds a venv with python3")
        return Check(HOST, "python", FAIL,
                     f"{python} is not installed on {host.label} "
                     f"(remote-run's host side needs Python {FLOOR[0]}.{FLOOR[1]}+)",
                     "install python3 there (apt-get install python3), or set REMOTE_PYTHON to an interpreter it has")
    return Check(HOST, "connection", FAIL, f"the checks on {host.label} did not answer (exit {result.exited}: {last})",
                 f"run `ssh {host.spec.ssh_destination} python3 -V` by hand to see what is wrong")


def interpret(host: Host, data: dict, elapsed: float, was_up: bool) -> list:
    """One Check per finding of the host's report (None: does not apply here)."""
    found = [_connection(host, data, elapsed, was_up)]
    found += [check(host, data)
              for check in (_host_rsync, _python, _uv, _disk, _remote_dir, _index, _gpu, _gpu_queue, _torch_wheels,
                            _docker)]
    return [c for c in found if c is not None]


def _connection(host, data, elapsed, was_up):
    if host.is_local:
        return Check(HOST, "connection", OK,
                     f"this machine ({data['user']}@{data['hostname']}, {data['os']}): no SSH needed")
    trip = max(0.0, elapsed - data.get("seconds", 0.0))
    how = "over the open connection" if was_up else "with a new connection: handshake and login"
    return Check(HOST, "connection", OK,
                 f"{data['user']}@{data['hostname']} ({data['os']}); one command took {trip:.2f} s {how}")


def _host_rsync(host, data):
    if host.is_local:
        return None  # the same rsync as this machine's
    found = data["rsync"]
    if not found["path"]:
        return Check(HOST, "rsync", FAIL,
                     f"rsync is not on the PATH of {host.label} ({found.get('path_searched', '')}): sync cannot run",
                     "install rsync there (apt-get install rsync), "
                     "or put it on the PATH non-interactive ssh sessions get")
    return Check(HOST, "rsync", OK, rsync_version(found["version"])[0] if found["version"] else found["path"])


def _python(host, data):
    py = data["python"]
    version = tuple(int(p) for p in py["version"].split(".")[:2])
    s = host.settings
    if host.uses_venv:
        old = version < (3, 10)
        if data["uv"]["path"]:
            text = f"python3 {py['version']}; bootstrap makes REMOTE_DIR/.venv with uv"
        elif py["ensurepip"]:
            text = f"python3 {py['version']} with venv and ensurepip; bootstrap makes REMOTE_DIR/.venv"
        else:
            return Check(HOST, "python", FAIL,
                         f"python3 {py['version']} cannot make a venv on {host.label}: ensurepip is missing",
                         "install python3-venv there (apt-get install python3-venv), or uv, "
                         "or set REMOTE_PYTHON to an interpreter that has your packages")
        if old:
            return Check(HOST, "python", WARN, text + ": current torch releases need Python 3.10 or newer",
                         "install a newer python3 there, or uv (bootstrap's `uv venv` can use one uv installs)")
        wanted = environment.read_project(s.workspace).python
        release = ".".join(wanted.get("wanted", "").split(".")[:2])
        if (wanted.get("by") == ".python-version" and re.fullmatch(r"\d+\.\d+", release)
                and release != ".".join(py["version"].split(".")[:2]) and s.bootstrap_python_downloads == "never"):
            return Check(HOST, "python", WARN,
                         f"{text}, but .python-version wants {wanted['wanted']}: bootstrap needs another Python "
                         "there (uv looks for one) or refuses",
                         f"install Python {wanted['wanted']} there, or set BOOTSTRAP_PYTHON_DOWNLOADS=automatic")
        return Check(HOST, "python", OK, text)
    if s.run_environment == "docker":
        return Check(HOST, "python", OK, f"python3 {py['version']} runs remote-run's host side; runs start their own "
                                         "containers (RUN_ENVIRONMENT=docker): no venv is built")
    who = f"REMOTE_PYTHON={s.remote_python}" if s.remote_python else f"{py['executable']} (remote-run's own Python)"
    if py.get("torch"):
        return Check(HOST, "python", OK, f"{who}, Python {py['version']}, torch {py['torch']}; runs use it (no venv)")
    fix = (f"install torch for it ({py['executable']} -m pip install torch), "
           "or unset REMOTE_PYTHON so bootstrap builds a venv" if s.remote_python
           else f"{py['executable']} -m pip install torch (pin a version, see the README's install section)")
    return Check(HOST, "python", WARN,
                 f"{who}, Python {py['version']}: torch is not installed, "
                 "so train-hlb and train-david cannot run (other scripts can)", fix)


def _uv(host, data):
    found = data["uv"]
    if found["path"]:
        return Check(HOST, "uv", OK, f"{found['version'] or 'uv'} ({found['path']})")
    if host.settings.run_environment != "auto":
        return Check(HOST, "uv", SKIP, f"not installed; not needed (RUN_ENVIRONMENT={host.settings.run_environment}: "
                                       "no venv is built)")
    if not host.uses_venv:
        return Check(HOST, "uv", SKIP,
                     "not installed; not needed (runs use REMOTE_PYTHON or remote-run's own Python, no venv is built)")
    if host.settings.bootstrap_installer == "pip" and (host.settings.workspace / "uv.lock").is_file():
        return Check(HOST, "uv", FAIL, "the workspace's uv.lock is installed with uv sync, and BOOTSTRAP_INSTALLER=pip "
                                       "never uses uv", "set BOOTSTRAP_INSTALLER=auto")
    return Check(HOST, "uv", OK, f"not installed yet: the first bootstrap installs it into REMOTE_DIR/{installer.TOOL} "
                                 "with the host's pip (from the package index below), or builds the venv with pip")


def _disk(host, data):
    disk, need = data["disk"], host.settings.doctor_min_free_gb
    if "error" in disk:
        return Check(HOST, "disk", FAIL, f"cannot read the free space at {disk['where']}: {disk['error']}",
                     "check the directory with `df -h` on the host")
    free = disk["free_bytes"] / GB
    where = f"{disk['mount']} (REMOTE_DIR's disk)"
    if need and free < need:
        return Check(HOST, "disk", FAIL, f"{free:.1f} GB free at {where}, less than DOCTOR_MIN_FREE_GB={_number(need)}",
                     "free space there (the venv, datasets and checkpoints need room), "
                     "choose a REMOTE_DIR on a bigger disk, or lower DOCTOR_MIN_FREE_GB")
    return Check(HOST, "disk", OK,
                 f"{free:.1f} GB free at {where}" + (f" (at least {_number(need)} GB wanted)" if need else ""))


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:g}"


def _remote_dir(host, data):
    found, root = data["remote_dir"], host.settings.remote_dir
    state = found["state"]
    other = "choose another REMOTE_DIR (e.g. /tmp/<project>_remote_<you>) in .env"
    owner = f"owner {found.get('owner')}, mode {found.get('mode')}"
    if state == "absent":
        if found["writable"]:
            return Check(HOST, "REMOTE_DIR", OK,
                         f"{root} does not exist yet; the first sync creates it (in {found['parent']})")
        return Check(HOST, "REMOTE_DIR", FAIL,
                     f"{root} does not exist and {data['user']} cannot create it in {found['parent']}",
                     "choose a REMOTE_DIR under a directory you can write, such as /tmp")
    if state == "ours":
        from . import checkout
        from .host.owner import shown

        runs = f", {found['runs']} runs" if found.get("runs") else ""
        text = f"{root} is remote-run's ({owner}{', synced' if found.get('synced') else ''}{runs})"
        record = found.get("checkout")
        if record and not checkout.is_ours(host.settings, record):
            return Check(HOST, "REMOTE_DIR", WARN, f"{text} and mirrors another checkout ({shown(record)})",
                         "a sync from here is refused: set REMOTE_DIR to another path, or take it over with "
                         "`inv sync --take-over`")
        return Check(HOST, "REMOTE_DIR", OK, text + ("; it mirrors this checkout" if record else ""))
    if state == "empty":
        return Check(HOST, "REMOTE_DIR", OK, f"{root} exists, empty and yours ({owner}); the first sync claims it")
    texts = {
        "home": (f"REMOTE_DIR={root} is the remote home directory ({found.get('home')}) or a parent of it; "
                 "sync refuses it",
                 "use a directory of its own, such as /tmp/<project>_remote"),
        "foreign": (f"{root} is someone else's ({owner}; you are {found.get('me')}): sync cannot use it", other),
        "writable": (f"{root} can be written by other users ({owner}): anyone could change what runs",
                     other + f" (or `chmod go-w {root}` if it is yours)"),
        "symlink": (f"{root} is a symlink to {found.get('target')} ({owner}): not safe on a shared host", other),
        "notdir": (f"{root} exists and is not a directory ({owner})", other),
        "ancestor": (f"{root} is inside {found.get('above')} ({owner}), which another user can change: "
                     "they could swap its files", other),
        "unclaimed": (f"{root} is not empty and was not created by remote-run ({owner}); "
                      "sync refuses it rather than delete its files", other),
        "unreadable": (f"{root} cannot be read: {found.get('error')}", other),
    }
    text, fix = texts.get(state, (f"{root}: unexpected state {state}", other))
    return Check(HOST, "REMOTE_DIR", FAIL, text, fix)


def needs_index(host: Host) -> str:
    """What bootstrap would install from a package index ('' for nothing)."""
    s = host.settings
    if not host.uses_venv:
        return ""
    project = environment.read_project(s.workspace, s.bootstrap_extras, s.bootstrap_groups)
    torch, extra, _ = environment.packages(s, project)
    own = {"lock": ["the project's uv.lock"], "pyproject": ["the project (pyproject.toml)"]}.get(project.kind, [])
    if project.kind != "lock" and (s.workspace / "requirements.txt").is_file():
        own.append("requirements.txt")
    return " ".join([*own, *torch, *extra])


def _index(host, data):
    index, results = data["index"], data["indexes"]
    wanted = needs_index(host)
    reached, missed = [], []
    for result in results:
        if result is None:
            missed.append(f"no answer within {INDEX_TIMEOUT:g} s")
            continue
        name = result["url"] if result["kind"] == "path" else f"{result['host']}:{result['port']}"
        name = f"{result['label']} {name}" + (f" via proxy {result['proxy']}" if result.get("proxy") else "")
        if result["ok"]:
            reached.append(name + (f" ({result['seconds'] * 1000:.0f} ms)" if "seconds" in result else ""))
        else:
            missed.append(f"{name}: {result.get('error', 'missing')}")
    bootstrap = f"bootstrap installs {wanted}" if wanted else "bootstrap installs nothing now (no venv, or no packages)"
    if index.get("no_index"):
        status = WARN if wanted else OK
        return Check(HOST, "package index", status,
                     f"pip on the host is set to no-index ({index['source']}); {bootstrap} from its find-links only"
                     + (f"; reachable: {', '.join(reached)}" if reached else ""),
                     "" if status == OK else "make sure its find-links hold them, or allow an index")
    if not missed:
        return Check(HOST, "package index", OK, f"reachable from the host: {', '.join(reached)}")
    fix = ("open outbound HTTPS from the host (or set HTTPS_PROXY in its environment), point pip at a mirror "
           "(index-url in its pip.conf; TORCH_INDEX_URL=file:///… for torch), "
           "or set REMOTE_PYTHON to an interpreter that has the packages")
    text = (f"not reachable from the host: {'; '.join(missed)}"
            + (f" (reachable: {', '.join(reached)})" if reached else ""))
    if wanted:
        return Check(HOST, "package index", FAIL, f"{text}: {bootstrap} and would fail", fix)
    return Check(HOST, "package index", WARN, f"{text}; {bootstrap}, but the playbook assumes outbound internet", fix)


def _gpu_queue(host, data):
    """This user's folder in the host's GPU queue, when it is there and not theirs."""
    report = data.get("gpu") or {}
    if not report.get("queue_folder"):
        return None
    return Check(HOST, "GPU queue", WARN, gpus.queue_folder(report, host.label) + ": --wait runs stop, "
                 "and your runs' GPU holds are not visible to other users", "ask its owner or the host's admin to "
                 "remove it")


def _gpu(host, data):
    report = data.get("gpu")
    s = host.settings
    limit = gpus.host_limit(s.check_timeout)
    versions = ", ".join(f"{label} {report[key]}" for key, label in (("driver", "driver"), ("cuda", "CUDA"))
                         if report.get(key))
    state = report["state"]
    if state in ("ok", "busy") and report["gpus"]:
        names: dict[str, int] = {}
        for g in report["gpus"]:
            names[g["name"]] = names.get(g["name"], 0) + 1
        kinds = ", ".join(f"{n} × {name}" for name, n in names.items())
        usage = "; ".join(f"GPU {g['index']}: {g['memory_used']}/{g['memory_total']} MiB, {g['utilization']} %, "
                          + (", ".join([_process(p) for p in g["processes"]]
                                       + ([f"held by {g['held_by']}"] if g.get("held_by") else [])) or "free")
                          for g in report["gpus"])
        text = f"{kinds}{f', {versions}' if versions else ''}; {usage}"
        if state == "busy":
            busy = ", ".join(str(i) for i in report["busy"])
            fix = gpus.failure(report, host.label, s.cuda_visible_devices, limit).fix
            return Check(HOST, "GPU", FAIL,
                         f"GPU {busy} (CUDA_VISIBLE_DEVICES={s.cuda_visible_devices or 'all'}) "
                         f"is in use by another job: {text}", fix)
        return Check(HOST, "GPU", OK, text)
    found = gpus.failure(report, host.label, s.cuda_visible_devices, limit)
    if host.is_local:
        return Check(HOST, "GPU", WARN,
                     f"{found.problem}: runs here need --cpu-ok (fine for the quickstart)", found.fix)
    return Check(HOST, "GPU", FAIL, found.problem + (f" ({versions})" if versions else ""), found.fix)


def _process(p: dict) -> str:
    user = f", user {p['user']}" if p.get("user") else ""
    return f"pid {p['pid']} {p['name']} ({p['memory']} MiB{user})"


def cuda_tag(url: str) -> tuple[int, int] | str | None:
    """(major, minor) of a PyTorch CUDA index URL (…/whl/cu121 → (12, 1)), "cpu"/"rocm", or None."""
    match = re.search(r"/whl/(?:[a-z]+/)?(cu(\d+)(\d)|cpu|rocm[0-9.]*)/?$", url or "")
    if not match:
        return None
    if match.group(2):
        return int(match.group(2)), int(match.group(3))
    return "cpu" if match.group(1) == "cpu" else "rocm"


def suggest_index(cuda: str | None) -> str | None:
    """The PyTorch wheel index for the newest CUDA the driver supports (CUDA 12.4 → …/whl/cu124)."""
    match = re.match(r"(\d+)\.(\d+)", cuda or "")
    if not match:
        return None
    driver = (int(match.group(1)), int(match.group(2)))
    fitting = [v for v in CUDA_WHEELS if v <= driver]
    return f"{TORCH_WHEELS}cu{fitting[-1][0]}{fitting[-1][1]}" if fitting else None


def _torch_wheels(host, data):
    s = host.settings
    report = data.get("gpu") or {}
    if not (host.uses_venv and s.torch_packages and s.torch_index_url) or not report.get("cuda"):
        return None
    tag, suggested = cuda_tag(s.torch_index_url), suggest_index(report["cuda"])
    fix = f"set TORCH_INDEX_URL={suggested} in .env" if suggested else "upgrade the NVIDIA driver"
    if tag is None:
        return Check(HOST, "torch wheels", OK,
                     f"TORCH_INDEX_URL={s.torch_index_url} "
                     f"(not a PyTorch CUDA index; the driver supports CUDA {report['cuda']})")
    if tag in ("cpu", "rocm"):
        return Check(HOST, "torch wheels", WARN,
                     f"TORCH_INDEX_URL is PyTorch's {tag} index: torch will not use the NVIDIA GPU", fix)
    driver = tuple(int(p) for p in report["cuda"].split(".")[:2])
    wheel = f"CUDA {tag[0]}.{tag[1]}"
    if tag[0] > driver[0]:
        return Check(HOST, "torch wheels", FAIL,
                     f"TORCH_INDEX_URL has {wheel} wheels, which the driver (CUDA {report['cuda']}) cannot run", fix)
    if tag > driver:
        return Check(HOST, "torch wheels", WARN,
                     f"TORCH_INDEX_URL has {wheel} wheels, newer than the driver's CUDA {report['cuda']}: "
                     "some kernels may fail", fix)
    return Check(HOST, "torch wheels", OK,
                 f"TORCH_INDEX_URL has {wheel} wheels; the driver supports CUDA {report['cuda']}")


def _docker(host, data):
    found = data["docker"]
    state = found.get("state")
    problem = gpus.docker(found, host.label)
    if problem is not None and host.settings.run_environment == "docker":  # then runs cannot work
        return Check(HOST, "docker", FAIL, f"{problem.problem}, but runs start containers (RUN_ENVIRONMENT=docker)",
                     problem.fix)
    if state == "missing":
        return Check(HOST, "docker", SKIP,
                     "not installed (optional: remote-run does not use it; Docker-based examples do)")
    version = found.get("version") or "docker"
    if problem is None:
        return Check(HOST, "docker", OK, f"{version}; {gpus.docker_line(found, host.label)}")
    if state == "noruntime" and not (data.get("gpu") or {}).get("gpus"):
        return Check(HOST, "docker", OK, f"{version}; no NVIDIA runtime (and no GPU)")
    return Check(HOST, "docker", WARN, f"{version}; {problem.problem}", problem.fix)


# --------------------------------------------------------------------------- ssh_config, for init

def ssh_aliases(home: Path | None = None, limit: int = 50) -> list[str]:
    """The Host names of ~/.ssh/config and the files it Includes, in order (patterns left out)."""
    ssh_dir = (home or Path.home()) / ".ssh"
    found: list[str] = []

    def read(path: Path, depth: int) -> None:
        if depth > 16:
            return
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        for line in text.splitlines():
            words = line.strip().replace("=", " ", 1).split()
            if not words or words[0].startswith("#"):
                continue
            keyword = words[0].lower()
            if keyword == "host":
                for name in words[1:]:
                    if not any(ch in name for ch in "*?!") and name not in found:
                        found.append(name)
            elif keyword == "include":
                for pattern in words[1:]:
                    pattern = os.path.expanduser(pattern)
                    pattern = pattern if os.path.isabs(pattern) else str(ssh_dir / pattern)
                    for match in sorted(glob.glob(pattern)):
                        read(Path(match), depth + 1)

    read(ssh_dir / "config", 0)
    return found[:limit]
