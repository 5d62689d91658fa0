"""Tasks that run work: train-hlb, train-david and run; each syncs, bootstraps and checks the GPU first."""

from __future__ import annotations

import shlex
import threading
from pathlib import Path

from invoke import task
from invoke.exceptions import Exit

from .. import runs
from ..errors import Failure
from ..render import render, template
from ..settings import int_between, module_name, positive_float
from ..target import Target, current
from .machine import bootstrap_once, check_gpus, run_checks
from .workspace import sync_once

MAX_BATCH = 50_000  # the CIFAR-10 training set

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


def _impl(t: Target, impl: str) -> str:
    chosen = impl or t.settings.train_impl
    if chosen not in ("builtin", "workspace"):
        raise Failure(f"--impl {chosen!r} is not valid: use builtin or workspace")
    return chosen


def _builtin_options(impl: str, seed: str, synthetic: bool, subset: str, **extra) -> dict:
    given = {"--seed": seed, "--synthetic": synthetic, "--subset": subset, **extra}
    if impl == "workspace":
        used = [flag for flag, value in given.items() if value not in ("", False, None)]
        if used:
            raise Failure(f"{', '.join(used)} only apply to the builtin trainer; drop them or use --impl builtin")
        return {}
    options = {"SYNTHETIC": bool(synthetic)}
    if seed != "":
        options["SEED"] = int_between("--seed", seed, 0, 2**31 - 1)
    if subset != "":
        options["SUBSET"] = int_between("--subset", subset, 1, MAX_BATCH)
    return options


def prepare(t: Target, allow_busy: bool, cpu_ok: bool) -> None:
    """sync, bootstrap and gpu-check, each at most once per invocation (also when named on the CLI).

    The sync runs beside one remote command that checks the environment stamp and queries the
    GPUs; only a stale environment costs another round trip (after the sync: it needs the
    synced requirements.txt).
    """
    syncing = None
    if "sync" not in t.done:
        syncing = Background(sync_once, t)
    try:
        checked = run_checks(t) if "bootstrap" not in t.done or "gpus" not in t.done else (None, None)
    finally:
        if syncing:
            syncing.join()
    bootstrap_once(t, checked=checked[0])
    check_gpus(t, allow_busy, cpu_ok, query=checked[1])


