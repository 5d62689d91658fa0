"""The one builder of the host program: remote_run/host packed as a zip, and the commands that run
one of its modes on a host.

On an SSH host a command carries LOADER (about 1.4 KB) and runs the program the host keeps in
~/.cache/remote-run/host-<version>-<Python>.pyz: a zip of the package with byte code compiled by
that Python, so nothing is compiled again. The kept file is used only when it is ours and nobody
else can write it or its folder; it is opened without following links and imported through the
open file (/proc/self/fd), so it cannot be swapped after the check. When it is missing, nothing
is done and the command comes again as KEEPER, which carries the zip, runs it from memory and
keeps it (doctor's command carries it without keeping it: doctor changes nothing on the host).

The kept .pyz is a runnable zipapp, for a person debugging on the host:
``python3 ~/.cache/remote-run/host-*.pyz status /tmp/x_remote`` runs a mode by hand, and
``python3 …pyz explode DIR`` writes the sources into DIR to read, edit and run with
``cd DIR && python3 -m remote_run.host MODE …``.

On `local` the package is imported where it is installed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
from functools import lru_cache
from pathlib import Path

from .host import FLOOR, exits
from .host.__main__ import PAYLOAD_MODES
from .host.control import CONTROL

HOST = Path(__file__).resolve().parent / "host"
KEPT = "host-%s-%s.pyz"  # version, sys.implementation.cache_tag + sys.hexversion

# First in everything a host's Python runs (LOADER, KEEPER, local_argv, ENTRY): a Python older than
# the host program's FLOOR says so in one line, rather than failing somewhere inside. Python parses
# all of a text before it runs the guard: these texts keep to old syntax (no f-strings, no :=).
# A text is sent as it is written, so its long lines stay: its closing line exempts them from E501.
TOO_OLD = "remote-run needs Python %d.%d or newer" % FLOOR
GUARD = r"""
import sys
if sys.version_info < FLOOR:
    sys.stderr.write("remote-run: python3 on this host is %d.%d.%d; TOO_OLD: install it, or set REMOTE_PYTHON\n" % sys.version_info[:3])
    sys.exit(ENVIRONMENT)
""".replace("FLOOR", repr(FLOOR)).replace("TOO_OLD", TOO_OLD).replace("ENVIRONMENT", str(exits.ENVIRONMENT))  # noqa: E501

ENTRY = GUARD + "from remote_run.host.__main__ import run\nrun(sys.argv[1:])\n"

# What an SSH host runs for a command of the kept program: argv is the version, then the mode.
LOADER = GUARD + r"""
import os, stat
c = os.path.expanduser("~/.cache/remote-run")
def kept(name):
    try:
        d = os.open(c, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        i = os.fstat(d)
        f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=d) if i.st_uid == os.geteuid() and not i.st_mode & 63 else None
    except OSError:
        f = None
    os.close(d)
    if f is None:
        return None
    i = os.fstat(f)
    if stat.S_ISREG(i.st_mode) and i.st_uid == os.geteuid() and not i.st_mode & 18:
        return "/proc/self/fd/%d" % f if os.path.isdir("/proc/self/fd") else c + "/" + name
path = kept("KEPT" % (sys.argv.pop(1), "%s-%x" % (sys.implementation.cache_tag, sys.hexversion)))
if path:
    sys.path.insert(0, path)
    try:
        from remote_run.host.__main__ import run
    except ImportError:  # not a zip of the program (cut short, overwritten): as if missing
        path = None
if not path:
    if sys.argv[1:2] in (["check"], ["start"]) and len(sys.argv) == 2:
        sys.stdin.readline()  # its payload, so that what was sent is taken
    h = os.path.expanduser("~")
    w = os.access(h + "/.cache" if os.path.isdir(h + "/.cache") else h, os.W_OK)
    sys.stderr.write("CONTROL" + '{"program": "missing", "storable": %s}\n' % ("true" if w else "false"))
    sys.exit(NO_PROGRAM)
run(sys.argv[1:])
"""  # noqa: E501


def _minify(code: str) -> str:
    """``code`` with one space per indentation level and without comments or blank lines: every
    command carries it."""
    lines = []
    for line in code.strip().splitlines():
        text = line.split("  # ")[0].rstrip()
        depth = (len(text) - len(text.lstrip(" "))) // 4
        if text:
            lines.append(" " * depth + text.lstrip(" "))
    return "\n".join(lines) + "\n"


LOADER = _minify(LOADER).replace("CONTROL", "\\x1e").replace("NO_PROGRAM", str(exits.NO_PROGRAM)).replace("KEPT", KEPT)

# The program itself, for a host that has not kept it: argv is the version, keep|carry, the mode.
KEEPER = _minify(GUARD) + r"""
import base64, io, marshal, os, stat, zipfile
import importlib.util
version, keep = sys.argv.pop(1), sys.argv.pop(1) == "keep"
bundle = zipfile.ZipFile(io.BytesIO(base64.b64decode(BUNDLE)))
sources = {name: bundle.read(name) for name in bundle.namelist()}
def store(name):
    folder = os.path.expanduser("~/.cache/remote-run")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        return
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_STORED) as out:
        for path in sorted(sources):
            out.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), sources[path])
            if path.endswith(".py") and path != "__main__.py":
                code = compile(sources[path], path, "exec", dont_inherit=True)
                pyc = importlib.util.MAGIC_NUMBER + b"\x01\x00\x00\x00" + importlib.util.source_hash(sources[path]) + marshal.dumps(code)
                out.writestr(zipfile.ZipInfo(path + "c", (1980, 1, 1, 0, 0, 0)), pyc)
    part = os.path.join(folder, ".%s.%d" % (name, os.getpid()))
    with open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "wb") as handle:
        handle.write(data.getvalue())
    os.replace(part, os.path.join(folder, name))
