"""The one settings object, from one table: built-in defaults < .env < process environment < flags.

Every key is a row of KEYS (name, default, parser, help); loading, validation, `describe()`, the
README's table and `.env.example` all come from it (tests/fast/test_settings.py checks the last two).
`python -m remote_run.settings readme|env-example` prints them.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import notify
from .errors import Failure

ENV_FILE_VARIABLE = "REMOTE_RUN_ENV_FILE"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_HOST = re.compile(r"(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@)?"
                   r"(?P<host>[A-Za-z0-9_][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?\Z")
_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+\-\[\],<>=!~*]*\Z")
_DEVICES = re.compile(r"(?:-1|[0-9]+|(?:GPU|MIG)-[A-Za-z0-9/-]+)(?:,(?:[0-9]+|(?:GPU|MIG)-[A-Za-z0-9/-]+))*\Z")
_URL = re.compile(r"(?:https?|file)://[^\s'\"`$\\;|&<>]+\Z")
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\Z")  # an extra or a dependency group (PEP 685, 735)
_PATH = re.compile(r"[A-Za-z0-9._+@%=,/ -]+\Z")  # no ':' (the PYTHONPATH separator) and no shell characters


def bad(key: str, value, allowed: str = "", *, why: str = "") -> Failure:
    """The one shape of a settings error: the key, the value, ``why`` it is wrong (if the key and
    value do not say it) and what is allowed, which is the fix."""
    return Failure(f"{key}={value!r} is not valid" + (f": {why}" if why else ""), allowed)


def split_list(text: str) -> list[str]:
    return [part for part in re.split(r"[,\s]+", text.strip()) if part]


@dataclass(frozen=True)
class Host:
    """REMOTE_HOST as the user wrote it, and its parts when written as user@host[:port]."""

    spec: str
    user: str | None = None
    name: str = ""
    port: int | None = None

    @property
    def is_local(self) -> bool:
        return self.spec == "local"

    @property
    def ssh_destination(self) -> str:
        """What OpenSSH gets, so that ssh_config applies to an alias in full."""
        return f"{self.user}@{self.name}" if self.user else self.name


# ------------------------------------------------------------------------------- parsers
# Each takes the raw text and the Loading in progress (values parsed so far, where each came from).

def parse_hosts(value: str, loading=None) -> tuple:
    """REMOTE_HOST: one host, or several comma separated (not `local`, none twice)."""
    if "," not in value:
        return (parse_host(value),)
    hosts = tuple(parse_host(part.strip()) for part in value.split(","))
    if any(h.is_local for h in hosts) or len({h.spec for h in hosts}) != len(hosts) or any(not h.spec for h in hosts):
        raise bad("REMOTE_HOST", value,
                  "list SSH hosts, each once, comma separated (l1,l2,l3); `local` is one host on its own")
    return hosts


def parse_host(value: str, loading=None) -> Host:
    if value == "local":
        return Host("local", name="local")
    match = _HOST.match(value)
    if not match:
        raise bad("REMOTE_HOST", value, "use `local`, an ssh_config alias such as l1, or user@host[:port]")
    port = match["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise bad("REMOTE_HOST", value, "the port must be 1-65535")
    return Host(value, match["user"], match["host"], int(port) if port else None)


def _workspace(value: str, loading) -> Path:
    workspace = Path(value).expanduser()
    if not workspace.is_absolute():
        base = loading.env_file.parent if loading.origin("WORKSPACE") == "file" else Path.cwd()
        workspace = base / workspace
    workspace = workspace.resolve()
    if not workspace.exists():
        raise bad("WORKSPACE", value, "point it at your checkout", why="it does not exist")
    if not workspace.is_dir():
        raise bad("WORKSPACE", value, "point it at your checkout", why="it is not a directory")
    return workspace


def default_remote_dir(workspace: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "_", workspace.name.lower()).strip("._-") or "workspace"
    return f"/tmp/{name}_remote"


def check_remote_dir(value: str, loading=None) -> str:
    allowed = "use an absolute path without `..`, `~` or shell characters, below /, e.g. /tmp/myproject_remote"
    if not value and loading is not None:
        value = default_remote_dir(loading.values["WORKSPACE"])
    if not value.startswith("/") or "\0" in value or "\n" in value:
        raise bad("REMOTE_DIR", value, allowed)
    parts = [p for p in value.split("/") if p]
    if not parts or ".." in parts or any(p == "." for p in parts) or not _PATH.match(value):
        raise bad("REMOTE_DIR", value, allowed)
    return "/" + "/".join(parts)


def _excludes(value: str, loading) -> tuple[str, ...]:
    patterns = tuple(split_list(value))
    for pattern in patterns:
        if pattern.startswith("-") or any(ch in pattern for ch in "\n\0"):
            raise bad("SYNC_EXCLUDE", pattern, "give rsync patterns such as data/ or *.ckpt, not options")
    return patterns


def sync_paths(key: str, workspace: Path, paths) -> tuple[str, ...]:
    """SYNC_ONLY / --only: workspace paths as relative, /-separated text; each inside the workspace
    (an absolute path must be in it), without `..`, existing, and not reached through a symbolic link."""
    found = []
    for given in paths:
        text = str(given)
        if not text.strip() or any(ord(ch) < 32 for ch in text):
            raise bad(key, given, "give workspace paths such as lib or examples/x")
        path = Path(text)
        if path.is_absolute():
            for base in (path, path.parent.resolve() / path.name):
                try:
                    path = base.relative_to(workspace)
                    break
                except ValueError:
                    pass
            else:
                raise bad(key, given, "give a path inside it, e.g. examples/x",
                          why=f"it is outside the workspace {workspace}")
        parts = [part for part in path.as_posix().split("/") if part not in ("", ".")]
        if ".." in parts:
            raise bad(key, given, "give a path inside the workspace, without `..`, e.g. examples/x")
        if not parts:
            raise bad(key, given, "leave it out to sync everything", why="that is the whole workspace")
        here = workspace
        for depth, part in enumerate(parts, 1):
            here = here / part
            if not os.path.lexists(here):
                raise bad(key, given, why=f"{'/'.join(parts[:depth])} does not exist in the workspace {workspace}")
            if depth < len(parts) and (here.is_symlink() or not here.is_dir()):
                raise bad(key, given, "name it or a real folder",
                          why=f"{'/'.join(parts[:depth])} is a symbolic link or a file, which a sync sends as it is")
        found.append("/".join(parts))
    return tuple(dict.fromkeys(found))


def _only(value: str, loading) -> tuple[str, ...]:
    return sync_paths("SYNC_ONLY", loading.values["WORKSPACE"], split_list(value))


def _sync_limit(key: str, unit: str):
    return lambda value, loading: _number(key, value.strip() if isinstance(value, str) else value, int, 0, 10**12,
                                          f"give a whole number of {unit}, 0 for no limit")


def _switch(key: str):
    def parse(value, loading) -> bool:
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise bad(key, value, "give 1 (on) or 0 (off)")
    return parse


def _python(value: str, loading) -> str:
    value = value.strip()
    if value and (not re.fullmatch(r"[A-Za-z0-9._+/-]+", value) or value.startswith("-")):
        raise bad("REMOTE_PYTHON", value, "give an interpreter path or name such as /usr/bin/python3")
    return value


def _url(value: str, loading) -> str:
    value = value.strip()
    if value and not _URL.match(value):
        raise bad("TORCH_INDEX_URL", value,
                  "give an http(s):// or file:// URL, or leave it empty for the default index")
    return value


def _packages(key: str):
    def parse(value: str, loading) -> tuple[str, ...]:
        items = tuple(split_list(value))
        for item in items:
            if item in (".", "-e", "-r", "--editable", "--requirement") or item.endswith(("pyproject.toml", ".txt")):
                raise bad(key, item, "bootstrap installs the workspace's own pyproject.toml (with BOOTSTRAP_EXTRAS) "
                                     "and requirements.txt by itself; give only extra requirement names here")
            if not _PACKAGE.match(item):
                raise bad(key, item, "give pip requirement names such as torch or numpy<2, space separated")
        return items
    return parse


def project_names(key: str, value, kind: str) -> tuple[str, ...]:
    """Extras or dependency groups, as a setting or flags give them: checked names, in order."""
    items = tuple(dict.fromkeys(split_list(value) if isinstance(value, str) else value))
    for item in items:
        if not _NAME.match(item):
            raise bad(key, item, f"give {kind} names of the project's pyproject.toml, such as gpu or dev")
    return items


def _names(key: str, kind: str):
    return lambda value, loading: project_names(key, value, kind)


def _bool(key: str):
    def parse(value: str, loading) -> bool:
        word = value.strip().lower()
        if word not in ("0", "1", "true", "false", "yes", "no", ""):
            raise bad(key, value, "use 1 or 0")
        return word in ("1", "true", "yes")
    return parse


def _devices(value: str, loading) -> str:
    devices = value.strip().replace(" ", "")
    if devices and devices != "auto" and not _DEVICES.match(devices):
        raise bad("CUDA_VISIBLE_DEVICES", value, "give GPU indices or UUIDs, comma separated, e.g. 0 or 0,1, or auto")
    return devices


def _forwarded(value: str, loading) -> tuple[str, ...]:
    names = tuple(split_list(value))
    for name in names:
        if not _NAME.match(name):
            raise bad("REMOTE_ENV", name,
                      "give variable names (letters, digits, _), comma separated, e.g. WANDB_API_KEY,HF_TOKEN")
    missing = [name for name in names if name not in loading.variables]
    if missing:
        raise bad("REMOTE_ENV", value, "set it in the environment or .env, or drop it from REMOTE_ENV",
                  why=f"{', '.join(missing)} has no value here")
    return names


def _runs_dir(value: str, loading) -> Path:
    runs_dir = Path(value).expanduser()
    runs_dir = (runs_dir if runs_dir.is_absolute() else loading.values["WORKSPACE"] / runs_dir).resolve()
    if runs_dir.exists() and not runs_dir.is_dir():
        raise bad("RUNS_DIR", value, why="it exists and is not a directory")
    return runs_dir


def _choice(key: str, choices: tuple[str, ...]):
    def parse(value: str, loading) -> str:
        value = value.strip()
        if value not in choices:
            raise bad(key, value, "use " + " or ".join(f"`{c}`" for c in choices))
        return value
    return parse


def module_name(key: str, value: str, loading=None) -> str:
    if not _MODULE.match(value or ""):
        raise bad(key, value, "give a dotted Python module name, e.g. package.module")
    return value


def _module(key: str):
    return lambda value, loading: module_name(key, value)


def _number(key: str, text, kind, low, high, allowed: str):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise bad(key, text, allowed) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise bad(key, text, allowed)
    inside = low < value <= high if kind is float else low <= value <= high
    if not inside:
        raise bad(key, text, allowed)
    return value


def positive_float(key: str, text, high: float = 10_000.0) -> float:
    return _number(key, text, float, 0.0, high, f"give a number above 0 and at most {high:g}, e.g. 11.5")


def int_between(key: str, text, low: int, high: int) -> int:
    allowed = f"give a whole number from {low} to {high}"
    if isinstance(text, float) and not text.is_integer():
        raise bad(key, text, allowed)
    if isinstance(text, str) and not re.fullmatch(r"\s*[0-9]+\s*", text):
        raise bad(key, text, allowed)
    return _number(key, text, int, low, high, allowed)


def _seconds(key: str, high: float):
    return lambda value, loading: positive_float(key, value, high)


def _sample_seconds(value: str, loading) -> float:
    seconds = _number("GPU_SAMPLE_SECONDS", value, float, -1.0, 3600.0,
                      "give seconds between GPU samples, 0.1 to 3600, or 0 for none")
    if 0 < seconds < 0.1 or seconds < 0:
        raise bad("GPU_SAMPLE_SECONDS", value, "give seconds between GPU samples, 0.1 to 3600, or 0 for none")
    return seconds


def _gigabytes(value: str, loading) -> float:
    allowed = "give gigabytes from 0 (no minimum) to 1000000, e.g. 20"
    gigabytes = _number("DOCTOR_MIN_FREE_GB", value, float, -1.0, 1e6, allowed)
    if gigabytes < 0:
        raise bad("DOCTOR_MIN_FREE_GB", value, allowed)
    return gigabytes


ENVIRONMENTS = ("auto", "docker", "none")


def _run_environment(value: str, loading) -> str:
    """RUN_ENVIRONMENT; left unset, the workspace's pyproject.toml may say it ([tool.remote-run] environment)."""
    allowed = "use " + " or ".join(f"`{c}`" for c in ENVIRONMENTS)
    if loading.origin("RUN_ENVIRONMENT") == "default":
        from .project import tool_table

        given = tool_table(loading.values["WORKSPACE"]).get("environment")
        if given is not None:
            if given not in ENVIRONMENTS:
                where = loading.values["WORKSPACE"] / "pyproject.toml"
                raise Failure(f"{where}: [tool.remote-run] environment = {given!r} is not valid", allowed)
            return given
    return _choice("RUN_ENVIRONMENT", ENVIRONMENTS)(value, loading)


