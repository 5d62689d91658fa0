"""`inv bootstrap` on the host: make REMOTE_DIR/.venv current with uv, or with pip when uv cannot
be had, showing progress while the installer works and naming what failed in one line.

Its payload: root, stamp, force, installer (auto, uv or pip), torch_index, torch and extra
(package lists), tick (seconds of silence before a progress line), project (kind: lock, pyproject,
requirements or ""; extras, groups, frozen, python: what .python-version or requires-python wants,
python_downloads) and origins ({name: [[requirement, where it was asked for]...]}, for naming the
pins of a conflict).

A project with uv.lock is its own `uv sync --locked` (or --frozen) into REMOTE_DIR/.venv
(UV_PROJECT_ENVIRONMENT); a pyproject.toml without a lock is installed editable with its extras;
then torch and the extra packages, each batch one installer command.

Which uv (find_uv(), which doctor asks too): the host's own (PATH, ~/.local/bin, ~/.cargo/bin),
else the one in TOOL, installed once with the host's pip from the package sources pip uses. uv
does not read pip's configuration, so the sources pip would use (pip_config(): pip's own answer)
are given to uv as options, unless uv has index settings of its own (UV_* variables, uv.toml, a
[tool.uv] index in REMOTE_DIR/pyproject.toml). The host's trust and proxy settings (pip's cert,
SSL_CERT_FILE or the system's store, pip's proxy) reach uv whichever index it uses.

Everything goes to stderr: remote-run's own `remote-run: ...` lines, the installer's lines indented,
and progress lines that start with PROGRESS (the caller redraws those in place on a terminal).
All of it, the installers' whole output included, is also written to LOG.
"""

import functools
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque

from . import exits, layout
from .control import FINAL, PROGRESS
from .files import read_text, write_text

VENV = ".venv"
STAMP = layout.VENV_STAMP
LOG = ".remote-run/bootstrap.log"
LOCK = ".remote-run/bootstrap.lock"
TOOL = ".remote-run/uv"  # uv's tool environment (pip install --target)
NO_UV = ".remote-run/uv-unavailable"  # why uv could not be installed from these sources
MIN_UV = (0, 5)
UV_PLACES = ("uv", "~/.local/bin/uv", "~/.cargo/bin/uv")  # PATH, then where uv's own installer puts it
UV_REQUIREMENT = "uv>=0.5"
TAIL = 12  # installer lines shown when it fails
LOW_DISK = 32 * 1024 * 1024  # bytes free below which a failure is put down to a full disk

UV_INDEX_VARIABLES = ("UV_INDEX", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS",
                      "UV_NO_INDEX", "UV_CONFIG_FILE")
UV_INDEX_KEY = re.compile(r"^\s*(\[\[(tool\.uv\.)?index\]\]|"
                          r"(index-url|extra-index-url|find-links|no-index|index)\s*=)", re.M)
CONNECT_CAUSES = (
    (r"Connection refused", "connection refused"),
    (r"dns error|Name or service not known|Temporary failure in name resolution|failed to lookup address",
     "the host name does not resolve"),
    (r"certificate|CERTIFICATE|SSLError", "its TLS certificate is not trusted"),
    (r"timed out|TimeoutError", "timed out"),
    (r"Network is unreachable", "network unreachable"),
    (r"ProxyError", "the proxy failed"),
)
UV_NOISE = ("Using Python ", "Using CPython ", "Activate with", "Creating virtual environment")
PIP_SHOWN = ("Collecting ", "Processing ", "Downloading ", "Installing collected packages", "Successfully installed")


# ------------------------------------------------------------------------------- output

class Output:
    """Where the bootstrap's words go: stderr while the connection lives, and the log file."""

    def __init__(self):
        self.log = None
        self.origins = {}  # the payload's: where each requirement was asked for

    def open_log(self, path):
        self.log = open(path, "w", encoding="utf-8", errors="replace")

    def write(self, text, show=True, log=True):
        if log and self.log is not None:
            self.log.write(text)
            self.log.flush()
        if show:
            try:  # as UTF-8 bytes: the host's locale may be C, and the ellipsis and uv's lines are not ASCII
                sys.stderr.flush()
                sys.stderr.buffer.write(text.encode("utf-8", "replace"))
                sys.stderr.buffer.flush()
            except (OSError, ValueError):
                pass  # the connection is gone: the bootstrap still finishes, and the log has it all

    def say(self, message):
        self.write("remote-run: " + message + "\n")

    def progress(self, message):
        self.write(PROGRESS + "remote-run: " + message + "\n", log=False)

    def final(self, message):
        """Why the bootstrap failed: the last line, which the caller turns into its one-line error."""
        self.write("remote-run: " + message + "\n", show=False)
        self.write(FINAL + "remote-run: " + message + "\n", log=False)

    def close(self):
        if self.log is not None:
            self.log.close()
            self.log = None


