"""Tasks that prepare and inspect the host: bootstrap, gpu-check."""

from invoke import Collection, task

from .. import steps
from ..session import session
from .workspace import sync


@task(pre=[sync], help={"force": "rebuild REMOTE_DIR/.venv from scratch even if nothing changed"})
def bootstrap(c, force=False):
    """Create or refresh REMOTE_DIR/.venv (torch, PIP_PACKAGES, requirements.txt); skipped when unchanged."""
    steps.bootstrap(session(c), force)


@task(name="gpu-check", help={"allow_busy": "go on even if another process is using the GPU", "cpu_ok": "go on without a GPU (e.g. `local` on a laptop)"})
def gpu_check(c, allow_busy=False, cpu_ok=False):
    """Show the host's GPUs (memory, utilization, processes); refuse a missing or busy GPU."""
    steps.gpu_check(session(c), allow_busy, cpu_ok)


ns = Collection(bootstrap, gpu_check)