def _control_dir(value: str, loading) -> Path:
    path = Path(value or f"/tmp/remote-run-{os.getuid()}")
    # ssh appends the master's socket name (%C, 40 characters) and a temporary suffix; a Unix
    # socket path holds at most 107 bytes.
    if not path.is_absolute() or len(str(path)) > 48 or not _PATH.match(str(path)):
        raise bad("REMOTE_RUN_CONTROL_DIR", value,
                  "give an absolute directory of at most 48 characters without shell characters, e.g. /tmp/rr-me")
    return path


# ---------------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Key:
    name: str  # also the name in .env and the environment
    default: str  # raw text, parsed like any other value
    parse: Callable[[str, Any], Any]
    help: str
    shown_default: str = ""  # how the docs show the default, when not the raw text
    example: str = ""  # a commented-out example line in .env.example, for keys with an empty default
    field: str = ""  # the Settings attribute, when not the lower-case name without REMOTE_RUN_

    @property
    def attribute(self) -> str:
        return self.field or self.name.lower().removeprefix("remote_run_")


KEYS = (
    Key("REMOTE_HOST", "local", parse_hosts,
        "ssh_config alias (`l1`), `user@host[:port]`, or `local` for this machine; several, comma separated "
        "(`l1,l2,l3`): a run goes to the first with free GPUs (with `--wait`, the shortest queue)", field="hosts"),
    Key("WORKSPACE", ".", _workspace, "the checkout to sync and run; relative to the `.env` it is written in",
        shown_default="current directory"),
    Key("REMOTE_DIR", "", check_remote_dir,
        "absolute directory remote-run owns on the host (`/tmp/cvlization_remote` for a CVlization checkout)",
        shown_default="`/tmp/<workspace name>_remote`", example="/tmp/cvlization_remote"),
    Key("SYNC_EXCLUDE", "", _excludes,
        "extra rsync exclude patterns, comma/space separated, added to `.git var .venv __pycache__ .env .env.*` "
        "(but `.env.example` is synced) and `RUNS_DIR`",
        example="data/raw,*.ckpt"),
    Key("SYNC_ONLY", "", _only,
        "workspace paths (folders or files), comma/space separated: a sync mirrors only these and leaves everything "
        "else in `REMOTE_DIR` alone; `--only PATH` overrides it; empty = the whole workspace",
        example="cvlization,examples/x"),
    Key("SYNC_GITIGNORE", "1", _switch("SYNC_GITIGNORE"),
        "1: a sync leaves out what git ignores (`git ls-files --others --ignored --exclude-standard`; files git "
        "tracks are always sent; `.remoteignore`'s `!pattern` brings a path back); 0: `.gitignore` plays no part"),
    Key("SYNC_MAX_MB", "1000", _sync_limit("SYNC_MAX_MB", "megabytes (10^6 bytes)"),
        "a sync that would upload more megabytes stops before sending anything and names the largest folders "
        "(`--force` goes on); 0 = no limit"),
    Key("SYNC_MAX_FILES", "50000", _sync_limit("SYNC_MAX_FILES", "files"),
        "a sync that would upload more files stops before sending anything and names the largest folders "
        "(`--force` goes on); 0 = no limit"),
    Key("REMOTE_PYTHON", "", _python, "use this interpreter on the host instead of creating `REMOTE_DIR/.venv`",
        shown_default="— (on `local`: the Python running remote-run)", example="/usr/bin/python3"),
    Key("TORCH_INDEX_URL", "https://download.pytorch.org/whl/cu121", _url,
        "index for `TORCH_PACKAGES`; empty = the default index"),
    Key("TORCH_PACKAGES", "torch torchvision", _packages("TORCH_PACKAGES"),
        "what bootstrap installs from `TORCH_INDEX_URL`; empty = nothing"),
    Key("PIP_PACKAGES", "", _packages("PIP_PACKAGES"), "extra packages bootstrap installs", example="numpy tqdm"),
    Key("BOOTSTRAP_INSTALLER", "auto", _choice("BOOTSTRAP_INSTALLER", ("auto", "uv", "pip")),
        "what builds `REMOTE_DIR/.venv`: `auto`: the host's uv, else uv installed once into "
        "`REMOTE_DIR/.remote-run/uv`, else pip; `uv`: never pip; `pip`: `python3 -m venv` and pip"),
    Key("BOOTSTRAP_EXTRAS", "", _names("BOOTSTRAP_EXTRAS", "extra"),
        "extras of the workspace's pyproject.toml that bootstrap installs (`uv sync --extra NAME`, or "
        "`pip install -e '.[NAME]'` without `uv.lock`); `--extra NAME` replaces them for one command",
        example="gpu"),
    Key("BOOTSTRAP_GROUPS", "", _names("BOOTSTRAP_GROUPS", "dependency group"),
        "dependency groups of the workspace's pyproject.toml that bootstrap installs (`uv sync --group NAME`); "
        "`--group NAME` replaces them for one command", example="dev"),
    Key("BOOTSTRAP_FROZEN", "0", _bool("BOOTSTRAP_FROZEN"),
        "`1`: install `uv.lock` as it is (`uv sync --frozen`) even when it is out of date with pyproject.toml; "
        "`0`: refuse an out-of-date lock (`uv sync --locked`); `--frozen` sets it for one command"),
    Key("BOOTSTRAP_PYTHON_DOWNLOADS", "never", _choice("BOOTSTRAP_PYTHON_DOWNLOADS", ("never", "automatic")),
        "`automatic`: uv may download the Python that `.python-version` or `requires-python` wants when the "
        "host's does not fit (uv's `UV_PYTHON_DOWNLOADS`); `never`: bootstrap says what is wanted instead"),
    Key("RUN_ENVIRONMENT", "auto", _run_environment,
        "what runs need on the host: `auto`: the project's own environment, which bootstrap builds; `docker`: "
        "runs start their own containers, so bootstrap builds nothing and the GPU check also checks Docker's "
        "NVIDIA runtime; `none`: runs use the host's `python3` as it is; unset, the workspace's `pyproject.toml` "
        "may say it (`[tool.remote-run]` `environment = \"docker\"`)"),
    Key("CUDA_VISIBLE_DEVICES", "0", _devices,
        "GPUs a run may use (indices or UUIDs); gpu-check checks these; `auto`: the idle ones (`--gpus N`, default 1), "
        "least memory used first"),
    Key("REMOTE_ENV", "", _forwarded,
        "names of local variables (environment or `.env`) forwarded to runs, e.g. `WANDB_API_KEY,HF_TOKEN`",
        example="WANDB_API_KEY,HF_TOKEN"),
    Key("NOTIFY_CMD", "", notify.parse_command,
        "a command run here when a followed run ends (finished, failed, killed), with `REMOTE_RUN_ID`, "
        "`REMOTE_RUN_OUTCOME`, `REMOTE_RUN_EXIT`, `REMOTE_RUN_RESULT` in its environment; split like a shell would, "
        "never run by one",
        example="notify-send remote-run"),
    Key("NOTIFY_URL", "", notify.parse_url,
        "a webhook the host calls when a run ends, even detached (POST: a text body for ntfy.sh, "
        "else Slack-compatible JSON `{\"text\": ...}`); a secret like `REMOTE_ENV` values",
        example="https://ntfy.sh/my-private-topic"),
    Key("RUNS_DIR", "var/runs", _runs_dir, "local run records and pulled logs; relative = inside `WORKSPACE`"),
    Key("TRAIN_IMPL", "builtin", _choice("TRAIN_IMPL", ("builtin", "workspace")),
        "`builtin`: self-contained trainers; `workspace`: the workspace's (CVlization) modules"),
    Key("HLB_MODULE", "cvlization.torch.training_pipeline.image_classification.hlb", _module("HLB_MODULE"),
        "module train-hlb calls with `--impl workspace`"),
    Key("DAVID_NET_MODULE", "cvlization.torch.net.image_classification.davidnet.dawn_utils",
        _module("DAVID_NET_MODULE"), "module with `net()` and `Network`"),
    Key("DAVID_TRAINER_MODULE", "cvlization.torch.trainer.david_trainer", _module("DAVID_TRAINER_MODULE"),
        "module with `DavidTrainer`"),
    Key("GPU_SAMPLE_SECONDS", "2", _sample_seconds,
        "seconds between the samples of the run's GPUs (utilisation, memory, power) the host writes to "
        "`.remote-run/runs/<id>/gpu.csv`; 0 = none"),
    Key("REMOTE_RUN_CHECK_TIMEOUT", "60", _seconds("REMOTE_RUN_CHECK_TIMEOUT", 3600),
        "seconds the quick remote checks (GPU query, run listing) may take, so a hung `nvidia-smi` cannot hang "
        "the tool; runs never time out"),
    Key("REMOTE_RUN_CONTROL_DIR", "", _control_dir,
        "private directory (yours, mode 700) for the SSH ControlMaster sockets",
        shown_default="`/tmp/remote-run-<uid>`", example="/tmp/remote-run-me"),
    Key("REMOTE_RUN_KILL_GRACE", "3", _seconds("REMOTE_RUN_KILL_GRACE", 600),
        "seconds between SIGINT, SIGTERM and SIGKILL when a run is stopped"),
    Key("DOCTOR_MIN_FREE_GB", "20", _gigabytes,
        "free space (GB) `inv doctor` wants on the disk of `REMOTE_DIR`; 0 = no minimum"),
)


