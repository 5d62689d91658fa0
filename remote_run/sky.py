"""SkyPilot clusters: names and name files, the task YAML, and the `sky` command lines we run."""

from __future__ import annotations

import codecs
import fnmatch
import getpass
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from . import records
from .errors import Failure
from .runs import INTERRUPTED, report
from .shell import join, summary
from .transfer import sync_filters

NOT_INSTALLED = "sky is not installed: pip install 'remote-run[sky]'"
TARGETS = ("gpu", "tpu")
LIVE = ("UP", "INIT", "STOPPED")  # cluster states `sky status` shows for a cluster that exists
LIVE_JOB = ("INIT", "PENDING", "SETTING_UP", "RUNNING")
MAX_NAME = 60

# SkyPilot's own rule for cluster names.
CLUSTER_NAME = re.compile(r"[a-zA-Z]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?\Z")
EXPERIMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}\Z")
ACCELERATOR = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9-]*)(?::(?P<count>[0-9]+))?\Z")
TPU = re.compile(r"tpu-v[0-9]+[a-z]*-[0-9]+\Z", re.I)
INFRA = re.compile(r"[A-Za-z0-9*][A-Za-z0-9._:@/*-]*\Z")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# SkyPilot prefixes each line of a job's output: "(task, pid=1234) ", "(head, rank=0, pid=1234) ".
JOB_PREFIX = re.compile(r"^\([^()\n]*\bpid=[0-9]+[^()\n]*\) ?", re.M)
JOB_SUBMITTED = re.compile(r"Job submitted, ID: ([0-9]+)")

# `sky launch` runs this once per node: uv if missing, then the project's dependencies.
SETUP = """\
set -e
if ! command -v uv >/dev/null 2>&1 && [ ! -x "$HOME/.local/bin/uv" ]; then
  curl -LsSf https://astral.sh/uv/install.sh | sh || true
  [ -x "$HOME/.local/bin/uv" ] || pip install uv
fi
export PATH="$HOME/.local/bin:$PATH"
grep -q 'remote-run: uv' ~/.bashrc 2>/dev/null || echo 'export PATH="$HOME/.local/bin:$PATH"  # remote-run: uv' >> ~/.bashrc
"""
SYNC = {"gpu": ["uv", "sync", "--group", "dev", "--extra", "gpu"], "tpu": ["uv", "sync", "--extra", "tpu"]}
RUN = {"gpu": ["uv", "run", "--group", "dev", "--extra", "gpu", "python"], "tpu": ["uv", "run", "--extra", "tpu", "python"]}


def sky_binary() -> str:
    path = shutil.which("sky")
    if not path:
        raise Failure(NOT_INSTALLED)
    return path


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise Failure(f"--target {target!r} is not valid: use gpu or tpu")
    return target


def check_accelerator(accel: str) -> tuple[str, str]:
    """(accelerator, target) for ``NAME[:COUNT]`` (H100:1, A100:8) or a TPU (tpu-v4-8, tpu-v6e-1)."""
    allowed = "give NAME[:COUNT] with a whole COUNT from 1, e.g. H100:1, A100:8, L4:1, or a TPU such as tpu-v4-8 or tpu-v6e-1"
    if not accel:
        raise Failure("give --accel, e.g. --accel H100:1 or --accel tpu-v6e-1")
    match = ACCELERATOR.match(accel)
    if not match or (match["count"] is not None and int(match["count"]) < 1):
        raise Failure(f"--accel {accel!r} is not valid: {allowed}")
    if match["name"].lower().startswith("tpu-"):
        if not TPU.match(match["name"]):
            raise Failure(f"--accel {accel!r} is not valid: {allowed}")
        return accel, "tpu"
    return accel, "gpu"


def check_experiment(name: str) -> str:
    if not EXPERIMENT.match(name or ""):
        raise Failure(f"--name {name!r} is not valid: use 1-40 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")


def cluster_name(experiment: str, accel: str, user: str | None = None) -> str:
    """``<experiment>-<accelerator>-<user>``, lower-case, at most MAX_NAME characters."""
    if user is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "user"
    suffix = f"{_slug(accel.replace(':', 'x'))}-{_slug(user)[:16].strip('-') or 'user'}"
    head = _slug(experiment) or "run"
    if not head[0].isalpha():
        head = "run-" + head
    budget = MAX_NAME - len(suffix) - 1
    if len(head) > budget:
        digest = hashlib.sha1(experiment.encode()).hexdigest()[:6]
        head = head[: budget - 7].rstrip("-") + "-" + digest
    name = f"{head}-{suffix}"
    if not CLUSTER_NAME.match(name):
        raise Failure(f"cannot make a SkyPilot cluster name from {experiment!r}: got {name!r}; pass --name with letters and digits")
    return name


