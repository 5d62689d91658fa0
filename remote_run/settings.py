"""The one settings object: built-in defaults < .env < process environment < command-line flags."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import Failure

ENV_FILE_VARIABLE = "REMOTE_RUN_ENV_FILE"

# name: (default, help). The default may be a callable of the values read so far.
KEYS = {
    "REMOTE_HOST": ("local", "ssh_config alias or user@host[:port]; `local` runs on this machine"),
    "WORKSPACE": (".", "the local checkout to sync and run (default: the current directory)"),
    "REMOTE_DIR": ("", "absolute remote directory owned by remote-run (default /tmp/<workspace name>_remote)"),
    "SYNC_EXCLUDE": ("", "extra rsync exclude patterns, comma or space separated"),
    "REMOTE_PYTHON": ("", "use this existing remote interpreter instead of creating REMOTE_DIR/.venv"),
    "TORCH_INDEX_URL": ("https://download.pytorch.org/whl/cu121", "index for TORCH_PACKAGES; empty = the default index"),
    "TORCH_PACKAGES": ("torch torchvision", "what bootstrap installs from TORCH_INDEX_URL; empty = nothing"),
    "PIP_PACKAGES": ("", "extra packages bootstrap installs from the default index"),
    "CUDA_VISIBLE_DEVICES": ("0", "GPUs a run may use: indices or UUIDs, comma separated"),
    "REMOTE_ENV": ("", "names of local variables forwarded to remote runs, e.g. WANDB_API_KEY,HF_TOKEN"),
    "RUNS_DIR": ("var/runs", "local run records and pulled logs; relative paths are inside WORKSPACE"),
    "TRAIN_IMPL": ("builtin", "train-hlb/train-david runner: `builtin` (self-contained) or `workspace` (CVlization modules)"),
    "HLB_MODULE": ("cvlization.torch.training_pipeline.image_classification.hlb", "workspace module train-hlb calls"),
    "DAVID_NET_MODULE": ("cvlization.torch.net.image_classification.davidnet.dawn_utils", "workspace module with net() and Network"),
    "DAVID_TRAINER_MODULE": ("cvlization.torch.trainer.david_trainer", "workspace module with DavidTrainer"),
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_HOST = re.compile(r"(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@)?(?P<host>[A-Za-z0-9_][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?\Z")
_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+\-\[\],<>=!~*]*\Z")
_DEVICES = re.compile(r"(?:-1|[0-9]+|(?:GPU|MIG)-[A-Za-z0-9/-]+)(?:,(?:[0-9]+|(?:GPU|MIG)-[A-Za-z0-9/-]+))*\Z")
_URL = re.compile(r"(?:https?|file)://[^\s'\"`$\\;|&<>]+\Z")


def bad(key: str, value, allowed: str) -> Failure:
    """The one shape of a settings error: the key, the value and what is allowed."""
    return Failure(f"{key}={value!r} is not valid: {allowed}")


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


def parse_host(value: str) -> Host:
    if value == "local":
        return Host("local", name="local")
    match = _HOST.match(value)
    if not match:
        raise bad("REMOTE_HOST", value, "use `local`, an ssh_config alias such as l1, or user@host[:port]")
    port = match["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise bad("REMOTE_HOST", value, "the port must be 1-65535")
    return Host(value, match["user"], match["host"], int(port) if port else None)


def check_remote_dir(value: str) -> str:
    allowed = "use an absolute path without `..`, `~` or shell characters, below /, e.g. /tmp/myproject_remote"
    if not value.startswith("/") or "\0" in value or "\n" in value:
        raise bad("REMOTE_DIR", value, allowed)
    parts = [p for p in value.split("/") if p]
    if not parts or ".." in parts or any(p == "." for p in parts) or value.startswith("~"):
        raise bad("REMOTE_DIR", value, allowed)
    if not re.fullmatch(r"[A-Za-z0-9._+@%=,/ -]+", value):  # no ':' (PYTHONPATH separator)
        raise bad("REMOTE_DIR", value, allowed)
    return "/" + "/".join(parts)


def default_remote_dir(workspace: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "_", workspace.name.lower()).strip("._-") or "workspace"
    return f"/tmp/{name}_remote"


@dataclass(frozen=True)
class Settings:
    host: Host
    workspace: Path
    remote_dir: str
    sync_exclude: tuple[str, ...]
    remote_python: str
    torch_index_url: str
    torch_packages: tuple[str, ...]
    pip_packages: tuple[str, ...]
    cuda_visible_devices: str
    remote_env: tuple[str, ...]
    runs_dir: Path
    train_impl: str
    hlb_module: str
    david_net_module: str
    david_trainer_module: str
    env_file: Path | None = None
    # Everything read from .env and the process environment, for forwarding REMOTE_ENV names.
    variables: dict = field(default_factory=dict, repr=False, compare=False)

    def forwarded_env(self) -> dict[str, str]:
        """Values of the REMOTE_ENV names (load() made sure each has one)."""
        return {name: self.variables[name] for name in self.remote_env}

    def describe(self) -> dict:
        """The settings as plain values, without forwarded secrets (for records and --help)."""
        out = {}
        for f in fields(self):
            if f.name == "variables":
                continue
            value = getattr(self, f.name)
            out[f.name] = value.spec if isinstance(value, Host) else str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        return out


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a .env file with python-dotenv; a line it cannot parse is an error naming the line."""
    from dotenv.main import DotEnv
    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise Failure(f"cannot read env file {path}: {exc.strerror}; fix the path given by --env-file or {ENV_FILE_VARIABLE}") from None
    except UnicodeDecodeError:
        raise Failure(f"env file {path} is not UTF-8 text; save it as UTF-8") from None
    import io

    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            lineno = binding.original.line
            raw = binding.original.string.strip().splitlines()[0] if binding.original.string.strip() else ""
            raise Failure(f"{path} line {lineno}: cannot parse {raw!r}; write KEY=VALUE (quote values with spaces)")
    values = DotEnv(path, interpolate=True).dict()
    return {k: v for k, v in values.items() if v is not None}


