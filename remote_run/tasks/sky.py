"""Tasks for SkyPilot clusters: sky-up, sky-exec, sky-status, sky-down."""

from invoke import Collection
from invoke.exceptions import Exit

from ..chain import task
from ..errors import Failure
from ..output import say, show, table
from ..session import session

# remote_run.sky is imported by the tasks that use it: listing tasks and SSH runs never need it.
TARGET_HELP = "which cluster: gpu (.cluster_name_gpu, the default) or tpu (.cluster_name_tpu)"


@task(name="sky-up", auto_shortflags=False, help={
    "accel": "accelerator: NAME[:COUNT] such as H100:1, A100:8, L4:1, or a TPU such as tpu-v4-8, tpu-v6e-1 (required)",
    "name": "experiment name in the cluster name (default: the workspace directory's name)",
    "idle_minutes": "stop the cluster after this many idle minutes (default 30)",
    "down": "tear the cluster down, not just stop it, when it goes idle (default; --no-down only stops it)",
    "infra": "where to launch, passed to sky launch as is: aws, gcp/us-central1, k8s, slurm/CLUSTER/PARTITION, "
             "ssh/NODE_POOL (default: SkyPilot chooses)",
    "nodes": "number of nodes (default 1)",
    "replace": "tear down the cluster named in .cluster_name_<target> and launch a new one",
})
def sky_up(c, accel="", name=None, idle_minutes="30", down=True, infra=None, nodes="1", replace=False):
    """Launch a SkyPilot cluster with uv set up, and write its name to .cluster_name_gpu or .cluster_name_tpu."""
    from .. import settings as settings_mod
    from ..sky import clusters

    sess = session(c)
    clusters.up(sess.host, sess.settings, accel=accel, experiment=name,
                idle_minutes=settings_mod.int_between("--idle-minutes", idle_minutes, 1, 7 * 24 * 60),
                down=down, infra=infra, nodes=settings_mod.int_between("--nodes", nodes, 1, 512), replace=replace)


@task(name="sky-down", help={"target": "gpu (default), tpu or all"})
def sky_down(c, target="gpu"):
    """Tear down the cluster named in .cluster_name_<target> (sky down NAME -y) and remove the file."""
    from ..sky import clusters, names

    sess = session(c)
    if target not in (*names.TARGETS, "all"):
        raise Failure(f"--target {target!r} is not valid", "use gpu, tpu or all")
    for each in names.TARGETS if target == "all" else (target,):
        clusters.down(sess.host, sess.settings, each)


@task(name="sky-status")
def sky_status(c):
    """Show the clusters named in .cluster_name_gpu/.cluster_name_tpu with their SkyPilot status."""
    from ..sky import clusters

    sess = session(c)
    rows = clusters.status_rows(sess.host, sess.settings)
    if not rows:
        say("no cluster names in .cluster_name_gpu or .cluster_name_tpu; start one with `inv sky-up --accel H100:1`")
        return
    show(table([("target", "name", "status"), *rows]))


@task(name="sky-exec", positional=["path"], help={
    "path": "a Python file in the workspace (with --module: its argument, e.g. tests/)",
    "args": 'arguments, as one quoted string, e.g. "--epochs 2"',
    "target": TARGET_HELP,
    "module": "run python -m MODULE PATH ARGS instead, e.g. --module pytest",
    "detach": "return once the job is submitted; Ctrl+C then cancels nothing",
})
def sky_exec(c, path=None, args="", target="gpu", module="", detach=False):
    """Run a workspace script on the SkyPilot cluster: sky exec NAME --workdir WORKSPACE "uv run ... python PATH ARGS"."""  # noqa: E501
    from .. import pipeline, trainers
    from .. import settings as settings_mod
    from ..sky import backend, names

    sess = session(c)
    workspace = sess.settings.workspace
    names.check_target(target)
    arguments = trainers.split_args(args)
    if module:
        python_args = ["-m", settings_mod.module_name("--module", module),
                       *([trainers.path_in_workspace(workspace, path)] if path else [])]
    elif path:
        python_args = [trainers.script_in_workspace(workspace, path)]
    else:
        raise Failure("sky-exec needs something to run",
                      "give a script (inv sky-exec scripts/bench.py) "
                      "or --module NAME (inv sky-exec --module pytest tests/)")
    spec = trainers.RunSpec(task="sky-exec", argv=["python", *python_args, *arguments],
                            options={"path": path or None, "module": module or None, "args": arguments,
                                     "target": target})
    done = pipeline.execute(backend.ClusterRuns(sess, target), sess.settings, [spec], detach=detach)
    if done.code:
        raise Exit(code=done.code)


ns = Collection(sky_up, sky_exec, sky_status, sky_down)
