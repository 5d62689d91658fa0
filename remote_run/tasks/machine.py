"""Tasks that prepare and inspect the host: bootstrap, gpu-check."""

from invoke import Collection

from ..chain import Step, task
from .workspace import sync


@task(klass=Step, pre=[sync], iterable=["extra", "group"], help={
    "force": "rebuild REMOTE_DIR/.venv from scratch even if nothing changed, "
             "and try installing uv again if it failed before",
    "extra": "an extra of the workspace's pyproject.toml to install (repeatable; replaces BOOTSTRAP_EXTRAS)",
    "group": "a dependency group of the workspace's pyproject.toml to install (repeatable; replaces BOOTSTRAP_GROUPS)",
    "frozen": "install uv.lock as it is, even if it is out of date with pyproject.toml (uv sync --frozen)"})
def bootstrap(c, force=False, extra=None, group=None, frozen=False):
    """Create or refresh REMOTE_DIR/.venv: the project's uv.lock (uv sync), its pyproject.toml or requirements.txt, TORCH_PACKAGES, PIP_PACKAGES; one command when unchanged."""  # noqa: E501
    bootstrap.carry_out(c, force=force, extra=extra or (), group=group or (), frozen=frozen)


@task(klass=Step, name="gpu-check", help={
    "allow_busy": "go on even if another process is using the GPU",
    "cpu_ok": "go on without a GPU (e.g. `local` on a laptop)",
    "docker": "also check that Docker on the host can reach the GPUs (the NVIDIA container runtime)"})
def gpu_check(c, allow_busy=False, cpu_ok=False, docker=False):
    """Show the host's GPUs (memory, utilization, processes); refuse a missing or busy GPU."""
    gpu_check.carry_out(c, allow_busy=allow_busy, cpu_ok=cpu_ok, docker=docker)


ns = Collection(bootstrap, gpu_check)
