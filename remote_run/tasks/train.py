"""Tasks that run work: train-hlb, train-david, run and rerun; sync, bootstrap and gpu-check come first.

Each declares only its own flags; the flags they share are remote_run.options.RunOptions, which
RunTask adds to each (remote_run.chain) and hands to the body as ``options``.
"""

from invoke import Collection
from invoke.exceptions import Exit

from ..chain import RunTask, start_early, task
from ..errors import Failure, Kind
from ..options import RunOptions
from ..output import say
from ..session import session
from .machine import bootstrap, gpu_check
from .workspace import sync

CHAIN = [sync, bootstrap, gpu_check]
TRAINER_HELP = {
    "impl": "`builtin` (self-contained CIFAR-10 trainer) or `workspace` (the workspace's modules); default TRAIN_IMPL",
    "seed": "random seed (builtin trainer; default 0)",
    "synthetic": "train on generated data of CIFAR-10's shape (builtin trainer; no download)",
    "subset": "train on the first N training images (builtin trainer; default all)",
}
# train-hlb and train-david also run on a SkyPilot cluster (--sky). Their runners are one process on
# one GPU (no DistributedDataParallel), so torchrun would only start copies of one run on that GPU.
WITH_SKY = [f.name for f in RunOptions.flags() if f.name not in ("torchrun", "nproc")]


def start(c, run_task, own: dict, options, preflight, specs_of) -> None:
    """The body of every run task: check the shared flags, make the runs (``specs_of(sess, runs)``:
    a RunSpec per run of --repeat and the task's own arguments for it, its --seed), carry out the
    chain's plan beside the run's command, run them on the host or the cluster, and compare them
    with --compare-to."""
    from ..preflight import CHAIN as ALL_STEPS

    sess = session(c)
    checked = options.check(sess.settings)
    specs = []
    for spec, arguments in specs_of(sess, checked.runs):
        spec.pull = checked.pull
        spec.env = dict(checked.variables)
        # for `inv rerun`
        spec.invocation = {"task": run_task.name, "args": {**arguments, **options.invocation(run_task.shared)}}
        specs.append(spec)
    baseline = _baseline(sess, checked) if checked.compare_to else None
    ab = _ab_plan(sess, specs, checked) if checked.against else None
    if checked.sky:
        from .. import pipeline
        from ..environment import choose
        from ..sky import backend

        choice = choose(sess.settings, checked.extra, checked.group, checked.frozen)
        done = pipeline.execute(backend.ClusterRuns(sess, checked.sky, choice), sess.settings, specs,
                                detach=checked.detach)
    else:
        plan = (ALL_STEPS if preflight is None else preflight).for_run(checked)
        environment = start_early(sess, plan, "start", checked.forwards)
        from .. import hosts, pipeline, ports

        hosts.choose(sess, allow_busy=checked.allow_busy, cpu_ok=checked.cpu_ok, wait=checked.wait,
                     count=checked.gpu_count)
        with ports.forwarding(sess.host, checked.forwards):
            done = pipeline.execute(pipeline.HostRuns(sess, checked, plan, environment), sess.settings, specs,
                                    detach=checked.detach, ab=ab)
    if ab is not None and checked.fail_on_regression and not checked.detach:
        _gate_ab(ab, done)
    if done.code:
        if baseline is not None:
            say(f"not compared with baseline {checked.compare_to}: the run failed")
        raise Exit(code=done.code)
    if baseline is not None:
        from .. import compare as comparing
        from .results import gate

        runs_dir = sess.settings.runs_dir
        gate(runs_dir, baseline, comparing.resolve(runs_dir, done.group or done.runs[0]), fail=True, **checked.gating())


def _ab_plan(sess, specs, options):
    """--against: REF resolved and the gate's flags checked before anything runs; the plan (its id
    is claimed when it starts: remote_run.pipeline)."""
    from .. import against, compare

    commit = against.resolve(sess.host.local, sess.settings.workspace, options.against)
    compare.check_metric_names("--higher-is-better", options.higher_is_better)
    compare.check_metric_names("--lower-is-better", options.lower_is_better)
    compare.parse_tolerances(options.tolerance)
    return against.Plan(id="", task=specs[0].task, ref=options.against, commit=commit, pairs=len(specs),
                        untracked=not options.committed_only, order=against.interleaved(len(specs)),
                        gating={k: list(v) for k, v in options.gating().items()}, fail=options.fail_on_regression)


def _gate_ab(ab, done) -> None:
    """--fail-on-regression on an A/B: exit 4 on a regression; with no pair compared it cannot pass."""
    if done.regressions is None:
        line = (f"A/B {ab.id} compared no pair (no pair of runs finished with a RESULT on both sides), "
                "so --fail-on-regression cannot pass it")
        if done.code:  # the failed run's own status says more: it is passed on
            say(line)
            return
        raise Failure(line, "see the runs' logs above", Kind.RUN)
    if done.regressions or not done.code:
        from .results import verdict

        verdict(done.regressions, "the working tree", f"{ab.ref} (A/B {ab.id})", fail=True)