def find_env_file(environ, explicit: str | None) -> Path | None:
    given = explicit or environ.get(ENV_FILE_VARIABLE)
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise Failure(f"env file {given!r} does not exist; fix --env-file or {ENV_FILE_VARIABLE}")
        return path
    path = Path.cwd() / ".env"
    return path if path.is_file() else None


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
    if isinstance(text, float) and not text.is_integer():
        raise bad(key, text, f"give a whole number from {low} to {high}")
    if isinstance(text, str) and not re.fullmatch(r"\s*[0-9]+\s*", text):
        raise bad(key, text, f"give a whole number from {low} to {high}")
    return _number(key, text, int, low, high, f"give a whole number from {low} to {high}")


def module_name(key: str, value: str) -> str:
    if not _MODULE.match(value or ""):
        raise bad(key, value, "give a dotted Python module name, e.g. package.module")
    return value


def load(environ=None, env_file: str | None = None, overrides: dict | None = None) -> Settings:
    """Build the settings from defaults, the .env file, the environment and ``overrides`` (flags)."""
    environ = dict(os.environ if environ is None else environ)
    path = find_env_file(environ, env_file)
    file_values = read_env_file(path) if path else {}
    merged = {**file_values, **environ}
    raw = {key: merged.get(key, default) for key, (default, _) in KEYS.items()}
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})

    workspace = Path(raw["WORKSPACE"]).expanduser()
    if not workspace.is_absolute():
        base = path.parent if path and "WORKSPACE" in file_values and "WORKSPACE" not in environ else Path.cwd()
        workspace = base / workspace
    workspace = workspace.resolve()
    if not workspace.exists():
        raise bad("WORKSPACE", raw["WORKSPACE"], "it does not exist; point it at your checkout")
    if not workspace.is_dir():
        raise bad("WORKSPACE", raw["WORKSPACE"], "it is not a directory; point it at your checkout")

    host = parse_host(raw["REMOTE_HOST"])
    remote_dir = check_remote_dir(raw["REMOTE_DIR"] or default_remote_dir(workspace))

    excludes = tuple(split_list(raw["SYNC_EXCLUDE"]))
    for pattern in excludes:
        if pattern.startswith("-") or any(ch in pattern for ch in "\n\0"):
            raise bad("SYNC_EXCLUDE", pattern, "give rsync patterns such as data/ or *.ckpt, not options")

    remote_python = raw["REMOTE_PYTHON"].strip()
    if remote_python and not re.fullmatch(r"[A-Za-z0-9._+/-]+", remote_python):
        raise bad("REMOTE_PYTHON", remote_python, "give an interpreter path or name such as /usr/bin/python3")
    if remote_python.startswith("-"):
        raise bad("REMOTE_PYTHON", remote_python, "give an interpreter path or name such as /usr/bin/python3")

    index_url = raw["TORCH_INDEX_URL"].strip()
    if index_url and not _URL.match(index_url):
        raise bad("TORCH_INDEX_URL", index_url, "give an http(s):// or file:// URL, or leave it empty for the default index")

    def packages(key):
        items = tuple(split_list(raw[key]))
        for item in items:
            if not _PACKAGE.match(item):
                raise bad(key, item, "give pip requirement names such as torch or numpy<2, space separated")
        return items

    devices = raw["CUDA_VISIBLE_DEVICES"].strip().replace(" ", "")
    if devices and not _DEVICES.match(devices):
        raise bad("CUDA_VISIBLE_DEVICES", raw["CUDA_VISIBLE_DEVICES"], "give GPU indices or UUIDs, comma separated, e.g. 0 or 0,1")

    names = tuple(split_list(raw["REMOTE_ENV"]))
    for name in names:
        if not _NAME.match(name):
            raise bad("REMOTE_ENV", name, "give variable names (letters, digits, _), comma separated, e.g. WANDB_API_KEY,HF_TOKEN")
    missing = [name for name in names if name not in merged]
    if missing:
        raise bad("REMOTE_ENV", raw["REMOTE_ENV"], f"{', '.join(missing)} has no value here; set it in the environment or .env, or drop it from REMOTE_ENV")

    runs_dir = Path(raw["RUNS_DIR"]).expanduser()
    runs_dir = (runs_dir if runs_dir.is_absolute() else workspace / runs_dir).resolve()
    if runs_dir.exists() and not runs_dir.is_dir():
        raise bad("RUNS_DIR", raw["RUNS_DIR"], "it exists and is not a directory")

    impl = raw["TRAIN_IMPL"].strip()
    if impl not in ("builtin", "workspace"):
        raise bad("TRAIN_IMPL", impl, "use `builtin` or `workspace`")

    return Settings(
        host=host,
        workspace=workspace,
        remote_dir=remote_dir,
        sync_exclude=excludes,
        remote_python=remote_python,
        torch_index_url=index_url,
        torch_packages=packages("TORCH_PACKAGES"),
        pip_packages=packages("PIP_PACKAGES"),
        cuda_visible_devices=devices,
        remote_env=names,
        runs_dir=runs_dir,
        train_impl=impl,
        hlb_module=module_name("HLB_MODULE", raw["HLB_MODULE"]),
        david_net_module=module_name("DAVID_NET_MODULE", raw["DAVID_NET_MODULE"]),
        david_trainer_module=module_name("DAVID_TRAINER_MODULE", raw["DAVID_TRAINER_MODULE"]),
        env_file=path,
        variables=merged,
    )