def name_file(settings, target: str) -> Path:
    return settings.workspace / f".cluster_name_{target}"


def read_name(settings, target: str) -> str | None:
    """The cluster named in .cluster_name_<target>, or None when the file is missing or empty."""
    path = name_file(settings, target)
    try:
        name = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise Failure(f"cannot read {path}: {exc}; delete it and run `inv sky-up` again") from None
    if name and not CLUSTER_NAME.match(name):
        raise Failure(f"{path} holds {name[:80]!r}, which is not a SkyPilot cluster name; delete it and run `inv sky-up --accel …` again")
    return name or None


def require_name(settings, target: str) -> str:
    name = read_name(settings, target)
    if not name:
        example = "tpu-v6e-1" if target == "tpu" else "H100:1"
        raise Failure(f"no {target} cluster: {name_file(settings, target)} is missing or empty; run `inv sky-up --accel {example}` first")
    return name


def _quoted(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def task_yaml(*, name: str, workdir: Path, accel: str, target: str, nodes: int = 1, infra: str | None = None, cuda_visible_devices: str = "") -> str:
    """The SkyPilot task `inv sky-up` launches: resources, the workspace as workdir, and the setup."""
    lines = [
        "# SkyPilot task rendered by remote-run `inv sky-up`; it provisions and sets up, it runs nothing.",
        f"name: {_quoted(name)}",
        f"workdir: {_quoted(str(workdir))}",
        f"num_nodes: {int(nodes)}",
        "resources:",
        f"  accelerators: {_quoted(accel)}",
    ]
    if infra:
        lines.append(f"  infra: {_quoted(infra)}")
    if target == "gpu" and cuda_visible_devices:
        lines += ["envs:", f"  CUDA_VISIBLE_DEVICES: {_quoted(cuda_visible_devices)}"]
    setup = SETUP + join(SYNC[target]) + "\n"
    lines += ["setup: |", *[f"  {line}" for line in setup.splitlines()]]
    return "\n".join(lines) + "\n"


def staging_dir(name: str) -> Path:
    """Where the task YAML for cluster ``name`` is rendered: ~/.cache/remote-run/sky/NAME, outside the checkout."""
    path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "remote-run" / "sky" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def launch_argv(name: str, accel: str, yaml_path: Path, *, idle_minutes: int, down: bool, infra: str | None, nodes: int) -> list[str]:
    argv = ["sky", "launch", "-c", name, "-y", "--gpus", accel, "-i", str(idle_minutes)]
    if down:
        argv.append("--down")
    if infra:
        argv += ["--infra", infra]
    if nodes != 1:
        argv += ["--num-nodes", str(nodes)]
    return argv + [str(yaml_path)]


def playbook_command(settings, target: str, python_args) -> str:
    """The one string that reaches the cluster's shell: ``uv run ... python ARGS``, every ARG quoted."""
    command = join([*RUN[check_target(target)], *python_args])
    if target == "gpu" and settings.cuda_visible_devices:
        command = join(["export", f"CUDA_VISIBLE_DEVICES={settings.cuda_visible_devices}"]) + "; " + command
    return command


def exec_argv(name: str, workdir: Path, command: str, *, detach: bool = False, forward=()) -> list[str]:
    """`sky exec`; each forwarded variable is named with ``--env NAME`` so its value never is on a command line."""
    env = [arg for variable in forward for arg in ("--env", variable)]
    return ["sky", "exec", name, "--workdir", str(workdir), *env, *(["-d"] if detach else []), command]


class Interrupted(Exception):
    """Ctrl+C arrived while a `sky` command streamed; ``text`` is its output so far."""

    def __init__(self, text: str):
        super().__init__("interrupted")
        self.text = text


def stream(argv, env: dict | None = None) -> tuple[int, str]:
    """Run ``argv`` showing its output live; (exit status, output). Ctrl+C stops it and raises Interrupted."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **env} if env else None)
    except FileNotFoundError:
        raise Failure(NOT_INSTALLED) from None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    parts: list[str] = []
    try:
        while True:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            text = decoder.decode(chunk)
            parts.append(text)  # before echoing: a Ctrl+C right after must still see the job id
            sys.stdout.write(text)
            sys.stdout.flush()
        return proc.wait(), "".join(parts)
    except KeyboardInterrupt:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise Interrupted("".join(parts)) from None
    finally:
        proc.stdout.close()


def quiet(argv, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a short `sky` query and capture its output."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout, errors="replace")
    except FileNotFoundError:
        raise Failure(NOT_INSTALLED) from None
    except subprocess.TimeoutExpired:
        raise Failure(f"`{summary(argv)}` did not answer in {timeout:.0f} s; check the SkyPilot API server (`sky api status`)") from None


def plain(text: str) -> str:
    """Output without colour codes and without SkyPilot's ``(task, pid=N)`` line prefixes."""
    return JOB_PREFIX.sub("", ANSI.sub("", text or "").replace("\r\n", "\n"))


def last_line(text: str) -> str:
    lines = [line.strip() for line in plain(text).splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def statuses(names) -> dict[str, str]:
    """{name: UP|INIT|STOPPED} for the named clusters that exist; ``sky status NAME...``."""
    names = list(names)
    if not names:
        return {}
    result = quiet(["sky", "status", *names])
    if result.returncode:
        raise Failure(f"`sky status` failed (exit {result.returncode}): {last_line(result.stderr + result.stdout)}")
    found = {}
    for line in plain(result.stdout).splitlines():
        tokens = line.split()
        if tokens and tokens[0] in names:
            state = next((t for t in tokens[1:] if t in LIVE), None)
            if state:
                found.setdefault(tokens[0], state)
    return found


def job_id(text: str) -> str | None:
    ids = JOB_SUBMITTED.findall(plain(text))
    return ids[-1] if ids else None


def newest_live_job(name: str) -> str | None:
    """The highest job id that `sky queue NAME` shows as not finished."""
    result = quiet(["sky", "queue", name])
    if result.returncode:
        return None
    jobs = []
    for line in plain(result.stdout).splitlines():
        tokens = line.split()
        if tokens and tokens[0].isdigit() and any(t in LIVE_JOB for t in tokens[1:]):
            jobs.append(int(tokens[0]))
    return str(max(jobs)) if jobs else None


def cancel(name: str, text: str) -> str | None:
    """Cancel the job `sky exec` submitted (its id from ``text``, else the newest live one); its id."""
    job = job_id(text)
    how = "" if job else " (the newest unfinished job in `sky queue`)"
    if job is None:
        job = newest_live_job(name)
    if job is None:
        print(f"remote-run: Ctrl+C: found no job to cancel on {name}; check `sky queue {name}` and stop it with `sky cancel {name} JOB -y`", file=sys.stderr, flush=True)
        return None
    print(f"remote-run: Ctrl+C: cancelling job {job}{how} on {name}: sky cancel {name} {job} -y", file=sys.stderr, flush=True)
    result = quiet(["sky", "cancel", name, job, "-y"])
    if result.returncode:
        print(f"remote-run: sky cancel failed (exit {result.returncode}): {last_line(result.stderr + result.stdout)}; stop it with `sky cancel {name} {job} -y`", file=sys.stderr, flush=True)
    return job


def _workspace_extras(settings, target: str) -> None:
    """The cluster's setup runs `uv sync --extra TARGET` in the workspace: refuse early if it cannot."""
    pyproject = settings.workspace / "pyproject.toml"
    if not pyproject.is_file():
        raise Failure(f"{settings.workspace} has no pyproject.toml, but the cluster's setup runs `{join(SYNC[target])}` there; add one with a `{target}` extra")
    try:
        import tomllib
    except ImportError:  # Python 3.10: the cluster's setup will say it
        return
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise Failure(f"{pyproject} cannot be read as TOML ({exc}); fix it before `inv sky-up`") from None
    extras = data.get("project", {}).get("optional-dependencies", {})
    if target not in extras:
        raise Failure(f"{pyproject} has no `{target}` extra, but the cluster's setup runs `{join(SYNC[target])}`; add [project.optional-dependencies] {target} = [...]")
    if target == "gpu" and "dev" not in data.get("dependency-groups", {}):
        raise Failure(f"{pyproject} has no `dev` dependency group, but the cluster's setup runs `{join(SYNC[target])}`; add [dependency-groups] dev = [...]")


def up(settings, *, accel: str, experiment: str | None, idle_minutes: int, down: bool, infra: str | None, nodes: int, replace: bool) -> str:
    """Launch (or reuse) the cluster for ``accel``; writes .cluster_name_<target> only on success."""
    accel, target = check_accelerator(accel)
    experiment = check_experiment(experiment) if experiment is not None else settings.workspace.name
    if infra is not None and not INFRA.match(infra):
        raise Failure(f"--infra {infra!r} is not valid: give a SkyPilot infra such as aws, gcp/us-central1 or k8s")
    sky_binary()
    refuse_env_upload(settings.workspace)
    path = name_file(settings, target)
    old = read_name(settings, target)
    name = cluster_name(experiment, accel)
    if old and not replace:
        state = statuses([old]).get(old)
        if state == "UP":
            print(f"remote-run: reusing cluster {old} (UP) named in {path}; pass --replace for a new one", flush=True)
            return old
        if state:
            print(f"remote-run: reusing cluster {old} ({state}) named in {path}: sky launch brings it up; pass --replace for a new one", flush=True)
            name = old
        else:
            print(f"remote-run: {path.name} names {old}, which SkyPilot does not know (torn down?); launching {name}", flush=True)
    _workspace_extras(settings, target)
    if old and replace:
        print(f"remote-run: --replace: tearing down {old} (named in {path.name}): sky down {old} -y", flush=True)
        _down(old)
        path.unlink(missing_ok=True)
    yaml_path = staging_dir(name) / "task.yaml"
    yaml_path.write_text(task_yaml(name=name, workdir=settings.workspace, accel=accel, target=target, nodes=nodes, infra=infra,
                                   cuda_visible_devices=settings.cuda_visible_devices), encoding="utf-8")
    argv = launch_argv(name, accel, yaml_path, idle_minutes=idle_minutes, down=down, infra=infra, nodes=nodes)
    print(f"remote-run: {join(argv)}", flush=True)
    try:
        code, text = stream(argv)
    except Interrupted:
        raise Failure(f"Ctrl+C: sky launch interrupted, {path.name} not written; the cluster {name} may still come up: "
                      f"check `sky status {name}`, tear it down with `sky down {name} -y`", code=INTERRUPTED) from None
    if code:
        raise Failure(f"sky launch failed (exit {code}): {last_line(text)}; {path.name} not written (check `sky status`)", code=code)
    path.write_text(name + "\n", encoding="utf-8")
    print(f"remote-run: cluster {name} is up; its name is in {path}", flush=True)
    return name


def _down(name: str) -> None:
    code, text = stream(["sky", "down", name, "-y"])
    if code:
        raise Failure(f"sky down {name} failed (exit {code}): {last_line(text)}; run `sky down {name} -y` again or check `sky status`", code=code)


def down(settings, target: str) -> None:
    """`sky down` the cluster named in .cluster_name_<target>, then remove the file."""
    check_target(target)
    path = name_file(settings, target)
    name = read_name(settings, target)
    if not name:
        print(f"remote-run: nothing to tear down for {target}: {path} is missing or empty")
        return
    sky_binary()
    _down(name)
    path.unlink(missing_ok=True)
    print(f"remote-run: tore down {name} and removed {path.name}")


def status_rows(settings) -> list[tuple[str, str, str]]:
    """(target, cluster name, SkyPilot status) for each name file."""
    named = [(target, read_name(settings, target)) for target in TARGETS]
    named = [(target, name) for target, name in named if name]
    if not named:
        return []
    sky_binary()
    found = statuses(name for _, name in named)
    return [(target, name, found.get(name, "not found")) for target, name in named]


def unignored_env_files(workspace: Path) -> list[str]:
    """`.env`/`.env.*` files (not `.env.example`) that `sky exec --workdir` would upload.

    SkyPilot leaves out what `.skyignore` names, or, without one, what git ignores.
    """
    found = []
    for path in workspace.rglob(".env*"):
        relative = path.relative_to(workspace)
        if not path.is_file() or path.name == ".env.example" or not (path.name == ".env" or path.name.startswith(".env.")):
            continue
        if {".git", ".venv"} & set(relative.parts):
            continue
        found.append(relative.as_posix())
    if not found:
        return []
    skyignore = workspace / ".skyignore"
    if skyignore.is_file():
        patterns = [line.strip().lstrip("/") for line in skyignore.read_text(errors="replace").splitlines() if line.strip() and not line.startswith("#")]
        return [f for f in found if not any(fnmatch.fnmatch(f, p) or fnmatch.fnmatch(Path(f).name, p) for p in patterns)]
    done = subprocess.run(["git", "-C", str(workspace), "check-ignore", "--stdin"], input="\n".join(found), capture_output=True, text=True)
    ignored = set(done.stdout.split("\n")) if done.returncode in (0, 1) else set()
    return [f for f in found if f not in ignored]


def refuse_env_upload(workspace: Path) -> None:
    """SkyPilot uploads the workdir as it is: stop before a secrets file goes with it."""
    leaking = unignored_env_files(workspace)
    if leaking:
        raise Failure(f"SkyPilot would upload {', '.join(leaking)} (secrets) from {workspace} to the cluster: add them to "
                      ".gitignore (or .skyignore), or use REMOTE_ENV to forward single variables")


def _stage(settings, files: dict) -> Path:
    """A copy of the workspace (same excludes as a sync) with ``files`` written in, outside the checkout."""
    stage = Path(tempfile.mkdtemp(prefix="remote-run-sky-"))
    argv = ["rsync", "-a", *[f"--filter={rule}" for rule in sync_filters(settings)], f"{settings.workspace}/", f"{stage}/"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        shutil.rmtree(stage, ignore_errors=True)
        raise Failure("rsync is not installed; install it (apt-get install rsync, brew install rsync)") from None
    if done.returncode:
        shutil.rmtree(stage, ignore_errors=True)
        raise Failure(f"copying {settings.workspace} to {stage} failed (rsync exit {done.returncode}): {last_line(done.stderr)}")
    for relative, text in files.items():
        target = stage / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return stage


def execute(settings, target: str, *, task: str, python_args, workdir: Path, detach: bool = False,
            options: dict | None = None, runner: str | None = None, runner_path: str | None = None) -> int:
    """`sky exec` the playbook command on the target's cluster, follow it, write the run record."""
    name = require_name(settings, target)
    sky_binary()
    command = playbook_command(settings, target, python_args)
    argv = exec_argv(name, workdir, command, detach=detach, forward=settings.remote_env)
    run_id = records.claim_run_id(task, settings.runs_dir)
    host = f"sky:{name}"
    record = records.RunRecord(
        run_id=run_id, task=task, host=host, git=records.git_state(settings.workspace), options=options or {},
        settings=settings.describe(), runner=runner, runner_path=f"~/sky_workdir/{runner_path}" if runner_path else None,
        commands=[summary(argv)], local_log=str(settings.runs_dir / run_id / "run.log"),
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    print(f"remote-run: {task} on {host}: {command}  [run {run_id}]", file=sys.stderr, flush=True)
    started = time.perf_counter()
    killed = False
    try:
        code, text = stream(argv, env=settings.forwarded_env())
    except Interrupted as stop:
        text, code, killed = stop.text, INTERRUPTED, not detach
        if detach:
            print(f"remote-run: Ctrl+C with --detach: nothing cancelled; see `sky queue {name}`", file=sys.stderr, flush=True)
        else:
            job = cancel(name, text)
            if job:
                record.commands.append(summary(["sky", "cancel", name, job, "-y"]))
    job = job_id(text)
    if code and not job and ("ClusterDoesNotExist" in text or "does not exist" in text):
        raise Failure(f"cluster {name} (from {name_file(settings, target).name}) does not exist any more; run `inv sky-up --accel …` again", code=code)
    if code and not job and "ClusterNotUpError" in text:
        raise Failure(f"cluster {name} is not up (stopped?); run `inv sky-up --accel …` to bring it back", code=code)
    record.remote_log = f"sky logs {name} {job}" if job else f"sky queue {name}"
    log_text = plain(text)
    record.finish(log_text, None if (detach and code == 0) else code, time.perf_counter() - started, killed=killed)
    if detach and code == INTERRUPTED:
        record.outcome = "interrupted"
    folder = record.write(settings.runs_dir / run_id, log_text)
    if record.outcome == "detached":
        print(f"remote-run: job {job} runs on {name}; follow it with `sky logs {name} {job}`, stop it with `sky cancel {name} {job} -y`; record: {folder}/log.md", file=sys.stderr, flush=True)
        return 0
    report(record, folder, run_id)
    return code


def train_on_cluster(settings, kind: str, spec, *, detach: bool) -> int:
    """Run a train-hlb/train-david RunSpec on the SkyPilot cluster of ``kind`` (gpu or tpu)."""
    check_target(kind)
    require_name(settings, kind)
    sky_binary()
    stage = _stage(settings, spec.files)
    try:
        return execute(settings, kind, task=spec.task, python_args=spec.argv[1:], workdir=stage, detach=detach, options=spec.options,
                       runner=spec.files.get(spec.runner_path) if spec.runner_path else None, runner_path=spec.runner_path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
