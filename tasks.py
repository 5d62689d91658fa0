"""Invoke entry point: `inv -l` lists the remote-run tasks."""

from remote_run.tasks import ns  # noqa: F401
