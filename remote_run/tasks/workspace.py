"""Tasks that move files: sync, pull-logs, clean."""

from invoke import Collection, task

from .. import cleanup, exits, records, steps, sync as syncing
from ..errors import Failure
from ..output import say
from ..session import session


@task(name="sync")
def sync(c):
    """Mirror the workspace into REMOTE_DIR with rsync --delete (runs/, .venv and data/ are never deleted)."""
    steps.sync(session(c))


@task(name="pull-logs", help={"run": "pull only this run id (default: every run)"})
def pull_logs(c, run=""):
    """Copy REMOTE_DIR/runs/ into RUNS_DIR; files that already exist locally are never overwritten."""
    sess = session(c)
    summary = syncing.pull_runs(sess.host, records.check_run_id(run) or None)
    s = sess.settings
    say(f"pulled {summary.files} new files ({summary.bytes} bytes) from {sess.host.label}:{s.remote_dir}/runs into {s.runs_dir}")


@task(name="clean", help={"yes": "really delete (without it, only say what would be deleted)", "data": "also delete the dataset cache REMOTE_DIR/data"})
def clean(c, yes=False, data=False):
    """Delete REMOTE_DIR on the host (only a directory remote-run created); keeps data/ unless --data."""
    sess = session(c)
    what = f"{sess.host.label}:{sess.settings.remote_dir}" + ("" if data else " (keeping its data/ dataset cache)")
    if not yes:
        raise Failure(f"this would delete {what}; run again with --yes to do it", code=exits.FAILED)
    say(cleanup.clean(sess.host, data=data))


ns = Collection(sync, pull_logs, clean)
