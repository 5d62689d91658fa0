"""Tasks for runs already started: logs (re-attach), status, kill, tunnel."""

from invoke import Collection
from invoke.exceptions import Exit

from ..chain import task
from ..output import say, show, table
from ..session import session


@task(help={"run": "the run id (default: the latest run)",
            "follow": "wait for the run to end, printing its output as it comes"})
def logs(c, run="", follow=False):
    """Show a run's log; with --follow re-attach to it and complete its local record when it ends."""
    from .. import hosts, pipeline, records

    sess = session(c)
    hosts.locate(sess, records.check_run_id(run))
    code = pipeline.logs(sess, records.check_run_id(run), follow)
    if code:
        raise Exit(code=code)


@task
def status(c):
    """List the runs on the host: id, task, started, state, exit code and RESULT metrics; say whose runs they are."""
    from .. import checkout, pipeline

    sess = session(c)
    several = len(sess.settings.hosts) > 1
    found = []
    for spec in sess.settings.hosts:
        if several:
            sess.use_host(spec)
        rows, record = pipeline.status(sess)
        say(checkout.whose_runs(sess.settings, sess.host.label, record))  # on stderr: the table stays parseable
        found += [(spec.spec, *row) if several else row for row in rows[1:]]
    if not found:
        show(f"no runs in {', '.join(h.spec if several else sess.host.label for h in sess.settings.hosts)}:"
             f"{sess.settings.remote_dir}/runs")
        return
    header = ("run", "task", "started (UTC)", "state", "exit", "result")
    show(table([("host", *header) if several else header, *found]))


@task(help={"run": "the run id (default: the latest running run)"})
def kill(c, run=""):
    """Stop a running run: SIGINT to its process group, then SIGTERM, then SIGKILL."""
    from .. import hosts, pipeline, records

    sess = session(c)
    hosts.locate(sess, records.check_run_id(run), running=True)
    pipeline.kill(sess, records.check_run_id(run))


@task(iterable=["port"], help={
    "port": "the host's port to forward here: 6006, or REMOTE:LOCAL such as 6006:16006; repeatable",
    "run": "the run id (default: the latest running run)",
})
def tunnel(c, port=None, run=""):
    """Forward ports of the host to this machine for a running (detached) run, until Ctrl+C or the run ends."""
    from .. import hosts, pipeline, ports, records

    sess = session(c)
    forwards = ports.parse(port)  # checked before anything is asked of the host
    hosts.locate(sess, records.check_run_id(run), running=True)
    ports.tunnel(pipeline.HostRuns(sess), forwards, records.check_run_id(run))


ns = Collection(logs, status, kill, tunnel)