def _baseline(sess, options):
    """The --compare-to baseline, with everything the comparison needs checked before anything runs."""
    from .. import compare as comparing

    baseline = comparing.load_baseline(sess.settings.runs_dir, options.compare_to)
    known = {name for run in baseline.runs for name in run["metrics"]}
    unknown = [name for name in comparing.parse_tolerances(options.tolerance) if name not in known]
    if unknown:
        raise Failure(f"--tolerance names {', '.join(unknown)}, which baseline {options.compare_to} does not have "
                      f"({', '.join(sorted(known)) or 'no metrics'})", "name a metric of its RESULT lines")
    return baseline


def _trainer_specs(make, own: dict):
    """specs_of for a builtin or workspace trainer: --seed seed, seed+1, ... over --repeat."""
    def specs_of(sess, runs):
        from .. import trainers

        chosen = trainers.choose_impl(sess.settings, own["impl"])
        each = [{**own, "seed": seed} for seed in trainers.seeds(own["seed"], runs, chosen)]
        return [(make(sess.settings, sess.host.python, **arguments), arguments) for arguments in each]

    return specs_of


@task(klass=RunTask, name="train-hlb", pre=CHAIN, shared=WITH_SKY, help={
    "epochs": "training epochs, a number above 0; fractions allowed (default 11.5)",
    "batch_size": "batch size (builtin trainer; default 1024)",
    "compile": "use torch.compile (builtin trainer)",
    **TRAINER_HELP,
})
def train_hlb(c, epochs="11.5", impl="", batch_size="", seed="", compile=False, synthetic=False, subset="",
              *, options, preflight):
    """Train the hlb CIFAR-10 speedrun on the host and print its RESULT_HLB line."""
    from .. import trainers

    own = {"epochs": epochs, "impl": impl, "batch_size": batch_size, "seed": seed, "compile": compile,
           "synthetic": synthetic, "subset": subset}
    start(c, train_hlb, own, options, preflight, _trainer_specs(trainers.hlb, own))


@task(klass=RunTask, name="train-david", pre=CHAIN, shared=WITH_SKY, help={
    "epochs": "training epochs, a whole number from 1 (default 12)",
    "batch_size": "batch size, 1 to 50000 (default 512)",
    **TRAINER_HELP,
})
def train_david(c, epochs="12", batch_size="512", impl="", seed="", synthetic=False, subset="", *, options, preflight):
    """Train the DavidNet (ResNet-9) CIFAR-10 speedrun on the host and print its RESULT_DAVID line."""
    from .. import trainers

    own = {"epochs": epochs, "batch_size": batch_size, "impl": impl, "seed": seed, "synthetic": synthetic,
           "subset": subset}
    start(c, train_david, own, options, preflight, _trainer_specs(trainers.david, own))


@task(klass=RunTask, name="run", positional=["target"], pre=CHAIN, help={
    "target": "a file of the workspace: Python (scripts/bench.py), an executable (by its #! line) or a .sh script; "
              "or with --module a module name (pytest)",
    "cwd": "the workspace folder to run in (like `cd DIR && ./train.sh`); paths in the script resolve from there",
    "module": "run TARGET as a module (python -m TARGET)",
    "args": 'arguments for the script or module, as one quoted string, e.g. "--n 3"',
})
def run_(c, target, module=False, args="", cwd="", *, options, preflight):
    """Run a workspace file (Python, executable, .sh) or module on the host with the run environment; its exit status is ours."""  # noqa: E501
    def specs_of(sess, runs):
        from .. import trainers

        return [(trainers.script(sess.settings, sess.host.python, target, module=module, args=args, cwd=cwd,
                                 torchrun=options.torchrun, nproc=int(options.nproc or 0)), own)  # checked by now
                for _ in range(runs)]

    own = {"target": target, "module": module, "args": args, "cwd": cwd}
    start(c, run_, own, options, preflight, specs_of)


RERUNNABLE = {"train-hlb": train_hlb, "train-david": train_david, "run": run_}


@task(klass=RunTask, name="rerun", positional=["run"], pre=CHAIN, shared=["allow_busy", "cpu_ok", "detach"], help={
    "run": "the id of a recorded run (or a unique prefix): its task runs again with the same options",
})
def rerun(c, run, *, options, preflight):
    """Run a recorded run's task again with the same options; warn when the workspace now differs."""
    from .. import compare as comparing
    from .. import pipeline, records

    sess = session(c)
    side = comparing.resolve(sess.settings.runs_dir, records.check_run_id(run) or "-")
    if side.kind != "run":
        raise Failure(f"{run!r} is a {side.kind}",
                      "rerun takes one run's id (a group's runs are GROUP.1, GROUP.2, ...)")
    record = records.RunRecord.load(sess.settings.runs_dir / side.name)
    invocation = record.invocation if record else {}
    if invocation.get("task") not in RERUNNABLE:
        raise Failure(f"run {side.name} does not say how it was started (recorded before remote-run kept that, or a "
                      f"{record.task if record else '?'} run)", "start it again by hand")
    changes = records.code_differences(record.code,
                                       pipeline.code_job(pipeline.HostRuns(sess), sess.settings).result()[0])
    if changes:
        say(f"the workspace differs from what run {side.name} used: {'; '.join(changes[:6])}")
    given = invocation["args"]
    arguments = {**given, "allow_busy": options.allow_busy or given.get("allow_busy", False),
                 "cpu_ok": options.cpu_ok or given.get("cpu_ok", False), "detach": options.detach}
    RERUNNABLE[invocation["task"]](c, preflight=preflight, **arguments)


ns = Collection(train_hlb, train_david, run_, rerun)
