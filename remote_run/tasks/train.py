"""Tasks that run work: train-hlb, train-david, run and rerun; sync, bootstrap and gpu-check come first."""

from invoke import Collection, task
from invoke.exceptions import Exit

from .. import compare as comparing, hosts, pipeline, records, steps, trainers
from .. import aftermath, ports
from ..chain import RunTask
from ..errors import Failure
from ..output import say
from ..session import session
from .machine import bootstrap, gpu_check
from .results import GATE_HELP, gate
from .workspace import sync

CHAIN = [sync, bootstrap, gpu_check]
GATE_FLAGS = ["tolerance", "higher_is_better", "lower_is_better"]
SKY_HELP = {"sky": "run on the SkyPilot cluster of .cluster_name_gpu (gpu) or .cluster_name_tpu (tpu) instead of REMOTE_HOST"}
COMMON_HELP = {
    "allow_busy": "run even if another process is using the GPU",
    "cpu_ok": "run without a GPU (e.g. `local` on a laptop)",
    "detach": "start the run and return at once; follow it later with `inv logs --follow`",
    "wait": "when the GPUs are busy, wait for them in the host's queue (shared by every user) instead of refusing",
    "wait_timeout": "with --wait: give up after this long (seconds, or 30m, 2h)",
    "gpus": "use N idle GPUs the host picks (least memory used), as CUDA_VISIBLE_DEVICES=auto",
    "repeat": "run N times one after another (builtin trainers: seeds seed, seed+1, ...) as a group with a summary (default 1)",
    "compare_to": "then compare with this baseline (`inv baseline.save`) and exit 1 on a regression",
    "port": "forward this port of the host to this machine while the run is followed (6006, or REMOTE:LOCAL such as 6006:16006); repeatable",
    "pull": "when the run ends, copy the files it wrote matching this pattern (relative to its directory on the host, e.g. outputs/**/*.pt) into its record's pulled/; repeatable",
    "only": "sync only this workspace path, a folder or a file (repeatable); the rest of REMOTE_DIR is left alone (default SYNC_ONLY)",
    "force_sync": "sync even when the upload is over SYNC_MAX_MB or SYNC_MAX_FILES",
    "checksum": "sync by comparing file contents, not size and time (after a branch switch, when times lie)",
    **GATE_HELP,
}
TRAINER_HELP = {
    "impl": "`builtin` (self-contained CIFAR-10 trainer) or `workspace` (the workspace's modules); default TRAIN_IMPL",
    "seed": "random seed (builtin trainer; default 0)",
    "synthetic": "train on generated data of CIFAR-10's shape (builtin trainer; no download)",
    "subset": "train on the first N training images (builtin trainer; default all)",
}


def _ends(specs, *, sky: str, detach: bool, port, pull) -> list:
    """--port and --pull, checked before anything runs; the patterns go with each run's spec."""
    forwards, patterns = ports.parse(port), aftermath.check_patterns(pull)
    if sky and (forwards or patterns):
        raise Failure(f"--{'port' if forwards else 'pull'} works on REMOTE_HOST runs; a SkyPilot cluster is an SSH host too: run with REMOTE_HOST=<cluster name> instead of --sky")
    if forwards and detach:
        raise Failure("--port forwards while a run is followed; with --detach, forward later with `inv tunnel --port PORT`")
    for spec in specs:
        spec.pull = patterns
    return forwards


