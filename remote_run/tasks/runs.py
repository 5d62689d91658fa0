"""Tasks for runs already started: logs (re-attach), status, kill."""

from invoke import Collection, task
from invoke.exceptions import Exit

from .. import pipeline, records
from ..output import show, table
from ..session import session


@task(help={"run": "the run id (default: the latest run)", "follow": "wait for the run to end, printing its output as it comes"})
def logs(c, run="", follow=False):
    """Show a run's log; with --follow re-attach to it and complete its local record when it ends."""
    code = pipeline.logs(session(c), records.check_run_id(run), follow)
    if code:
        raise Exit(code=code)


@task
def status(c):
    """List the runs on the host: id, task, started, state, exit code and RESULT metrics."""
    sess = session(c)
    rows = pipeline.status(sess)
    if len(rows) == 1:
        show(f"no runs in {sess.host.label}:{sess.settings.remote_dir}/runs")
        return
    show(table(rows))


@task(help={"run": "the run id (default: the latest running run)"})
def kill(c, run=""):
    """Stop a running run: SIGINT to its process group, then SIGTERM, then SIGKILL."""
    pipeline.kill(session(c), records.check_run_id(run))


ns = Collection(logs, status, kill)
