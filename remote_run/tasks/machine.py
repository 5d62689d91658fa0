"""Tasks that prepare and inspect the host: bootstrap, gpu-check."""

from invoke import Collection

from ..chain import Step, task
from .workspace import sync


@task(klass=Step, pre=[sync], help={
    "force": "rebuild REMOTE_DIR/.venv from scratch even if nothing changed, "
             "and try installing uv again if it failed before"})
def bootstrap(c, force=False):
    """Create or refresh REMOTE_DIR/.venv with uv (or pip): torch, PIP_PACKAGES, requirements.txt; one command when unchanged."""  # noqa: E501
    bootstrap.carry_out(c, force=force)


@task(klass=Step, name="gpu-check", help={
    "allow_busy": "go on even if another process is using the GPU",
    "cpu_ok": "go on without a GPU (e.g. `local` on a laptop)",
    "docker": "also check that Docker on the host can reach the GPUs (the NVIDIA container runtime)"})
def gpu_check(c, allow_busy=False, cpu_ok=False, docker=False):
    """Show the host's GPUs (memory, utilization, processes); refuse a missing or busy GPU."""
    gpu_check.carry_out(c, allow_busy=allow_busy, cpu_ok=cpu_ok, docker=docker)


ns = Collection(bootstrap, gpu_check)
