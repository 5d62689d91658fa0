"""The SkyPilot task `inv sky-up` launches: resources, the workspace as workdir, and the setup."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import Failure, Kind
from ..shell import join

# `sky launch` runs this once per node: uv if missing, then the project's dependencies. A `\` at a
# line's end is Python's (the script gets the two lines as one).
SETUP = """\
set -e
if ! command -v uv >/dev/null 2>&1 && [ ! -x "$HOME/.local/bin/uv" ]; then
  curl -LsSf https://astral.sh/uv/install.sh | sh || true
  [ -x "$HOME/.local/bin/uv" ] || pip install uv
fi
export PATH="$HOME/.local/bin:$PATH"
grep -q 'remote-run: uv' ~/.bashrc 2>/dev/null \
|| echo 'export PATH="$HOME/.local/bin:$PATH"  # remote-run: uv' >> ~/.bashrc
"""
SYNC = {"gpu": ["uv", "sync", "--group", "dev", "--extra", "gpu"], "tpu": ["uv", "sync", "--extra", "tpu"]}
RUN = {"gpu": ["uv", "run", "--group", "dev", "--extra", "gpu", "python"],
       "tpu": ["uv", "run", "--extra", "tpu", "python"]}


def uv_command(verb: str, target: str, workspace: Path, choice=None) -> list:
    """`uv sync` or `uv run ... python` on the cluster: with the extras, groups and --frozen that
    bootstrap uses on an SSH host (remote_run.environment.choose) when any is set, and uv.lock
    checked (--locked) as there; else the playbook's (SYNC, RUN)."""
    if choice is None or not (choice.extras or choice.groups or choice.frozen):
        return list((SYNC if verb == "sync" else RUN)[target])
    argv = ["uv", verb]
    if choice.frozen or (workspace / "uv.lock").is_file():
        argv.append("--frozen" if choice.frozen else "--locked")
    for group in choice.groups:
        argv += ["--group", group]
    for extra in choice.extras:
        argv += ["--extra", extra]
    return argv + (["python"] if verb == "run" else [])


def _quoted(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def task_yaml(*, name: str, workdir: Path, accel: str, target: str, nodes: int = 1, infra: str | None = None,
              cuda_visible_devices: str = "", choice=None) -> str:
    lines = [
        "# SkyPilot task rendered by remote-run `inv sky-up`; it provisions and sets up, it runs nothing.",
        f"name: {_quoted(name)}",
        f"workdir: {_quoted(str(workdir))}",
        f"num_nodes: {int(nodes)}",
        "resources:",
        f"  accelerators: {_quoted(accel)}",
    ]
    if infra:
        lines.append(f"  infra: {_quoted(infra)}")
    if target == "gpu" and cuda_visible_devices:
        lines += ["envs:", f"  CUDA_VISIBLE_DEVICES: {_quoted(cuda_visible_devices)}"]
    setup = SETUP + join(uv_command("sync", target, Path(workdir), choice)) + "\n"
    lines += ["setup: |", *[f"  {line}" for line in setup.splitlines()]]
    return "\n".join(lines) + "\n"


def staging_dir(name: str) -> Path:
    """Where the task YAML for cluster ``name`` is rendered: ~/.cache/remote-run/sky/NAME, outside the checkout."""
    path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "remote-run" / "sky" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_workspace_extras(workspace: Path, target: str) -> None:
    """The cluster's setup runs `uv sync --extra TARGET` in the workspace: refuse early if it cannot."""
    pyproject = workspace / "pyproject.toml"
    if not pyproject.is_file():
        raise Failure(f"{workspace} has no pyproject.toml, but the cluster's setup runs `{join(SYNC[target])}` there",
                      f"add one with a `{target}` extra", Kind.ENVIRONMENT)
    try:
        import tomllib
    except ImportError:  # Python 3.10: the cluster's setup will say it
        return
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise Failure(f"{pyproject} cannot be read as TOML ({exc})", "fix it before `inv sky-up`",
                      Kind.ENVIRONMENT) from None
    extras = data.get("project", {}).get("optional-dependencies", {})
    if target not in extras:
        raise Failure(f"{pyproject} has no `{target}` extra, but the cluster's setup runs `{join(SYNC[target])}`",
                      f"add [project.optional-dependencies] {target} = [...]", Kind.ENVIRONMENT)
    if target == "gpu" and "dev" not in data.get("dependency-groups", {}):
        raise Failure(f"{pyproject} has no `dev` dependency group, but the cluster's setup runs `{join(SYNC[target])}`",
                      "add [dependency-groups] dev = [...]", Kind.ENVIRONMENT)