@dataclass(frozen=True)
class Settings:
    hosts: tuple  # REMOTE_HOST: one Host, or several to choose from (the chosen one first)
    workspace: Path
    remote_dir: str
    sync_exclude: tuple[str, ...]
    sync_only: tuple[str, ...]
    sync_max_mb: int
    sync_max_files: int
    remote_python: str
    torch_index_url: str
    torch_packages: tuple[str, ...]
    pip_packages: tuple[str, ...]
    bootstrap_installer: str
    bootstrap_extras: tuple[str, ...]
    bootstrap_groups: tuple[str, ...]
    bootstrap_frozen: bool
    bootstrap_python_downloads: str
    run_environment: str
    cuda_visible_devices: str
    remote_env: tuple[str, ...]
    notify_cmd: tuple[str, ...]
    notify_url: notify.Secret | None
    runs_dir: Path
    train_impl: str
    hlb_module: str
    david_net_module: str
    david_trainer_module: str
    gpu_sample_seconds: float
    check_timeout: float
    control_dir: Path
    kill_grace: float
    doctor_min_free_gb: float
    sync_gitignore: bool = True
    env_file: Path | None = None
    # Everything read from .env and the process environment, for forwarding REMOTE_ENV names.
    variables: dict = field(default_factory=dict, repr=False, compare=False)
    # Where each key's value came from: flag, environment, file (.env) or default.
    origins: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def host(self) -> Host:
        """The host this invocation works on (with several, the one chosen; see remote_run.hosts)."""
        return self.hosts[0]

    def forwarded_env(self) -> dict[str, str]:
        """Values of the REMOTE_ENV names (load() made sure each has one)."""
        return {name: self.variables[name] for name in self.remote_env}

    def describe(self) -> dict:
        """Every key and its value as plain data, without forwarded values (for records)."""
        return {key.name: _plain(getattr(self, key.attribute)) for key in KEYS}


