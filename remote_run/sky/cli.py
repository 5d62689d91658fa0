"""The `sky` command lines remote-run runs, and what it reads from their output."""

from __future__ import annotations

import re
import shutil

from ..errors import Failure, Kind
from ..output import say
from ..shell import join, summary
from .names import check_target
from .taskyaml import uv_command

LIVE = ("UP", "INIT", "STOPPED")  # cluster states `sky status` shows for a cluster that exists
LIVE_JOB = ("INIT", "PENDING", "SETTING_UP", "RUNNING")
QUERY_TIMEOUT = 600
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# SkyPilot prefixes each line of a job's output: "(task, pid=1234) ", "(head, rank=0, pid=1234) ".
JOB_PREFIX = re.compile(r"^\([^()\n]*\bpid=[0-9]+[^()\n]*\) ?", re.M)
JOB_SUBMITTED = re.compile(r"Job submitted, ID: ([0-9]+)")


def require_sky() -> None:
    if not shutil.which("sky"):
        raise Failure("sky is not installed", "pip install 'remote-run[sky]'", Kind.ENVIRONMENT)


def launch_argv(name: str, accel: str, yaml_path, *, idle_minutes: int, down: bool, infra: str | None,
                nodes: int) -> list[str]:
    argv = ["sky", "launch", "-c", name, "-y", "--gpus", accel, "-i", str(idle_minutes)]
    if down:
        argv.append("--down")
    if infra:
        argv += ["--infra", infra]
    if nodes != 1:
        argv += ["--num-nodes", str(nodes)]
    return argv + [str(yaml_path)]


def playbook_command(settings, target: str, python_args, choice=None) -> str:
    """The one string that reaches the cluster's shell: ``uv run ... python ARGS``, every ARG quoted;
    ``choice``: the extras, groups and --frozen chosen (remote_run.environment.Choice)."""
    command = join([*uv_command("run", check_target(target), settings.workspace, choice), *python_args])
    if target == "gpu" and settings.cuda_visible_devices:
        command = join(["export", f"CUDA_VISIBLE_DEVICES={settings.cuda_visible_devices}"]) + "; " + command
    return command


def exec_argv(name: str, workdir, command: str, *, detach: bool = False, forward=(), variables=None) -> list[str]:
    """`sky exec`; each forwarded variable is named with ``--env NAME`` so its value never is on a command line;
    ``variables`` (--env, not secrets) go as ``--env NAME=VALUE``."""
    env = [arg for variable in forward for arg in ("--env", variable)]
    env += [arg for name, value in (variables or {}).items() for arg in ("--env", f"{name}={value}")]
    return ["sky", "exec", name, "--workdir", str(workdir), *env, *(["-d"] if detach else []), command]


def quiet(host, argv):
    """A short `sky` query, its output captured (the local Host runs it)."""
    return host.local(argv, hide=True, timeout=QUERY_TIMEOUT)


def plain(text: str) -> str:
    """Output without colour codes and without SkyPilot's ``(task, pid=N)`` line prefixes."""
    return JOB_PREFIX.sub("", ANSI.sub("", text or "").replace("\r\n", "\n"))


def last_line(text: str) -> str:
    lines = [line.strip() for line in plain(text).splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def statuses(host, names) -> dict[str, str]:
    """{name: UP|INIT|STOPPED} for the named clusters that exist; ``sky status NAME...``."""
    names = list(names)
    if not names:
        return {}
    result = quiet(host, ["sky", "status", *names])
    if result.exited:
        raise Failure(f"`sky status` failed (exit {result.exited}): {last_line(result.stderr + result.stdout)}",
                      kind=Kind.ENVIRONMENT)
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


def newest_live_job(host, name: str) -> str | None:
    """The highest job id that `sky queue NAME` shows as not finished."""
    result = quiet(host, ["sky", "queue", name])
    if result.exited:
        return None
    jobs = []
    for line in plain(result.stdout).splitlines():
        tokens = line.split()
        if tokens and tokens[0].isdigit() and any(t in LIVE_JOB for t in tokens[1:]):
            jobs.append(int(tokens[0]))
    return str(max(jobs)) if jobs else None


def cancel(host, name: str, text: str, commands: list) -> str | None:
    """Cancel the job `sky exec` submitted (its id from ``text``, else the newest live one); its id."""
    job = job_id(text)
    how = "" if job else " (the newest unfinished job in `sky queue`)"
    if job is None:
        job = newest_live_job(host, name)
    if job is None:
        say(f"Ctrl+C: found no job to cancel on {name}; "
            f"check `sky queue {name}` and stop it with `sky cancel {name} JOB -y`")
        return None
    argv = ["sky", "cancel", name, job, "-y"]
    say(f"Ctrl+C: cancelling job {job}{how} on {name}: {join(argv)}")
    commands.append(summary(argv))
    result = quiet(host, argv)
    if result.exited:
        say(f"sky cancel failed (exit {result.exited}): {last_line(result.stderr + result.stdout)}; "
            f"stop it with `sky cancel {name} {job} -y`")
    return job


def stream(host, argv, env: dict | None = None) -> tuple[int, str, bool]:
    """Run a `sky` command showing its output (stdout and stderr) live: (exit status, output, Ctrl+C?).

    Ctrl+C reaches `sky` from the terminal and stops its log stream; a second one stops waiting.
    """
    import os

    from ..host import exits
    from ..pipeline import CtrlC, Tee

    output = Tee()
    ctrl_c = CtrlC(lambda: None, lambda: os._exit(exits.INTERRUPTED))
    with ctrl_c:
        result = host.local(argv, stream=output, err_stream=output, env=env)
    return result.exited, output.getvalue(), ctrl_c.requested