class Background(threading.Thread):
    """Runs ``fn(*args)`` in a thread; ``join()`` re-raises what it raised."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args, self.error = fn, args, None
        self.start()

    def run(self):
        try:
            self.fn(*self.args)
        except BaseException as exc:  # noqa: BLE001 - handed to the joining thread
            self.error = exc

    def join(self, timeout=None):
        super().join(timeout)
        if self.error is not None:
            raise self.error


def _train(c, task_name: str, script_name: str, templates: dict, options: dict, impl: str, allow_busy: bool, cpu_ok: bool, detach: bool, cluster: str) -> None:
    t = current(c)
    main_template, extra_files = templates[impl]
    path = f"scripts/{script_name}"
    files = {path: render(template(main_template), options)}
    for name in extra_files:
        files[f"scripts/{name}"] = template(name)
    spec = runs.RunSpec(task=task_name, argv=[t.python, path], files=files, runner_path=path,
                        options={"impl": impl, **{k.lower(): v for k, v in options.items()}})
    if cluster:
        from .. import sky

        _finish(sky.train_on_cluster(t.settings, cluster, spec, detach=detach))
        return
    prepare(t, allow_busy, cpu_ok)
    _finish(runs.execute(t, spec, detach=detach))


def _finish(code: int) -> None:
    if code:
        raise Exit(code=code)


HLB_TEMPLATES = {"workspace": ("hlb_workspace.py", ()), "builtin": ("hlb_cifar.py", ("cifar10_data.py",))}
DAVID_TEMPLATES = {"workspace": ("david_workspace.py", ()), "builtin": ("david_cifar.py", ("cifar10_data.py",))}


@task(name="train-hlb", help={
    "epochs": "training epochs, a number above 0; fractions allowed (default 11.5)",
    "batch_size": "batch size (builtin trainer; default 1024)",
    "compile": "use torch.compile (builtin trainer)",
    **TRAINER_HELP, **COMMON_HELP, **SKY_HELP,
})
def train_hlb(c, epochs="11.5", impl="", batch_size="", seed="", compile=False, synthetic=False, subset="", allow_busy=False, cpu_ok=False, detach=False, sky=""):
    """Train the hlb CIFAR-10 speedrun on the host and print its RESULT_HLB line."""
    t = current(c)
    impl = _impl(t, impl)
    options = {"EPOCHS": positive_float("--epochs", epochs)}
    options.update(_builtin_options(impl, seed, synthetic, subset, **{"--batch-size": batch_size, "--compile": compile}))
    if impl == "workspace":
        options["HLB_MODULE"] = t.settings.hlb_module
    else:
        options["COMPILE"] = bool(compile)
        if batch_size != "":
            options["BATCH_SIZE"] = int_between("--batch-size", batch_size, 1, MAX_BATCH)
    _train(c, "train-hlb", "run_hlb.py", HLB_TEMPLATES, options, impl, allow_busy, cpu_ok, detach, sky)


@task(name="train-david", help={
    "epochs": "training epochs, a whole number from 1 (default 12)",
    "batch_size": "batch size, 1 to 50000 (default 512)",
    **TRAINER_HELP, **COMMON_HELP, **SKY_HELP,
})
def train_david(c, epochs="12", batch_size="512", impl="", seed="", synthetic=False, subset="", allow_busy=False, cpu_ok=False, detach=False, sky=""):
    """Train the DavidNet (ResNet-9) CIFAR-10 speedrun on the host and print its RESULT_DAVID line."""
    t = current(c)
    impl = _impl(t, impl)
    options = {
        "EPOCHS": int_between("--epochs", epochs, 1, 10_000),
        "BATCH_SIZE": int_between("--batch-size", batch_size, 1, MAX_BATCH),
    }
    options.update(_builtin_options(impl, seed, synthetic, subset))
    if impl == "workspace":
        options["DAVID_NET_MODULE"] = t.settings.david_net_module
        options["DAVID_TRAINER_MODULE"] = t.settings.david_trainer_module
    _train(c, "train-david", "run_david_trainer.py", DAVID_TEMPLATES, options, impl, allow_busy, cpu_ok, detach, sky)


def script_in_workspace(workspace: Path, script: str) -> str:
    """The script's path relative to the workspace; it must exist inside it."""
    if not script or script.startswith("-") or "\0" in script:
        raise Failure(f"script {script!r} is not a file path; give a path inside the workspace such as scripts/bench.py")
    path = (workspace / script).resolve() if not Path(script).is_absolute() else Path(script).resolve()
    try:
        relative = path.relative_to(workspace)
    except ValueError:
        raise Failure(f"script {script!r} is outside the workspace {workspace}; only workspace files are synced, so move it there") from None
    if not path.is_file():
        raise Failure(f"script {script!r} does not exist in the workspace {workspace}")
    return relative.as_posix()


@task(name="run", positional=["target"], help={
    "target": "a Python file in the workspace (scripts/bench.py), or with --module a module name (pytest)",
    "module": "run TARGET as a module (python -m TARGET)",
    "args": 'arguments for the script or module, as one quoted string, e.g. "--n 3"',
    **COMMON_HELP,
})
def run_(c, target, module=False, args="", allow_busy=False, cpu_ok=False, detach=False):
    """Run a workspace script or module on the host with the run environment; its exit status is ours."""
    t = current(c)
    try:
        arguments = shlex.split(args)
    except ValueError as exc:
        raise Failure(f"--args {args!r} cannot be split into arguments ({exc}); check its quotes") from None
    if module:
        program = ["-m", module_name("--module", target)]
    else:
        program = [script_in_workspace(t.settings.workspace, target)]
    prepare(t, allow_busy, cpu_ok)
    spec = runs.RunSpec(task="run", argv=[t.python, *program, *arguments],
                        options={"script": None if module else program[0], "module": target if module else None, "args": arguments})
    _finish(runs.execute(t, spec, detach=detach))