if keep:
    try:
        store("KEPT" % (version, "%s-%x" % (sys.implementation.cache_tag, sys.hexversion)))
    except OSError:
        pass
class Bundle:
    # Imports the program's modules from memory.
    def find_spec(self, name, path=None, target=None):
        for suffix, package in (("/__init__.py", True), (".py", False)):
            key = name.replace(".", "/") + suffix
            if key in sources:
                return importlib.util.spec_from_loader(name, self, origin=key, is_package=package)
        return None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        module.__file__ = module.__spec__.origin
        exec(compile(sources[module.__spec__.origin], module.__spec__.origin, "exec", dont_inherit=True), module.__dict__)
    def get_source(self, name):
        for suffix in ("/__init__.py", ".py"):
            if name.replace(".", "/") + suffix in sources:
                return sources[name.replace(".", "/") + suffix].decode("utf-8")
        return None
sys.meta_path.insert(0, Bundle())
from remote_run.host.__main__ import run
run(sys.argv[1:])
""".replace("KEPT", KEPT)  # noqa: E501

MISSING = f'{CONTROL}{{"program": "missing", "storable": '  # the loader found no kept program


def files() -> dict[str, bytes]:
    """The zip's members: every module of remote_run/host (found by listing it, not by a list kept
    here), a package marker for remote_run, and __main__.py to run the zip as a program."""
    found = {f"remote_run/host/{path.name}": path.read_bytes() for path in sorted(HOST.glob("*.py"))}
    found["remote_run/__init__.py"] = b'"""remote-run\'s host program (remote_run.ship)."""\n'
    found["__main__.py"] = ENTRY.encode()
    return found


@lru_cache(maxsize=None)
def bundle() -> bytes:
    """The zip of the host program's sources, the same bytes for the same sources."""
    import zipfile  # here: only a host without the program needs the zip

    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as out:
        for name, content in sorted(files().items()):
            out.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), content, compress_type=zipfile.ZIP_DEFLATED,
                         compresslevel=9)
    return data.getvalue()


@lru_cache(maxsize=None)
def version() -> str:
    """The sha256 of the program's files (names and contents): what the bundle is made of, without
    making it (zipping costs every command about 10 ms; only a host without the program needs it)."""
    digest = hashlib.sha256()
    for name, content in sorted(files().items()):
        digest.update(b"%d %s\0%d\0" % (len(name), name.encode(), len(content)))
        digest.update(content)
    return digest.hexdigest()[:20]


@lru_cache(maxsize=None)
def keeper() -> str:
    return KEEPER.replace("BUNDLE", repr(base64.b64encode(bundle()).decode("ascii")), 1)


def local_argv(python: str, mode: str, *args: str) -> list[str]:
    """Run a mode on this machine: the package where it is installed, isolated from the
    environment's Python settings and the current directory's modules (-I), without site (-S)."""
    code = _minify(GUARD) + (f"sys.path.insert(0, {str(HOST.parent.parent)!r}); "
                             "from remote_run.host.__main__ import run; run(sys.argv[1:])")
    return [python, "-I", "-S", *(["-B"] if sys.dont_write_bytecode else []), "-c", code, mode, *args]


def remote_argv(python: str, mode: str, *args: str, carry: bool = False, keep: bool = True) -> list[str]:
    """Run a mode on an SSH host: the kept program (LOADER), or with ``carry`` the program itself
    (KEEPER), kept there for the next command unless not ``keep``."""
    if carry:
        return [python, "-I", "-S", "-c", keeper(), version(), "keep" if keep else "carry", mode, *args]
    return [python, "-I", "-S", "-c", LOADER, version(), mode, *args]


def carrying(argv: list[str]) -> list[str]:
    """A LOADER command as the KEEPER command that does the same (and keeps the program)."""
    if argv[4:5] != [LOADER]:
        return argv
    return [*argv[:4], keeper(), argv[5], "keep", *argv[6:]]


def payload_of(argv: list[str]) -> str | None:
    """The JSON payload a host program command carries on its command line, or None."""
    args = mode_of(argv)
    return args[1] if args and args[0] in PAYLOAD_MODES and len(args) == 2 else None


def mode_of(argv: list[str]) -> list[str] | None:
    """The mode and arguments of a host program command, or None for another command."""
    if len(argv) < 6 or argv[1:3] != ["-I", "-S"]:
        return None
    rest = argv[3:]
    if rest[0] == "-B":
        rest = rest[1:]
    program = rest[1]
    if program == LOADER:
        return rest[3:]
    if program == keeper():
        return rest[4:]
    return rest[2:]