def describe(packages, limit=6):
    """Package arguments as the user wrote them: `torch==2.13.0 numpy, requirements.txt`."""
    names, after = [], ""
    for item in packages:
        if after == "--group":
            names.append("group " + item)
        elif item.startswith("."):
            names.append("the project " + item)
        elif not item.startswith("-") and item != "requirements.txt":
            names.append(item)
        after = item
    text = " ".join(names[:limit]) + (" and %d more" % (len(names) - limit) if len(names) > limit else "")
    if "requirements.txt" in packages:
        text = text + ", requirements.txt" if text else "requirements.txt"
    return text


# ------------------------------------------------------------------------ running things

def run(out, argv, label, tick, env=None, show=lambda line: True, phase=None, doing=""):
    """Run an installer command: every line to the log, the lines ``show`` accepts to stderr
    (indented), and a progress line (label, phase, elapsed) after each ``tick`` seconds without
    one; ``phase(line)`` names what the installer is doing from its lines (``doing`` at first).
    Returns (exit status, [(line, shown)] of the last lines)."""
    out.write("$ " + " ".join(argv) + "\n", show=False)
    started = time.time()
    environment = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=environment)
    except OSError as exc:
        line = "%s: %s" % (argv[0], exc.strerror)
        out.write("  " + line + "\n", show=False)
        return exits.MISSING, [(line, False)]
    lines = deque(maxlen=200)
    arrived = queue.Queue()

    def read():
        for raw in iter(proc.stdout.readline, b""):
            arrived.put(raw)
        arrived.put(None)

    threading.Thread(target=read, daemon=True).start()
    quiet_since = started
    while True:
        try:
            raw = arrived.get(timeout=max(0.05, quiet_since + tick - time.time()))
        except queue.Empty:
            out.progress("%s%s… %d s" % (label, " (%s)" % doing if doing else "", time.time() - started))
            quiet_since = time.time()
            continue
        if raw is None:
            break
        line = raw.decode("utf-8", "replace").rstrip()
        shown = bool(line.strip()) and show(line)
        lines.append((line, shown))
        out.write("  " + line + "\n", show=shown)
        if shown:
            quiet_since = time.time()
        if phase is not None:
            doing = phase(line) or doing
    status = proc.wait()
    out.write("  (exit %d, %.1f s)\n" % (status, time.time() - started), show=False)
    return status, list(lines)


