"""What train-hlb, train-david and run start (a RunSpec each): validated options, the runner files, the argv.

Imported before a run's first host command starts (remote_run.chain.prestart): keep it light."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Failure
from .runner_files import template
from .settings import int_between, module_name, positive_float


@dataclass
class RunSpec:
    """What to run: argv relative to REMOTE_DIR, files to write first, and what to record."""

    task: str
    argv: list
    files: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    runner_path: str | None = None
    invocation: dict = field(default_factory=dict)  # the task's name and arguments, for `inv rerun`
    cwd: str = ""  # the folder of the workspace the run starts in (--cwd)
    pull: tuple = ()  # --pull patterns, brought back when the run ends (remote_run.aftermath)
    nproc_at: int | None = None  # the argv index of torchrun's --nproc_per_node, which the host fills in
    env: dict = field(default_factory=dict)  # --env: the run's variables, kept in its record


MAX_BATCH = 50_000  # the CIFAR-10 training set

# impl: (the runner, files copied beside it); both are written unchanged, the options come as flags
HLB = {"workspace": ("hlb_workspace.py", ("remote_run_offline.py",)),
       "builtin": ("hlb_cifar.py", ("cifar10_data.py",))}
DAVID = {"workspace": ("david_workspace.py", ("remote_run_offline.py",)),
         "builtin": ("david_cifar.py", ("cifar10_data.py",))}


def seeds(seed: str, repeat: int, impl: str) -> list[str]:
    """The --seed of each run of a --repeat group: seed, seed+1, ... for the builtin trainers (the
    workspace's modules take no seed: their runs repeat as they are)."""
    if impl == "workspace" or repeat == 1:
        return [seed] * repeat
    first = int_between("--seed", seed, 0, 2**31 - 1) if seed != "" else 0
    return [str(first + i) for i in range(repeat)]


def choose_impl(settings, impl: str) -> str:
    chosen = impl or settings.train_impl
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
    options = {"synthetic": bool(synthetic)}
    if seed != "":
        options["seed"] = int_between("--seed", seed, 0, 2**31 - 1)
    if subset != "":
        options["subset"] = int_between("--subset", subset, 1, MAX_BATCH)
    return options


def hlb(settings, python: str, *, epochs, impl="", batch_size="", seed="", compile=False,
        synthetic=False, subset="") -> RunSpec:
    impl = choose_impl(settings, impl)
    options = {"epochs": positive_float("--epochs", epochs)}
    options.update(_builtin_options(impl, seed, synthetic, subset,
                                    **{"--batch-size": batch_size, "--compile": compile}))
    if impl == "workspace":
        options["hlb_module"] = settings.hlb_module
    else:
        options["compile"] = bool(compile)
        if batch_size != "":
            options["batch_size"] = int_between("--batch-size", batch_size, 1, MAX_BATCH)
    return _trainer("train-hlb", "run_hlb.py", HLB[impl], options, impl, python)


def david(settings, python: str, *, epochs="12", batch_size="512", impl="", seed="",
          synthetic=False, subset="") -> RunSpec:
    impl = choose_impl(settings, impl)
    options = {
        "epochs": int_between("--epochs", epochs, 1, 10_000),
        "batch_size": int_between("--batch-size", batch_size, 1, MAX_BATCH),
    }
    options.update(_builtin_options(impl, seed, synthetic, subset))
    if impl == "workspace":
        options["david_net_module"] = settings.david_net_module
        options["david_trainer_module"] = settings.david_trainer_module
    return _trainer("train-david", "run_david_trainer.py", DAVID[impl], options, impl, python)


def runner_flags(options: dict) -> list[str]:
    """The runner's command-line flags for validated options: ``batch_size`` is ``--batch-size``, a
    switch that is on is its bare flag. A switch that is off is left out: every runner's switches
    default to off, so the argv holds only what was chosen."""
    flags = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not False:
            flags += [flag, str(value)]  # str() of a float is its shortest round-tripping form
    return flags


def _trainer(task: str, script_name: str, runner_files: tuple, options: dict, impl: str, python: str) -> RunSpec:
    runner, beside = runner_files
    path = f"scripts/{script_name}"
    files = {path: template(runner), **{f"scripts/{name}": template(name) for name in beside}}
    return RunSpec(task=task, argv=[python, path, *runner_flags(options)], files=files, runner_path=path,
                   options={"impl": impl, **options})


def split_args(args: str, flag: str = "--args") -> list[str]:
    try:
        return shlex.split(args)
    except ValueError as exc:
        raise Failure(f"{flag} {args!r} cannot be split into arguments ({exc}); check its quotes") from None


def script_in_workspace(workspace: Path, script: str) -> str:
    """The script's path relative to the workspace; it must exist inside it."""
    if not script or script.startswith("-") or "\0" in script:
        raise Failure(f"script {script!r} is not a file path; "
                      "give a path inside the workspace such as scripts/bench.py")
    path = (workspace / script).resolve() if not Path(script).is_absolute() else Path(script).resolve()
    try:
        relative = path.relative_to(workspace)
    except ValueError:
        raise Failure(f"script {script!r} is outside the workspace {workspace}; "
                      "only workspace files are synced, so move it there") from None
    if not path.is_file():
        raise Failure(f"script {script!r} does not exist in the workspace {workspace}")
    return relative.as_posix()


def path_in_workspace(workspace: Path, path: str) -> str:
    """A file or directory inside the workspace, optionally with a pytest node id (tests/test_x.py::test_y)."""
    head = path.split("::", 1)[0]
    if not head or head.startswith("-") or "\0" in path:
        raise Failure(f"path {path!r} is not a path; give a file or directory inside the workspace such as tests/")
    resolved = (workspace / head).resolve()
    try:
        relative = resolved.relative_to(workspace).as_posix()
    except ValueError:
        raise Failure(f"path {path!r} is outside the workspace {workspace}; "
                      "only workspace files reach the cluster") from None
    if not resolved.exists():
        raise Failure(f"path {path!r} does not exist in the workspace {workspace}")
    return relative + path[len(head):]


def folder_in_workspace(workspace: Path, folder: str) -> str:
    """--cwd: a folder of the workspace, relative to it ("" for the workspace itself)."""
    if not folder or folder.startswith("-") or "\0" in folder or Path(folder).is_absolute():
        raise Failure(f"--cwd {folder!r} is not valid: "
                      "give a folder of the workspace, relative to it, such as examples/x")
    resolved = (workspace / folder).resolve()
    try:
        relative = resolved.relative_to(workspace).as_posix()
    except ValueError:
        raise Failure(f"--cwd {folder!r} is outside the workspace {workspace}; give a folder inside it") from None
    if not resolved.is_dir():
        raise Failure(f"--cwd {folder!r} is not a folder of the workspace {workspace}")
    return "" if relative == "." else relative


def program(workspace: Path, python: str, target: str, cwd: str) -> list:
    """How the host starts a workspace file from ``cwd``: Python files with the run's Python,
    executables by their #! line, .sh files without the execute bit through bash."""
    relative = script_in_workspace(workspace, target)
    path = os.path.relpath(relative, cwd or ".").replace(os.sep, "/")
    if relative.endswith(".py"):
        return [python, path]
    if os.access(workspace / relative, os.X_OK):
        return [path if "/" in path else "./" + path]
    if relative.endswith(".sh"):
        return ["bash", path]
    raise Failure(f"{target!r} is neither a Python file nor executable; "
                  "run chmod +x on it (it then runs by its #! line), "
                  "or give it a .sh name to run it with bash")


def script(settings, python: str, target: str, *, module: bool, args: str, cwd: str = "", torchrun: bool = False,
           nproc: int = 0) -> RunSpec:
    """`inv run`: a workspace file (Python, executable or .sh) or with ``module`` a Python module,
    with the run environment, from the workspace folder ``cwd``; with ``torchrun``, under
    torchrun with ``nproc`` processes (0: one per GPU the host gives the run)."""
    arguments = split_args(args)
    folder = folder_in_workspace(settings.workspace, cwd) if cwd else ""
    if module:
        argv = [python, "-m", module_name("--module", target)]
    else:
        argv = program(settings.workspace, python, target, folder)
    nproc_at = None
    if torchrun:
        argv, nproc_at = under_torchrun(python, argv, nproc)
    return RunSpec(task="run", argv=[*argv, *arguments], cwd=folder, nproc_at=nproc_at,
                   options={"script": None if module else script_in_workspace(settings.workspace, target),
                            "module": target if module else None,
                            "args": arguments, **({"cwd": folder} if folder else {}),
                            **({"torchrun": nproc or "one per GPU"} if torchrun else {})})


def under_torchrun(python: str, argv: list, nproc: int) -> tuple[list, int | None]:
    """``argv`` (a Python file, ``-m module`` or an executable) started by torchrun, and the index
    of its ``--nproc_per_node`` when the host fills it in: only the host knows the GPUs a run gets
    (CUDA_VISIBLE_DEVICES=auto, --gpus, the queue). Until then it reads ``gpu``, torchrun's own
    word for every visible GPU."""
    launcher = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc or 'gpu'}"]
    # torchrun takes `-m module` as python does; --no-python runs an executable as it is
    rest = argv[1:] if argv[0] == python else ["--no-python", *argv]
    return [*launcher, *rest], None if nproc else len(launcher) - 1