def _plain(value):
    if isinstance(value, Host):
        return value.spec
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple) and value and all(isinstance(v, Host) for v in value):
        return ",".join(v.spec for v in value)  # REMOTE_HOST as written, the host a run used first
    if isinstance(value, tuple):
        return list(value)
    return value


class Loading:
    """A load in progress: raw texts, where each came from, and the values parsed so far."""

    def __init__(self, env_file: Path | None, file_values: dict, environ: dict, overrides: dict):
        self.env_file = env_file
        self.variables = {**file_values, **environ}
        self.values: dict[str, Any] = {}
        self._origin, self.raw = {}, {}
        for key in KEYS:
            for origin, source in (("flag", overrides), ("environment", environ), ("file", file_values)):
                if source.get(key.name) is not None:
                    self.raw[key.name], self._origin[key.name] = source[key.name], origin
                    break
            else:
                self.raw[key.name], self._origin[key.name] = key.default, "default"

    def origin(self, name: str) -> str:
        return self._origin[name]


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a .env file with python-dotenv; a line it cannot parse is an error naming the line."""
    import io

    from dotenv.main import DotEnv
    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise Failure(f"cannot read env file {path}: {exc.strerror}",
                      f"fix the path given by --env-file or {ENV_FILE_VARIABLE}") from None
    except UnicodeDecodeError:
        raise Failure(f"env file {path} is not UTF-8 text", "save it as UTF-8") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            lineno = binding.original.line
            raw = binding.original.string.strip().splitlines()[0] if binding.original.string.strip() else ""
            raise Failure(f"{path} line {lineno}: cannot parse {raw!r}", "write KEY=VALUE (quote values with spaces)")
    values = DotEnv(path, interpolate=True).dict()
    return {k: v for k, v in values.items() if v is not None}


def find_env_file(environ, explicit: str | None) -> Path | None:
    given = explicit or environ.get(ENV_FILE_VARIABLE)
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise Failure(f"env file {given!r} does not exist", f"fix --env-file or {ENV_FILE_VARIABLE}")
        return path
    path = Path.cwd() / ".env"
    return path if path.is_file() else None


def load(environ=None, env_file: str | None = None, overrides: dict | None = None) -> Settings:
    """Build the settings from defaults, the .env file, the environment and ``overrides`` (flags)."""
    environ = dict(os.environ if environ is None else environ)
    path = find_env_file(environ, env_file)
    return from_layers(path, read_env_file(path) if path else {}, environ, overrides or {})


def from_layers(path: Path | None, file_values: dict, environ: dict, overrides: dict) -> Settings:
    """Every key parsed from its layers (defaults < ``file_values``, the .env at ``path`` < the
    environment < ``overrides``), in table order: a bad value is its key's one-line error."""
    loading = Loading(path, file_values, environ, overrides)
    for key in KEYS:
        loading.values[key.name] = key.parse(loading.raw[key.name], loading)
    return Settings(**{key.attribute: loading.values[key.name] for key in KEYS}, env_file=path,
                    variables=loading.variables, origins=dict(loading._origin))


# ------------------------------------------------------------------------------------ the docs

def readme_table() -> str:
    """The README's configuration table."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key in KEYS:
        default = key.shown_default or (f"`{key.default}`" if key.default else "—")
        rows.append(f"| `{key.name}` | {default} | {key.help} |")
    return "\n".join(rows) + "\n"


def env_example() -> str:
    """The text of `.env.example`."""
    lines = ["# remote-run settings. Copy to .env (never synced, never committed) and edit.",
             "# Order of precedence: built-in defaults < this file < the process environment < flags.", ""]
    for key in KEYS:
        lines.append("# " + key.help.replace("`", ""))
        lines.append(f"#{key.name}={key.example}" if key.example else f"{key.name}={key.default}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    print(readme_table() if sys.argv[1:] == ["readme"] else env_example(), end="")
