"""Tasks that run work: train-hlb, train-david and run; sync, bootstrap and gpu-check come first."""

from invoke import Collection, task
from invoke.exceptions import Exit

from .. import pipeline, trainers
from ..chain import RunTask
from ..session import session
from .machine import bootstrap, gpu_check
from .workspace import sync

CHAIN = [sync, bootstrap, gpu_check]
SKY_HELP = {"sky": "run on the SkyPilot cluster of .cluster_name_gpu (gpu) or .cluster_name_tpu (tpu) instead of REMOTE_HOST"}
COMMON_HELP = {
    "allow_busy": "run even if another process is using the GPU",
    "cpu_ok": "run without a GPU (e.g. `local` on a laptop)",
    "detach": "start the run and return at once; follow it later with `inv logs --follow`",
}
TRAINER_HELP = {
    "impl": "`builtin` (self-contained CIFAR-10 trainer) or `workspace` (the workspace's modules); default TRAIN_IMPL",
    "seed": "random seed (builtin trainer; default 0)",
    "synthetic": "train on generated data of CIFAR-10's shape (builtin trainer; no download)",
    "subset": "train on the first N training images (builtin trainer; default all)",
}


def _start(c, spec, *, sky="", allow_busy=False, cpu_ok=False, detach=False):
    sess = session(c)
    if sky:
        from ..sky import backend

        code = pipeline.execute(backend.ClusterRuns(sess, sky), sess.settings, spec, detach=detach)
    else:
        code = pipeline.execute(pipeline.HostRuns(sess, allow_busy=allow_busy, cpu_ok=cpu_ok), sess.settings, spec, detach=detach)
    if code:
        raise Exit(code=code)


@task(klass=RunTask, name="train-hlb", pre=CHAIN, help={
    "epochs": "training epochs, a number above 0; fractions allowed (default 11.5)",
    "batch_size": "batch size (builtin trainer; default 1024)",
    "compile": "use torch.compile (builtin trainer)",
    **TRAINER_HELP, **COMMON_HELP, **SKY_HELP,
})
def train_hlb(c, epochs="11.5", impl="", batch_size="", seed="", compile=False, synthetic=False, subset="", allow_busy=False, cpu_ok=False, detach=False, sky=""):
    """Train the hlb CIFAR-10 speedrun on the host and print its RESULT_HLB line."""
    sess = session(c)
    spec = trainers.hlb(sess.settings, sess.host.python, epochs=epochs, impl=impl, batch_size=batch_size, seed=seed,
                        compile=compile, synthetic=synthetic, subset=subset)
    _start(c, spec, sky=trainers.check_cluster(sky), allow_busy=allow_busy, cpu_ok=cpu_ok, detach=detach)


@task(klass=RunTask, name="train-david", pre=CHAIN, help={
    "epochs": "training epochs, a whole number from 1 (default 12)",
    "batch_size": "batch size, 1 to 50000 (default 512)",
    **TRAINER_HELP, **COMMON_HELP, **SKY_HELP,
})
def train_david(c, epochs="12", batch_size="512", impl="", seed="", synthetic=False, subset="", allow_busy=False, cpu_ok=False, detach=False, sky=""):
    """Train the DavidNet (ResNet-9) CIFAR-10 speedrun on the host and print its RESULT_DAVID line."""
    sess = session(c)
    spec = trainers.david(sess.settings, sess.host.python, epochs=epochs, batch_size=batch_size, impl=impl, seed=seed,
                          synthetic=synthetic, subset=subset)
    _start(c, spec, sky=trainers.check_cluster(sky), allow_busy=allow_busy, cpu_ok=cpu_ok, detach=detach)


@task(klass=RunTask, name="run", positional=["target"], pre=CHAIN, help={
    "target": "a Python file in the workspace (scripts/bench.py), or with --module a module name (pytest)",
    "module": "run TARGET as a module (python -m TARGET)",
    "args": 'arguments for the script or module, as one quoted string, e.g. "--n 3"',
    **COMMON_HELP,
})
def run_(c, target, module=False, args="", allow_busy=False, cpu_ok=False, detach=False):
    """Run a workspace script or module on the host with the run environment; its exit status is ours."""
    sess = session(c)
    spec = trainers.script(sess.settings, sess.host.python, target, module=module, args=args)
    _start(c, spec, allow_busy=allow_busy, cpu_ok=cpu_ok, detach=detach)


ns = Collection(train_hlb, train_david, run_)
