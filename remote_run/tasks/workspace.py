"""Tasks that move files: sync, pull-logs, clean."""

from invoke import Collection

from ..chain import Step, task
from ..host import layout
from ..output import say
from ..session import session

SYNC_HELP = {
    "only": "mirror only this workspace path, a folder or a file (repeat for more); "
            "the rest of REMOTE_DIR is left alone (default SYNC_ONLY)",
    "checksum": "compare file contents instead of size and time (after a branch switch, when times lie)",
}


@task(klass=Step, name="sync", iterable=["only"], help={
    **SYNC_HELP,
    "dry_run": "show what a sync would upload and delete (counts, bytes, the ten largest files) and change nothing",
    "force": "go on even when the upload is over SYNC_MAX_MB or SYNC_MAX_FILES",
    "take_over": "sync even when REMOTE_DIR mirrors another checkout of the workspace: it mirrors this one from now "
                 "on (the other's runs stay in it)",
})
def sync(c, only=None, dry_run=False, force=False, checksum=False, take_over=False):
    """Mirror the workspace into REMOTE_DIR with rsync --delete (.venv and .remote-run/ are never deleted)."""
    sync.carry_out(c, only=only or (), dry_run=dry_run, force=force, checksum=checksum, take_over=take_over)


@task(name="pull-logs", help={"run": "pull only this run id (default: every run)"})
def pull_logs(c, run=""):
    """Copy the host's run records (REMOTE_DIR/.remote-run/runs/) into RUNS_DIR; local files are never overwritten."""
    from .. import checkout, hosts, records
    from .. import sync as syncing

    sess = session(c)
    if run:
        hosts.locate(sess, records.check_run_id(run))
    elif len(sess.settings.hosts) > 1:
        listed = sess.settings.hosts
        for spec in listed[1:]:  # every host's runs; the first one's below
            sess.use_host(spec)
            summary = syncing.pull_runs(sess.host, None)
            say(f"pulled {summary.files} new files ({summary.bytes} bytes) "
                f"from {sess.host.label}:{sess.settings.remote_dir}/{layout.RUNS}")
            say(checkout.whose_runs(sess.settings, sess.host.label, checkout.whose(sess.host)["checkout"]))
        sess.use_host(listed[0])
    summary = syncing.pull_runs(sess.host, records.check_run_id(run) or None)
    s = sess.settings
    say(f"pulled {summary.files} new files ({summary.bytes} bytes) from {sess.host.label}:{s.remote_dir}/{layout.RUNS} "
        f"into {s.runs_dir}")
    say(checkout.whose_runs(s, sess.host.label, checkout.whose(sess.host)["checkout"]))


@task(name="clean", help={"yes": "really delete (without it, only say what would be deleted, and whose runs)",
                          "data": "also delete the dataset cache REMOTE_DIR/.remote-run/data",
                          "take_over": "delete REMOTE_DIR even when it mirrors another checkout, with that one's runs"})
def clean(c, yes=False, data=False, take_over=False):
    """Delete REMOTE_DIR on the host (only a directory remote-run created); keeps the dataset cache unless --data."""
    from .. import cleanup

    sess = session(c)
    if not yes:
        problem = cleanup.preview(sess.host, data=data, take_over=take_over)
        if problem is None:
            say(f"nothing to clean: {sess.host.label}:{sess.settings.remote_dir} does not exist")
            return
        raise problem
    say(cleanup.clean(sess.host, data=data, take_over=take_over))


ns = Collection(sync, pull_logs, clean)