def _start(c, specs, *, sky="", allow_busy=False, cpu_ok=False, detach=False, compare_to="", gating=None, queue=None, port=None, pull=None,
           sync_flags=((), False, False)):
    sess = session(c)
    only, force_sync, checksum = sync_flags
    if sky and (only or force_sync or checksum):
        raise Failure("--only, --force-sync and --checksum shape the sync to REMOTE_HOST; SkyPilot uploads the workspace itself (.skyignore)")
    if not sky:
        steps.want_sync(sess, only=only or (), force=force_sync, checksum=checksum)  # checked before anything runs
    forwards = _ends(specs, sky=sky, detach=detach, port=port, pull=pull)
    baseline = None
    gating = {k: v or () for k, v in (gating or {}).items()}
    if not compare_to and any(gating.values()):
        flag = next(k for k, v in gating.items() if v).replace("_", "-")
        raise Failure(f"--{flag} only applies with --compare-to NAME (or to `inv compare`); add --compare-to or drop it")
    if compare_to:  # everything the comparison needs is checked before anything runs
        if detach:
            raise Failure("--compare-to compares the finished runs; drop --detach (or compare later with `inv compare`)")
        baseline = comparing.load_baseline(sess.settings.runs_dir, compare_to)
        comparing.check_metric_names("--higher-is-better", gating.get("higher_is_better", ()))
        comparing.check_metric_names("--lower-is-better", gating.get("lower_is_better", ()))
        known = {name for run in baseline.runs for name in run["metrics"]}
        unknown = [name for name in comparing.parse_tolerances(gating.get("tolerance")) if name not in known]
        if unknown:
            raise Failure(f"--tolerance names {', '.join(unknown)}, which baseline {compare_to} does not have ({', '.join(sorted(known)) or 'no metrics'})")
    if sky:
        from ..sky import backend

        done = pipeline.execute(backend.ClusterRuns(sess, sky), sess.settings, specs, detach=detach)
    else:
        queue = queue or {}
        hosts.choose(sess, allow_busy=allow_busy, cpu_ok=cpu_ok, wait=queue.get("wait", False), count=queue.get("gpus", 0))
        with ports.forwarding(sess.host, forwards):
            done = pipeline.execute(pipeline.HostRuns(sess, allow_busy=allow_busy, cpu_ok=cpu_ok, **queue), sess.settings, specs, detach=detach)
    if done.code:
        if baseline is not None:
            say(f"not compared with baseline {compare_to}: the run failed")
        raise Exit(code=done.code)
    if baseline is not None:
        runs_dir = sess.settings.runs_dir
        gate(runs_dir, baseline, comparing.resolve(runs_dir, done.group or done.runs[0]), fail=True, **gating)


def _invocations(task_name: str, specs, arguments: dict, seeds: list[str]):
    """Each run's task and arguments, for `inv rerun` (its own seed, no --repeat)."""
    for spec, seed in zip(specs, seeds):
        args = {k: v for k, v in arguments.items() if k not in ("repeat", "compare_to", *GATE_FLAGS, "detach")}
        if "seed" in args:
            args["seed"] = seed
        spec.invocation = {"task": task_name, "args": args}
    return specs


@task(klass=RunTask, name="train-hlb", pre=CHAIN, iterable=[*GATE_FLAGS, "port", "pull", "only"], help={
    "epochs": "training epochs, a number above 0; fractions allowed (default 11.5)",
    "batch_size": "batch size (builtin trainer; default 1024)",
    "compile": "use torch.compile (builtin trainer)",
    **TRAINER_HELP, **COMMON_HELP, **SKY_HELP,
})
def train_hlb(c, epochs="11.5", impl="", batch_size="", seed="", compile=False, synthetic=False, subset="", allow_busy=False, cpu_ok=False,
              detach=False, wait=False, wait_timeout="", gpus="", sky="", repeat="1", compare_to="", tolerance=None, higher_is_better=None, lower_is_better=None,
              port=None, pull=None, only=None, force_sync=False, checksum=False):
    """Train the hlb CIFAR-10 speedrun on the host and print its RESULT_HLB line."""
    arguments = dict(locals())
    arguments.pop("c")
    sess = session(c)
    count = trainers.check_repeat(repeat)
    chosen = trainers.choose_impl(sess.settings, impl)
    seeds = trainers.seeds(seed, count, chosen)
    specs = [trainers.hlb(sess.settings, sess.host.python, epochs=epochs, impl=impl, batch_size=batch_size, seed=each,
                          compile=compile, synthetic=synthetic, subset=subset) for each in seeds]
    _start(c, _invocations("train-hlb", specs, arguments, seeds), sky=trainers.check_cluster(sky), allow_busy=allow_busy, cpu_ok=cpu_ok, port=port, pull=pull, sync_flags=(only, force_sync, checksum),
           detach=detach, queue=trainers.queueing(sky, wait, wait_timeout, gpus), compare_to=compare_to, gating={"tolerance": tolerance, "higher_is_better": higher_is_better, "lower_is_better": lower_is_better})


