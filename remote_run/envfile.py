"""What `inv init` writes: the four keys of a `.env` (never a secret), checked by the settings'
own parsers before anything is written, and the ignore lines that keep it out of git."""

from __future__ import annotations

import fnmatch
import io
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from . import settings as settings_mod
from .errors import Failure
from .host.files import write_text

WRITTEN = ("REMOTE_HOST", "WORKSPACE", "REMOTE_DIR", "TORCH_INDEX_URL")
HEADER = ("# remote-run settings, written by `inv init` (every key: .env.example). Never commit this file.\n"
          "# Order of precedence: built-in defaults < this file < the process environment < flags.\n")
IGNORED = {".env": (".env",), ".cluster_name_*": (".cluster_name_gpu", ".cluster_name_tpu")}
_PLAIN = re.compile(r"[A-Za-z0-9_./:@+,=%~-]*\Z")


def env_path(options: dict, environ=None) -> Path:
    """The file init writes: --env-file (the `remote-run` program), REMOTE_RUN_ENV_FILE, else ./.env."""
    environ = os.environ if environ is None else environ
    given = options.get("env_file") or environ.get(settings_mod.ENV_FILE_VARIABLE)
    return Path(given).expanduser().absolute() if given else Path.cwd() / ".env"


def check(values: dict, env_file: Path, environ=None) -> settings_mod.Settings:
    """The settings ``values`` would give (as flags over the environment), each checked by its key's
    parser: a bad value is the settings' own one-line error, before anything is written."""
    url = values.get("TORCH_INDEX_URL") or ""
    if urlsplit(url).username or urlsplit(url).password:
        raise Failure("TORCH_INDEX_URL carries credentials (user:token@): init never writes a secret into .env",
                      "give the host its index credentials with ~/.netrc or pip's keyring there, "
                      "or set TORCH_INDEX_URL in the environment")
    return settings_mod.from_layers(env_file, {}, dict(os.environ if environ is None else environ), values)


def quoted(key: str, value: str) -> str:
    """``value`` as python-dotenv reads it back unchanged: single quotes take no escapes, but
    settings read the .env with interpolation, which expands ``${...}`` even inside them."""
    if _PLAIN.match(value):
        return value
    if not any(ch in value for ch in "'\\\n") and "${" not in value:
        return f"'{value}'"
    raise Failure(f"{key}={value!r} cannot be written to .env (quotes, backslashes, newlines or ${{...}})",
                  f"rename the directory or set {key} by hand")


def text(values: dict, old: str | None) -> str:
    """The new .env: ``old`` with the lines of WRITTEN keys replaced (other lines kept as they are),
    or a new file. Lines python-dotenv cannot parse are commented out (they would stop every task)."""
    from dotenv.parser import parse_stream

    lines = {key: f"{key}={quoted(key, values[key])}\n" for key in WRITTEN if values.get(key) is not None}
    if old is None:
        return HEADER + "".join(lines.values())
    out, done = [], set()
    for binding in parse_stream(io.StringIO(old)):
        original = binding.original.string
        if binding.error:
            out.append("".join(f"# (unreadable, commented out by inv init) {line}\n" for line in original.splitlines()))
            continue
        if binding.key in lines:
            lead = original[:len(original) - len(original.lstrip("\n"))]
            out.append(lead + ("" if binding.key in done else lines[binding.key]))
            done.add(binding.key)
            continue
        out.append(original if original.endswith("\n") else original + "\n")
    out += [line for key, line in lines.items() if key not in done]
    return "".join(out)


def read_back(content: str) -> dict:
    """What python-dotenv (and so every task) reads from ``content``."""
    from dotenv import dotenv_values

    return dict(dotenv_values(stream=io.StringIO(content)))


def write(path: Path, content: str) -> None:
    """Write atomically; a new file is readable by its owner only (a .env may hold tokens)."""
    write_text(path, content, path.stat().st_mode & 0o777 if path.exists() else 0o600)


def ignore(env_file: Path, workspace: Path) -> list[str]:
    """Keep `.env` (next to the .env) and `.cluster_name_*` (the workspace's) out of git: in a git
    repository, in its `info/exclude`, which git honours and does not track (an edited .gitignore
    would make every later run record say +dirty); elsewhere, in an existing .gitignore that lacks
    them. What was added where, for the user."""
    wanted: dict[Path, list[str]] = {}
    wanted.setdefault(env_file.parent.resolve(), []).append(env_file.name)
    wanted.setdefault(workspace.resolve(), []).append(".cluster_name_*")
    said = []
    for folder, patterns in wanted.items():
        exclude = _git_exclude(folder)
        if exclude:
            said += _exclude(folder, *exclude, patterns)
            continue
        path = folder / ".gitignore"
        if not path.is_file():
            continue
        current = path.read_text(encoding="utf-8", errors="surrogateescape")
        rules = [line.strip() for line in current.splitlines()
                 if line.strip() and not line.lstrip().startswith(("#", "!"))]
        missing = [p for p in patterns
                   if not all(any(_covers(rule, name) for rule in rules) for name in IGNORED.get(p, (p,)))]
        if missing:
            addition = ("" if current.endswith("\n") or not current else "\n") + "".join(f"{p}\n" for p in missing)
            with open(path, "a", encoding="utf-8", errors="surrogateescape") as handle:
                handle.write(addition)
            said.append(f"added {', '.join(missing)} to {path}")
    return said