def quick(argv):
    """(exit status, output) of a short command, or (127, '') when it cannot start."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        text = proc.communicate(timeout=60)[0]
    except (OSError, subprocess.TimeoutExpired):
        return exits.MISSING, ""
    return proc.returncode, text.decode("utf-8", "replace")


def executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def remove(path):
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


# ------------------------------------------------------------------------ why it failed

def reason(lines, sources):
    """One phrase naming the package that failed and why, from an installer's output (uv or pip)."""
    text = "\n".join(lines)
    if re.search(r"No space left on device|os error 28|Errno 28|Disk quota exceeded", text):
        return "the host's disk is full (No space left on device); free some space (df -h) and run it again"
    match = re.search(r"Failed to fetch: `?([^`\s]+)", text)
    unreachable = re.search(r"error sending request|dns error|tcp connect error|Connection refused|timed out|"
                            r"Network is unreachable|NewConnectionError|Failed to establish a new connection|"
                            r"Temporary failure in name resolution|Name or service not known|Max retries exceeded|"
                            r"ConnectTimeoutError|ReadTimeoutError|ProxyError|"
                            r"certificate verify failed|CERTIFICATE_VERIFY_FAILED|SSLError", text)
    if unreachable:
        where = match.group(1) if match else sources
        cause = next((words for pattern, words in CONNECT_CAUSES if re.search(pattern, text)), "cannot connect")
        return ("no package index reachable (%s: %s); check the host's network or its pip index settings"
                % (where, cause))
    match = re.search(r"Because (\S+) was not found in the (package registry|provided package locations)", text)
    if match:
        return "%s is not in the package sources (%s)" % (match.group(1), sources)
    match = re.search(r"there is no version of (\S+?)(?:,| and |$)", text, re.M)
    if match:
        return "no version %s in the package sources (%s)" % (match.group(1), sources)
    match = re.search(r"(\S+?)==\S+ has no wheels with a matching "
                      r"(Python implementation tag|Python ABI tag|platform tag|Python version tag)", text)
    if match:
        found = re.search(r"with the following [^:]*: (.+)$", text, re.M)
        return "%s has no wheel for this Python (%s; its wheels are for %s)" % (
            match.group(1), platform_tag(), found.group(1).strip() if found else "other Pythons or platforms")
    match = (re.search(r"(\S+?)==(\S+) requires Python ?([^\s,]+)", text)
             or re.search(r"(\S+?)==(\S+) depends on Python ?([^\s,]+)", text))
    if match:
        return ("%s %s needs Python %s; the host's is %s"
                % (match.group(1), match.group(2), match.group(3), python_version()))
    match = (re.search(r"Failed to (?:build|download and build) `?([^`\s]+)", text)
             or re.search(r"Failed building wheel for (\S+)", text))
    if match:
        return ("%s has no wheel for this Python and building it from source failed (see the lines above)"
                % match.group(1))
    match = re.search(r"Failed to install: \S+ \(([^)]+)\)", text)
    if match:
        return "installing %s failed: %s" % (match.group(1), last_cause(lines))
    match = re.search(r"No matching distribution found for (\S+)", text)
    if match:
        versions = re.search(r"\(from versions: ([^)]*)\)", text)
        if versions and versions.group(1).strip() not in ("", "none"):
            return "no version %s in the package sources (there: %s)" % (match.group(1), versions.group(1).strip())
        if "require a different python version" in text:
            return "%s needs another Python; the host's is %s" % (match.group(1), python_version())
        return ("%s is not in the package sources (%s), or none of its files fits %s"
                % (match.group(1), sources, platform_tag()))
    if "ResolutionImpossible" in text or "requirements are unsatisfiable" in text:
        return "the requirements conflict: %s" % last_cause(lines)
    if re.search(r"requires a different Python|Requires-Python", text):
        return "a package needs another Python (the host's is %s): %s" % (python_version(), last_cause(lines))
    if "No module named pip" in text:
        return "the host's python3 has no pip"
    return last_cause(lines) or "no output"


def last_cause(lines):
    """The installer's own last words: its last `cause:`/`ERROR:` line, else its last line."""
    lines = [line.strip() for line in lines if line.strip() and not line.startswith("(exit")]
    for line in reversed(lines):
        if line.startswith(("cause:", "ERROR:", "error:")):
            return line.split(":", 1)[1].strip()[:240]
    return lines[-1][:240] if lines else ""


def python_version():
    return "%d.%d.%d" % sys.version_info[:3]


def platform_tag():
    import platform

    return "CPython %d.%d on %s" % (sys.version_info[0], sys.version_info[1], platform.machine() or "this machine")


def disk_full():
    """Whether REMOTE_DIR's disk is (nearly) full: installers do not always say so."""
    try:
        info = os.statvfs(".")
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < LOW_DISK


# ----------------------------------------------------------------- package sources for uv

def pip_config(environ=None, python=None):
    """The options `pip install` reads from its configuration, as pip itself reports them
    (`python3 -m pip config list`: its files and PIP_* variables, merged as pip merges them), with
    [install] over [global] and the variables over both. {} when this Python has no pip."""
    environ = os.environ if environ is None else environ
    return dict(_pip_answer(python or sys.executable, tuple(sorted(environ.items()))))