@task(klass=RunTask, name="train-david", pre=CHAIN, iterable=[*GATE_FLAGS, "port", "pull", "only"], help={
    "epochs": "training epochs, a whole number from 1 (default 12)",
    "batch_size": "batch size, 1 to 50000 (default 512)",
    **TRAINER_HELP, **COMMON_HELP, **SKY_HELP,
})
def train_david(c, epochs="12", batch_size="512", impl="", seed="", synthetic=False, subset="", allow_busy=False, cpu_ok=False, detach=False,
                wait=False, wait_timeout="", gpus="", sky="", repeat="1", compare_to="", tolerance=None, higher_is_better=None, lower_is_better=None,
                port=None, pull=None, only=None, force_sync=False, checksum=False):
    """Train the DavidNet (ResNet-9) CIFAR-10 speedrun on the host and print its RESULT_DAVID line."""
    arguments = dict(locals())
    arguments.pop("c")
    sess = session(c)
    count = trainers.check_repeat(repeat)
    chosen = trainers.choose_impl(sess.settings, impl)
    seeds = trainers.seeds(seed, count, chosen)
    specs = [trainers.david(sess.settings, sess.host.python, epochs=epochs, batch_size=batch_size, impl=impl, seed=each,
                            synthetic=synthetic, subset=subset) for each in seeds]
    _start(c, _invocations("train-david", specs, arguments, seeds), sky=trainers.check_cluster(sky), allow_busy=allow_busy, cpu_ok=cpu_ok, port=port, pull=pull, sync_flags=(only, force_sync, checksum),
           detach=detach, queue=trainers.queueing(sky, wait, wait_timeout, gpus), compare_to=compare_to, gating={"tolerance": tolerance, "higher_is_better": higher_is_better, "lower_is_better": lower_is_better})


@task(klass=RunTask, name="run", positional=["target"], pre=CHAIN, iterable=[*GATE_FLAGS, "port", "pull", "only"], help={
    "target": "a file of the workspace: Python (scripts/bench.py), an executable (by its #! line) or a .sh script; or with --module a module name (pytest)",
    "cwd": "the workspace folder to run in (like `cd DIR && ./train.sh`); paths in the script resolve from there",
    "module": "run TARGET as a module (python -m TARGET)",
    "args": 'arguments for the script or module, as one quoted string, e.g. "--n 3"',
    **COMMON_HELP,
})
def run_(c, target, module=False, args="", cwd="", allow_busy=False, cpu_ok=False, detach=False, wait=False, wait_timeout="", gpus="", repeat="1", compare_to="", tolerance=None,
         higher_is_better=None, lower_is_better=None, port=None, pull=None, only=None, force_sync=False, checksum=False):
    """Run a workspace file (Python, executable, .sh) or module on the host with the run environment; its exit status is ours."""
    arguments = dict(locals())
    arguments.pop("c")
    sess = session(c)
    count = trainers.check_repeat(repeat)
    specs = [trainers.script(sess.settings, sess.host.python, target, module=module, args=args, cwd=cwd) for _ in range(count)]
    _start(c, _invocations("run", specs, arguments, [""] * count), allow_busy=allow_busy, cpu_ok=cpu_ok, detach=detach, port=port, pull=pull, sync_flags=(only, force_sync, checksum),
           queue=trainers.queueing("", wait, wait_timeout, gpus),
           compare_to=compare_to, gating={"tolerance": tolerance, "higher_is_better": higher_is_better, "lower_is_better": lower_is_better})


RERUNNABLE = {"train-hlb": train_hlb, "train-david": train_david, "run": run_}


@task(klass=RunTask, name="rerun", positional=["run"], pre=CHAIN, help={
    "run": "the id of a recorded run (or a unique prefix): its task runs again with the same options",
    "allow_busy": COMMON_HELP["allow_busy"], "cpu_ok": COMMON_HELP["cpu_ok"], "detach": COMMON_HELP["detach"],
})
def rerun(c, run, allow_busy=False, cpu_ok=False, detach=False):
    """Run a recorded run's task again with the same options; warn when the workspace now differs."""
    sess = session(c)
    side = comparing.resolve(sess.settings.runs_dir, records.check_run_id(run) or "-")
    if side.kind != "run":
        raise Failure(f"{run!r} is a {side.kind}; rerun takes one run's id (a group's runs are GROUP.1, GROUP.2, ...)")
    record = records.RunRecord.load(sess.settings.runs_dir / side.name)
    invocation = record.invocation if record else {}
    if invocation.get("task") not in RERUNNABLE:
        raise Failure(f"run {side.name} does not say how it was started (recorded before remote-run kept that, or a {record.task if record else '?'} run); start it again by hand")
    changes = records.code_differences(record.code, pipeline.code_job(pipeline.HostRuns(sess), sess.settings).join()[0])
    if changes:
        say(f"the workspace differs from what run {side.name} used: {'; '.join(changes[:6])}")
    arguments = {**invocation["args"], "allow_busy": allow_busy or invocation["args"].get("allow_busy", False),
                 "cpu_ok": cpu_ok or invocation["args"].get("cpu_ok", False), "detach": detach}
    RERUNNABLE[invocation["task"]](c, **arguments)


ns = Collection(train_hlb, train_david, run_, rerun)
