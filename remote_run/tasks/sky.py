"""Tasks for SkyPilot clusters: sky-up, sky-exec, sky-status, sky-down."""

from __future__ import annotations

import shlex
from pathlib import Path

from invoke import task
from invoke.exceptions import Exit

from .. import sky
from ..errors import Failure
from ..settings import int_between, module_name
from ..target import current
from .train import script_in_workspace

TARGET_HELP = "which cluster: gpu (.cluster_name_gpu, the default) or tpu (.cluster_name_tpu)"


@task(name="sky-up", auto_shortflags=False, help={
    "accel": "accelerator: NAME[:COUNT] such as H100:1, A100:8, L4:1, or a TPU such as tpu-v4-8, tpu-v6e-1 (required)",
    "name": "experiment name in the cluster name (default: the workspace directory's name)",
    "idle_minutes": "stop the cluster after this many idle minutes (default 30)",
    "down": "tear the cluster down, not just stop it, when it goes idle (default; --no-down only stops it)",
    "infra": "where to launch, e.g. aws, gcp/us-central1, k8s (default: SkyPilot chooses)",
    "nodes": "number of nodes (default 1)",
    "replace": "tear down the cluster named in .cluster_name_<target> and launch a new one",
})
def sky_up(c, accel="", name=None, idle_minutes="30", down=True, infra=None, nodes="1", replace=False):
    """Launch a SkyPilot cluster with uv set up, and write its name to .cluster_name_gpu or .cluster_name_tpu."""
    settings = current(c).settings
    sky.up(settings, accel=accel, experiment=name, idle_minutes=int_between("--idle-minutes", idle_minutes, 1, 7 * 24 * 60),
           down=down, infra=infra, nodes=int_between("--nodes", nodes, 1, 512), replace=replace)


@task(name="sky-down", help={"target": "gpu (default), tpu or all"})
def sky_down(c, target="gpu"):
    """Tear down the cluster named in .cluster_name_<target> (sky down NAME -y) and remove the file."""
    settings = current(c).settings
    if target not in (*sky.TARGETS, "all"):
        raise Failure(f"--target {target!r} is not valid: use gpu, tpu or all")
    for each in sky.TARGETS if target == "all" else (target,):
        sky.down(settings, each)


@task(name="sky-status")
def sky_status(c):
    """Show the clusters named in .cluster_name_gpu/.cluster_name_tpu with their SkyPilot status."""
    rows = sky.status_rows(current(c).settings)
    if not rows:
        print("remote-run: no cluster names in .cluster_name_gpu or .cluster_name_tpu; start one with `inv sky-up --accel H100:1`")
        return
    table = [("target", "name", "status"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _path_for_module(workspace: Path, path: str) -> str:
    """A file or directory inside the workspace, optionally with a pytest node id (tests/test_x.py::test_y)."""
    head = path.split("::", 1)[0]
    if not head or head.startswith("-") or "\0" in path:
        raise Failure(f"path {path!r} is not a path; give a file or directory inside the workspace such as tests/")
    resolved = (workspace / head).resolve()
    try:
        relative = resolved.relative_to(workspace).as_posix()
    except ValueError:
        raise Failure(f"path {path!r} is outside the workspace {workspace}; only workspace files reach the cluster") from None
    if not resolved.exists():
        raise Failure(f"path {path!r} does not exist in the workspace {workspace}")
    return relative + path[len(head):]


@task(name="sky-exec", positional=["path"], help={
    "path": "a Python file in the workspace (with --module: its argument, e.g. tests/)",
    "args": 'arguments, as one quoted string, e.g. "--epochs 2"',
    "target": TARGET_HELP,
    "module": "run python -m MODULE PATH ARGS instead, e.g. --module pytest",
    "detach": "return once the job is submitted; Ctrl+C then cancels nothing",
})
def sky_exec(c, path=None, args="", target="gpu", module="", detach=False):
    """Run a workspace script on the SkyPilot cluster: sky exec NAME --workdir WORKSPACE "uv run ... python PATH ARGS"."""
    settings = current(c).settings
    sky.check_target(target)
    try:
        arguments = shlex.split(args)
    except ValueError as exc:
        raise Failure(f"--args {args!r} cannot be split into arguments ({exc}); check its quotes") from None
    if module:
        python_args = ["-m", module_name("--module", module), *([_path_for_module(settings.workspace, path)] if path else [])]
    elif path:
        python_args = [script_in_workspace(settings.workspace, path)]
    else:
        raise Failure("give a script (inv sky-exec scripts/bench.py) or --module NAME (inv sky-exec --module pytest tests/)")
    sky.refuse_env_upload(settings.workspace)
    code = sky.execute(settings, target, task="sky-exec", python_args=[*python_args, *arguments], workdir=settings.workspace,
                       detach=detach, options={"path": path or None, "module": module or None, "args": arguments, "target": target})
    if code:
        raise Exit(code=code)