def _git(folder: Path, *args: str):
    try:
        return subprocess.run(["git", "-C", str(folder), *args], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="surrogateescape", timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _git_exclude(folder: Path) -> tuple[Path, Path] | None:
    """(the work tree's top, its info/exclude file) when ``folder`` is in a git work tree."""
    done = _git(folder, "rev-parse", "--show-toplevel", "--git-path", "info/exclude")
    lines = done.stdout.splitlines() if done and done.returncode == 0 else []
    return (Path(lines[0]), (folder / lines[1]).resolve()) if len(lines) == 2 else None


def _exclude(folder: Path, top: Path, exclude: Path, patterns: list[str]) -> list[str]:
    """Add to ``exclude`` the ``patterns`` (names in ``folder``) that git does not ignore yet, anchored."""
    missing = [p for p in patterns if not all(
        (done := _git(folder, "check-ignore", "-q", name)) and done.returncode == 0 for name in IGNORED.get(p, (p,)))]
    if not missing:
        return []
    where = folder.relative_to(top.resolve()).as_posix() if folder != top.resolve() else ""
    prefix = "/" + re.sub(r"([*?\\[])", r"\\\1", where) + "/" if where else "/"
    lines = [prefix + p for p in missing]
    exclude.parent.mkdir(parents=True, exist_ok=True)
    current = exclude.read_text(encoding="utf-8", errors="surrogateescape") if exclude.is_file() else ""
    with open(exclude, "a", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(("" if current.endswith("\n") or not current else "\n") + "".join(f"{line}\n" for line in lines))
    return [f"added {', '.join(lines)} to {exclude} (git's ignore list that is never committed: "
            "the tree a run records stays clean)"]


def _covers(rule: str, name: str) -> bool:
    rule = rule.lstrip("/").rstrip()
    return "/" not in rule and fnmatch.fnmatchcase(name, rule)


# ------------------------------------------------------------------------------- the questions

def file_workspace(value: str, env_file: Path) -> str:
    """WORKSPACE as the .env must say it: a relative answer is relative to the current directory,
    a relative WORKSPACE in a .env to the .env's own directory."""
    if Path(value).expanduser().is_absolute() or env_file.parent.resolve() == Path.cwd().resolve():
        return value
    return str((Path.cwd() / value).resolve())


class Questions:
    """init's questions, on stderr, answered on stdin; or none at all (``ask`` False: --yes)."""

    def __init__(self, ask: bool, stdin=None, stderr=None):
        import sys

        self.asking = ask
        self.stdin, self.stderr = stdin or sys.stdin, stderr or sys.stderr

    def tell(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def answer(self, question: str, default: str, valid) -> str:
        """The answer (default on an empty line), asked again while ``valid(answer)`` raises a Failure."""
        while True:
            self.stderr.write(f"{question} [{default}]: " if default else f"{question}: ")
            self.stderr.flush()
            line = self.stdin.readline()
            if not line:
                raise Failure("init got no answer (end of input); nothing was written")
            value = line.strip() or default
            try:
                valid(value)
                return value
            except Failure as exc:
                self.tell(exc.message)


def answers(c, env_file: Path, questions: Questions, *, host: str, workspace: str, remote_dir: str,
            torch_index_url: str) -> dict:
    """The four values, from the flags, the questions or the defaults, each checked as it comes."""
    from . import doctor
    from .transport import Host

    values: dict = {}

    def valid(key):
        return lambda value: check({**values, key: file_workspace(value, env_file) if key == "WORKSPACE" else value},
                                   env_file)

    def take(key, given, question, default):
        if given or not questions.asking:
            value = given or default
            valid(key)(value)
        else:
            value = questions.answer(question, default, valid(key))
        values[key] = file_workspace(value, env_file) if key == "WORKSPACE" else value

    if not host and questions.asking:
        aliases = doctor.ssh_aliases()
        if aliases:
            questions.tell("Host aliases in your ~/.ssh/config:")
            for alias in aliases:
                config = doctor.ssh_config(alias) or {}
                where = ("" if "error" in config
                         else f"{config.get('user', '')}@{config.get('hostname', alias)}:{config.get('port', '22')}")
                questions.tell(f"  {alias:<20} {where}")
        else:
            questions.tell("No Host aliases in ~/.ssh/config: give user@host[:port], or local for this machine.")
        default_host = aliases[0] if aliases else "local"
    else:
        default_host = "local"
    take("REMOTE_HOST", host, "REMOTE_HOST (an alias, user@host[:port], or local)", default_host)
    take("WORKSPACE", workspace, "WORKSPACE (the checkout to sync and run)", ".")
    chosen = check(values, env_file)
    take("REMOTE_DIR", remote_dir, "REMOTE_DIR (on the host)", settings_mod.default_remote_dir(chosen.workspace))
    chosen = check(values, env_file)
    if torch_index_url or Host(chosen, c).uses_venv:  # only a venv built on the host installs torch from it
        suggested = None if torch_index_url else cuda_index(c, chosen)
        default = suggested or next(k.default for k in settings_mod.KEYS if k.name == "TORCH_INDEX_URL")
        if torch_index_url or suggested or questions.asking:
            take("TORCH_INDEX_URL", torch_index_url,
                 "TORCH_INDEX_URL (the index bootstrap installs torch from)", default)
    return values


def cuda_index(c, chosen) -> str | None:
    """The CUDA wheel index that fits the host's driver, from doctor's look at it (None if it has none)."""
    from . import doctor
    from .output import say
    from .transport import Host

    say(f"looking at the GPUs of {chosen.host.spec} to choose TORCH_INDEX_URL ...")
    try:
        _, data = doctor.host_checks(Host(chosen, c))
    except Failure:
        data = None
    cuda = ((data or {}).get("gpu") or {}).get("cuda")
    suggested = doctor.suggest_index(cuda)
    if suggested:
        say(f"the NVIDIA driver on {chosen.host.spec} supports CUDA {cuda}: TORCH_INDEX_URL={suggested} fits it")
    else:
        say(f"no NVIDIA driver seen on {chosen.host.spec}: no CUDA wheel index to suggest")
    return suggested