@functools.lru_cache(maxsize=None)
def _pip_answer(python, environ):
    import ast

    try:
        done = subprocess.run([python, "-m", "pip", "config", "list"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=dict(environ), timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if done.returncode:
        return ()
    sections = {"global": {}, "install": {}, ":env:": {}}
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition("=")
        section, _, key = name.rpartition(".")
        if section not in sections or not key:
            continue
        try:
            sections[section][key.lower().replace("_", "-").lstrip("-")] = str(ast.literal_eval(value))
        except (ValueError, SyntaxError):
            continue
    conf = dict(sections["global"])
    conf.update(sections["install"])
    conf.update({key: value for key, value in sections[":env:"].items() if value.strip()})
    return tuple(conf.items())


def truthy(value):
    return str(value).strip().lower() in ("1", "true", "yes", "on", "y", "t")


def uv_settings(environ):
    """Where uv has index settings of its own (a variable, uv.toml, REMOTE_DIR's pyproject.toml), or None."""
    for name in UV_INDEX_VARIABLES:
        if environ.get(name, "").strip():
            return name
    home = os.path.expanduser("~")
    candidates = ["uv.toml", "pyproject.toml",
                  os.path.join(environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "uv", "uv.toml")]
    candidates += [os.path.join(d, "uv", "uv.toml")
                   for d in (environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":") if d]
    candidates.append("/etc/uv/uv.toml")
    for path in candidates:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError:
            continue
        if path == "pyproject.toml":
            if "[tool.uv" not in text:
                continue
            start = text.index("[tool.uv")
            text = text[text.rfind("\n", 0, start) + 1:]  # from the start of that line on
        if UV_INDEX_KEY.search(text):
            return os.path.abspath(path)
    return None


def trust(environ, pip):
    """The host's trust and proxy settings, for uv whichever index it uses (the project's own
    included): pip's cert, else SSL_CERT_FILE as it is set, else the system's certificate store
    (uv's native TLS; uv's own bundle would not have a company's CA); pip's proxy."""
    env = {}
    if not environ.get("SSL_CERT_FILE") and not environ.get("UV_NATIVE_TLS"):
        if pip.get("cert"):
            env["SSL_CERT_FILE"] = pip["cert"]
        else:
            env["UV_NATIVE_TLS"] = "1"
    if pip.get("proxy"):
        for name in ("HTTPS_PROXY", "HTTP_PROXY"):
            if not environ.get(name) and not environ.get(name.lower()):
                env[name] = pip["proxy"]
    return env


class Sources:
    """Where uv gets packages: the sources pip is configured with, given as uv options (pip's
    --index-url/--extra-index-url/--find-links/--no-index/--trusted-host/--constraint, its cert
    and proxy), with pip's rule of taking the best version from all of them; or uv's own settings."""

    def __init__(self, environ):
        self.own = uv_settings(environ)
        self.pip = pip_config(environ)
        self.conf = {} if self.own else self.pip
        self.env = trust(environ, self.pip)
        self.strategy = not environ.get("UV_INDEX_STRATEGY")

    def _list(self, key):
        return (self.conf.get(key) or "").split()

    def args(self, index=""):
        """uv pip install options; ``index`` replaces the index URL (TORCH_INDEX_URL), as it would for pip."""
        if self.own:
            return ["--index-url", index] if index else []
        args, sources = [], False
        no_index = truthy(self.conf.get("no-index", ""))
        if no_index:
            args.append("--no-index")
        else:
            url = index or (self.conf.get("index-url") or "").strip()
            if url:
                args += ["--index-url", url]
                sources = True
            for url in self._list("extra-index-url"):
                args += ["--extra-index-url", url]
                sources = True
        for link in self._list("find-links"):
            args += ["--find-links", link]
            sources = True
        for host in self._list("trusted-host"):
            args += ["--allow-insecure-host", host]
        for path in self._list("constraint"):
            args += ["--constraint", path]
        if sources and self.strategy:
            args += ["--index-strategy", "unsafe-best-match"]  # pip's rule: the best version from any source
        return args

    def text(self, index=""):
        """The sources in words, for messages."""
        if self.own:
            return ("index %s, " % index if index else "") + "uv's own settings (%s)" % self.own
        return pip_text(self.conf, index)


def pip_text(conf, index=""):
    """The package sources of a pip configuration, in words."""
    parts = []
    if truthy(conf.get("no-index", "")):
        parts.append("no index")
    else:
        url = index or (conf.get("index-url") or "").strip()
        parts.append("index " + (url or "https://pypi.org/simple"))
        parts += ["extra index " + url for url in (conf.get("extra-index-url") or "").split()]
    parts += ["find-links " + link for link in (conf.get("find-links") or "").split()]
    return ", ".join(parts)


# ----------------------------------------------------------------------------- uv itself

def uv_version(path):
    """uv's version at ``path`` as a tuple, or None when it does not run."""
    if not path or not executable(path):
        return None
    status, text = quick([path, "--version"])
    match = re.search(r"uv (\d+)\.(\d+)\.(\d+)", text)
    if status or not match:
        return None
    return tuple(int(part) for part in match.groups())


def version_text(version):
    return ".".join(str(v) for v in version)


def uv_places():
    """Where the host's own uv may be (UV_PLACES, which doctor looks at too), as paths."""
    return [shutil.which(place) if "/" not in place else os.path.expanduser(place) for place in UV_PLACES]


def find_uv(root, out=None):
    """The uv a bootstrap uses (doctor asks the same): the host's own (uv_places()) if it is at
    least MIN_UV, else the one an earlier bootstrap installed into ``root``/TOOL. (path, version,
    where it was found in words), or None."""
    seen = []
    for path in uv_places():
        version = uv_version(path)
        if version is None or path in seen:
            continue
        seen.append(path)
        if version >= MIN_UV:
            return path, version, path
        if out is not None:
            out.say("uv %s at %s is older than %s; not using it" % (version_text(version), path, version_text(MIN_UV)))
    tool = os.path.join(root, TOOL, "bin", "uv")
    version = uv_version(tool)
    if version is not None and version >= MIN_UV:
        return tool, version, os.path.join(root, TOOL)
    return None


def install_uv(out, root, tick, sources):
    """Install uv into TOOL with the host's pip: (path, version), or the reason it failed."""
    out.say("the host has no uv: installing it into %s/%s, once, with pip (%s)" % (root, TOOL, sources))
    started = time.time()
    temp = "%s.tmp-%d" % (TOOL, os.getpid())
    helper = "%s.venv-%d" % (TOOL, os.getpid())
    remove(temp)
    pip_args = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-compile",
                "--target", temp, UV_REQUIREMENT]
    hidden = lambda line: False  # noqa: E731 - pip --quiet prints only trouble; shown if it fails
    status, lines = run(out, [sys.executable] + pip_args, "installing uv", tick, show=hidden)
    why = reason(texts(lines), sources)
    if status and not sources_problem(why):
        # python3 has no pip, or its pip will not install outside a virtual environment: a venv's pip will.
        status, lines = run(out, [sys.executable, "-m", "venv", helper], "installing uv (a venv for pip)", tick,
                            show=hidden)
        if status:
            why = "python3 has no usable pip (%s) and `python3 -m venv` failed (%s)" % (why, last_cause(texts(lines)))
        else:
            remove(temp)
            status, lines = run(out, [os.path.join(helper, "bin", "python")] + pip_args, "installing uv", tick,
                                show=hidden)
            why = reason(texts(lines), sources)
    remove(helper)
    version = uv_version(os.path.join(temp, "bin", "uv")) if not status else None
    if version is None:
        remove(temp)
        if not status:
            why = "the uv it installed does not run on this host"
        elif "disk is full" not in why and disk_full():
            why = "the host's disk is full (%s)" % why
        return why
    remove(TOOL)
    try:
        os.rename(temp, TOOL)
    except OSError:  # another bootstrap put one there meanwhile
        remove(temp)
    out.say("uv %s installed in %.1f s" % (version_text(version), time.time() - started))
    return os.path.join(root, TOOL, "bin", "uv"), version


def texts(lines):
    return [line for line, _ in lines]


def sources_problem(why):
    """Whether a failure is about the package sources (so another way of running pip fails the same)."""
    return any(word in why
               for word in ("package sources", "no package index", "disk is full", "no wheel", "no version"))


# ------------------------------------------------------------------------- the installers

class Uv:
    def __init__(self, out, path, version, tick):
        self.out, self.path, self.tick = out, path, tick
        self.name = "uv " + version_text(version)
        self.python = sys.executable  # what `uv venv` makes .venv with: the host's python3, unless .python-version
        self.sources = Sources(os.environ)
        self.env = dict(self.sources.env, UV_PYTHON_DOWNLOADS="never")
        if not os.environ.get("UV_LINK_MODE") and not same_disk(self.cache_dir(), "."):
            self.env["UV_LINK_MODE"] = "copy"  # no hardlinks across disks: say so once, not as uv's warning

    def cache_dir(self):
        status, text = quick([self.path, "cache", "dir"])
        return text.strip().splitlines()[-1] if not status and text.strip() else ""

    def venv(self):
        if executable(os.path.join(VENV, "bin", "python")):
            return exits.OK
        remove(VENV)
        status, lines = run(self.out, [self.path, "venv", "--quiet", "--python", self.python, VENV],
                            "creating .venv with " + self.name, self.tick, env=self.env)
        if status:
            return failed(self.out, "creating .venv with " + self.name, lines, self.sources.text())
        return exits.OK

    def install(self, packages, index):
        label = "installing %s with %s" % (describe(packages), self.name)
        self.out.say("%s (%s)" % (label, self.sources.text(index)))
        argv = ([self.path, "pip", "install", "--python", os.path.join(VENV, "bin", "python")]
                + self.sources.args(index) + packages)
        status, lines = run(self.out, argv, "installing " + describe(packages), self.tick, env=self.env,
                            show=lambda line: not line.startswith(UV_NOISE), phase=uv_phase, doing="resolving")
        return failed(self.out, label, lines, self.sources.text(index)) if status else exits.OK

    def sync(self, project):
        """The project's own `uv sync` from its uv.lock into .venv, with its own indexes."""
        argv = [self.path, "sync", "--frozen" if project["frozen"] else "--locked"]
        for extra in project["extras"]:
            argv += ["--extra", extra]
        for group in project["groups"]:
            argv += ["--group", group]
        label = "installing the project from uv.lock with %s (%s)" % (self.name, " ".join(["uv"] + argv[1:]))
        self.out.say(label)
        env = dict(self.env, UV_PROJECT_ENVIRONMENT=os.path.abspath(VENV),
                   UV_PYTHON_DOWNLOADS=project.get("python_downloads") or "never")
        status, lines = run(self.out, argv, "uv sync", self.tick, env=env,
                            show=lambda line: not line.startswith(UV_NOISE), phase=uv_phase, doing="resolving")
        if not status:
            return exits.OK
        why = project_reason(texts(lines), project)
        if why:
            self.out.final("%s failed: %s" % (label.split(" (")[0], why))
            return exits.FAILED
        return failed(self.out, label.split(" (")[0], lines, "the project's own indexes")


def project_reason(lines, project):
    """One line for what a project's uv sync refused: an out-of-date lock, a Python it cannot have."""
    text = "\n".join(lines)
    if "needs to be updated" in text and "--locked" in text:
        return ("uv.lock is out of date with pyproject.toml; run `uv lock` in the workspace and bootstrap again, "
                "or pass --frozen (BOOTSTRAP_FROZEN=1) to install the lock as it is")
    if re.search(r"No interpreter found|incompatible with the project's Python requirement|"
                 r"Python downloads are not allowed|No download found for request", text):
        wanted = project.get("python") or {}
        what = ("Python %s is wanted (%s)" % (wanted["wanted"], wanted["by"]) if wanted
                else "another Python is wanted (%s)" % last_cause(lines))
        if project.get("python_downloads") == "automatic":
            return "%s; the host has %s (%s) and uv could not fetch one: %s" % (
                what, python_version(), sys.executable, last_cause(lines))
        return ("%s; the host has %s (%s) and no other that fits; install it there, or set "
                "BOOTSTRAP_PYTHON_DOWNLOADS=automatic to let uv download it" % (what, python_version(), sys.executable))
    return ""


def uv_phase(line):
    if line.startswith("Resolved"):
        return "downloading and unpacking"
    if line.startswith("Prepared"):
        return "installing into .venv"
    return None


def same_disk(first, second):
    """Whether two paths (the nearest existing parent of each) are on one file system."""
    def device(path):
        path = os.path.abspath(path or "/")
        while not os.path.exists(path):
            path = os.path.dirname(path)
        return os.stat(path).st_dev

    try:
        return device(first) == device(second)
    except OSError:
        return True


class Pip:
    name = "pip"

    def __init__(self, out, tick):
        self.out, self.tick = out, tick
        self.python = os.path.join(VENV, "bin", "python")
        self.conf = pip_config(os.environ)

    def venv(self):
        if executable(self.python) and quick([self.python, "-m", "pip", "--version"])[0] == 0:
            return exits.OK
        remove(VENV)  # missing, broken, or made by uv (no pip in it)
        status, lines = run(self.out, [sys.executable, "-m", "venv", VENV], "creating .venv with python3 -m venv",
                            self.tick)
        if status:
            why = reason(texts(lines), "")
            if "disk is full" not in why and disk_full():
                why = "the host's disk is full (%s)" % why
            self.out.final("python3 -m venv failed (%s); install python3-venv on the host or set REMOTE_PYTHON" % why)
            return exits.ENVIRONMENT
        status, lines = run(self.out, [self.python, "-m", "pip", "install", "--progress-bar", "off",
                                       "--disable-pip-version-check", "--upgrade", "pip"],
                            "upgrading pip", self.tick, show=pip_shown, phase=pip_phase)
        return failed(self.out, "upgrading pip in .venv", lines, pip_text(self.conf)) if status else exits.OK

    def has_groups(self):
        return "--group" in quick([self.python, "-m", "pip", "install", "--help"])[1]

    def install(self, packages, index):
        label = "installing %s with pip" % describe(packages)
        self.out.say(label + (" from " + index if index else ""))
        argv = [self.python, "-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check"]
        argv += (["--index-url", index] if index else []) + packages
        status, lines = run(self.out, argv, "installing " + describe(packages), self.tick, show=pip_shown,
                            phase=pip_phase)
        return failed(self.out, label, lines, pip_text(self.conf, index)) if status else exits.OK


def pip_shown(line):
    return line.startswith(PIP_SHOWN)


def pip_phase(line):
    match = re.match(r"(Collecting|Downloading|Processing) (\S+)", line.strip())
    if match:
        return "%s %s" % (match.group(1).lower(), os.path.basename(match.group(2)))
    if line.startswith("Installing collected packages"):
        return "installing into .venv"
    return None


def failed(out, doing, lines, sources):
    """Show the installer's last lines not shown yet, then the one line: what failed and why."""
    last_shown = max([i for i, (_, shown) in enumerate(lines) if shown] or [-1])
    for line, _ in lines[last_shown + 1:][-TAIL:]:
        if line.strip():
            out.write("  | " + line + "\n", log=False)
    why = reason(texts(lines), sources)
    if "disk is full" not in why and disk_full():
        why = "the host's disk is full (%s)" % why
    out.final("%s failed: %s%s; the installer's output is in %s" % (doing, why, pins(why, out.origins),
                                                                    os.path.abspath(LOG)))
    return exits.FAILED


def pins(why, origins):
    """Where each requirement of the packages a failure names was asked for: `(torch==2.13.0 from
    TORCH_PACKAGES (the default); torch==2.10 from requirements.txt)`."""
    if not re.search(r"conflict|no version|needs Python", why):
        return ""
    named = set(re.sub(r"[-_.]+", "-", word).lower() for word in re.findall(r"[A-Za-z0-9][A-Za-z0-9._-]*", why))
    found = ["%s from %s" % (requirement, source) for name in sorted(origins) if name in named
             for requirement, source in origins[name]]
    return " (%s)" % "; ".join(found) if found else ""


# --------------------------------------------------------------------------------- main

def current(payload):
    if payload["force"] or not executable(os.path.join(VENV, "bin", "python")):
        return False
    try:
        with open(STAMP) as handle:
            return handle.read().strip() == payload["stamp"]
    except OSError:
        return False


def python_wanted(project):
    """The version .python-version asks for when the host's python3 is not that release ('' when
    it is, whatever its patch level, or when nothing or only requires-python asks: the installer
    checks that)."""
    wanted = project.get("python") or {}
    version = (wanted.get("wanted") or "").replace("cpython-", "").replace("python", "")
    if wanted.get("by") != ".python-version" or not re.match(r"^\d+(\.\d+){0,2}$", version):
        return ""
    return "" if (python_version() + ".").startswith(".".join(version.split(".")[:2]) + ".") else version


def plan(payload):
    """The install commands after a project's uv sync: (packages, index URL) each. Everything from
    the same sources goes in one command (one resolution); torch from TORCH_INDEX_URL in a command
    of its own. A pyproject.toml without a lock is the project, editable, with its extras and groups."""
    torch, extra, index = list(payload["torch"]), list(payload["extra"]), payload["torch_index"]
    project = payload.get("project") or {}
    requirements = []
    if project.get("kind") == "pyproject":
        extras = project.get("extras") or []
        requirements = ["-e", "." + ("[%s]" % ",".join(extras) if extras else "")]
        for group in project.get("groups") or []:
            requirements += ["--group", group]
    if project.get("kind") != "lock" and os.path.isfile("requirements.txt"):
        requirements += ["-r", "requirements.txt"]
    batches = []
    if torch and index:
        batches.append((torch, index))
        torch = []
    rest = torch + extra + requirements
    if rest:
        batches.append((rest, ""))
    return batches


def choose(out, payload, root):
    """The installer to use, or an exit status when there is none."""
    tick, wanted = payload["tick"], payload["installer"]
    if wanted == "pip":
        out.say("using pip (BOOTSTRAP_INSTALLER=pip)")
        return Pip(out, tick)
    found = find_uv(root, out)
    if found:
        out.say("using uv %s (%s)" % (version_text(found[1]), found[2]))
        return Uv(out, found[0], found[1], tick)
    sources = pip_text(pip_config(os.environ))
    before = read_text(NO_UV) or ""
    if wanted == "auto" and not payload["force"] and before and before.split("\n", 1)[0] == sources:
        out.say("using pip: uv could not be installed from these package sources before (%s); "
                "`inv bootstrap --force` tries again" % before.split("\n", 1)[-1])
        return Pip(out, tick)
    got = install_uv(out, root, tick, sources)
    if isinstance(got, tuple):
        remove(NO_UV)
        return Uv(out, got[0], got[1], tick)
    if wanted == "uv":
        out.final("cannot install uv into %s/%s: %s; the output is in %s (BOOTSTRAP_INSTALLER=auto falls back to pip)"
                  % (root, TOOL, got, os.path.abspath(LOG)))
        return exits.FAILED
    write_text(NO_UV, sources + "\n" + got + "\n")
    out.say("cannot install uv: %s; falling back to pip, which is slower and reports progress only between packages"
            % got)
    return Pip(out, tick)


def build(out, payload, root):
    started = time.time()
    remove(STAMP)  # until the build is done, nothing may take .venv for current
    if payload["force"]:
        remove(VENV)
    installer = choose(out, payload, root)
    if isinstance(installer, int):
        return installer
    project = payload.get("project") or {}
    if project.get("kind") == "lock":
        if not isinstance(installer, Uv):
            out.final("the workspace's uv.lock is installed with uv sync, and this bootstrap has no uv (%s); "
                      "set BOOTSTRAP_INSTALLER=auto or uv, or install uv on the host" % installer.name)
            return exits.FAILED
        if os.path.isfile("requirements.txt"):
            out.say("requirements.txt is left out: uv.lock decides the project's packages")
        status = installer.sync(project)
    else:
        wanted = python_wanted(project)
        if wanted and not (isinstance(installer, Uv) and project.get("python_downloads") == "automatic"):
            out.final("Python %s is wanted (.python-version); the host has %s (%s); install it there and set "
                      "REMOTE_PYTHON, or set BOOTSTRAP_PYTHON_DOWNLOADS=automatic to let uv download it"
                      % (wanted, python_version(), sys.executable))
            return exits.ENVIRONMENT
        if wanted:
            installer.python = wanted
            installer.env["UV_PYTHON_DOWNLOADS"] = "automatic"
        if project.get("kind") == "pyproject":
            out.say("pyproject.toml has no uv.lock: installing the project unlocked, its versions resolved now "
                    "(`uv lock` in the workspace pins them)")
        status = installer.venv()
        if not status and project.get("groups") and isinstance(installer, Pip) and not installer.has_groups():
            out.final("the pip in .venv cannot install dependency groups (%s; pip 25.1 and later can): "
                      "use uv (BOOTSTRAP_INSTALLER=auto), or drop the groups" % ", ".join(project["groups"]))
            return exits.ENVIRONMENT
    if status:
        return status
    for packages, index in plan(payload):
        status = installer.install(packages, index)
        if status:
            return status
    write_text(STAMP, payload["stamp"] + "\n")
    out.say("environment ready (%s/%s, %s, %.1f s)" % (root, VENV, installer.name, time.time() - started))
    return exits.OK


def main(payload):
    root = payload["root"]
    out = Output()
    out.origins = payload.get("origins") or {}
    try:
        os.chdir(root)
    except OSError:
        out.final("REMOTE_DIR %s is missing; run `inv sync` first" % root)
        return exits.USAGE
    if current(payload):
        out.say("environment is up to date (%s/%s)" % (root, VENV))
        return exits.OK
    try:
        os.makedirs(".remote-run", exist_ok=True)
        lock = open(LOCK, "a")
    except OSError as exc:
        out.final("cannot write to %s/.remote-run (%s); check free space and permissions" % (root, exc.strerror))
        return exits.ENVIRONMENT
    try:
        if not wait_for(lock, out, root, payload["tick"]) and current(payload):
            out.say("environment is up to date (%s/%s)" % (root, VENV))  # the other bootstrap made it
            return exits.OK
        out.open_log(LOG)
        return build(out, payload, root)
    except OSError as exc:
        why = "the host's disk is full" if exc.errno == 28 or disk_full() else exc.strerror
        out.final("bootstrap failed: %s (%s)" % (why, getattr(exc, "filename", None) or root))
        return exits.FAILED
    finally:
        out.close()
        lock.close()


def wait_for(lock, out, root, tick):
    """Hold the bootstrap lock of REMOTE_DIR: True at once, or False after waiting for another
    bootstrap (two terminals starting runs on a fresh host), saying so while it lasts."""
    import fcntl

    started = shown = time.time()
    waited = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return not waited
        except OSError:
            pass
        if not waited:
            waited = True
            out.say("another bootstrap is running in %s; waiting for it" % root)
        time.sleep(0.2)
        if time.time() - shown >= tick:
            shown = time.time()
            out.progress("waiting for the other bootstrap… %d s" % (shown - started))
