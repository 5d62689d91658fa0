"""Tasks that prepare and inspect the machine: bootstrap, gpu-check."""

from __future__ import annotations

import sys

from invoke import task

from .. import environment, gpu
from ..errors import Failure
from ..shell import script
from ..target import CHECK_TIMEOUT, Target, current
from .workspace import sync


# Both pre-run checks in one round trip: is the environment current, and what do the GPUs say.
CHECKS_SCRIPT = f"""
dir=$1 want=$2 py=$3 probe=$4
if [ -n "$probe" ]; then
  "$py" -c "$probe" 2>&1; echo "remote-run-env-exit=$?"
elif [ -x "$dir/.venv/bin/python" ] && [ "$(cat "$dir/{environment.STAMP}" 2>/dev/null)" = "$want" ]; then
  echo "remote-run-env-exit=0"
else
  echo "remote-run-env-exit=1"
fi
( {gpu.QUERY_SCRIPT} ) 2>&1; echo "remote-run-gpu-exit=$?"
"""


def uses_venv(t: Target) -> bool:
    return not (t.settings.remote_python or t.is_local)


def run_checks(t: Target) -> tuple[tuple[int, str], tuple[int, str]]:
    """(environment check, gpu query), each as (exit status, output), from one remote command."""
    s = t.settings
    probe = "" if uses_venv(t) else environment.PROBE
    result = t.run(script(CHECKS_SCRIPT, s.remote_dir, environment.stamp(s), t.python, probe), hide=True, timeout=CHECK_TIMEOUT)
    env_text, _, rest = result.stdout.partition("remote-run-env-exit=")
    env_code, _, gpu_text = rest.partition("\n")
    gpu_text, _, gpu_code = gpu_text.partition("remote-run-gpu-exit=")
    if not env_code.strip().isdigit() or not gpu_code.strip().isdigit():
        raise Failure(f"checking {t.label} failed (exit {result.exited}): {(result.stderr or result.stdout).strip()[-300:]}")
    return (int(env_code), env_text), (int(gpu_code), gpu_text)


def bootstrap_once(t: Target, force: bool = False, checked: tuple[int, str] | None = None) -> None:
    """Make the environment current, at most once per invocation; ``checked`` is run_checks' answer."""
    if "bootstrap" in t.done:
        return
    s = t.settings
    if not uses_venv(t):
        if checked is None:
            probe = t.run([t.python, "-c", environment.PROBE], hide=True, timeout=CHECK_TIMEOUT)
            checked = (probe.exited, probe.stdout + probe.stderr)
        code, text = checked
        if code:
            which = f"REMOTE_PYTHON={s.remote_python}" if s.remote_python else f"the interpreter {t.python}"
            reason = (text.strip().splitlines() or ["no output"])[-1]
            raise Failure(f"{which} does not run on {t.label} ({reason}); fix REMOTE_PYTHON or unset it to create a venv")
        print("remote-run: using " + "; ".join(text.strip().splitlines()) + " (no venv is created)")
    elif checked and checked[0] == 0 and not force:
        print(f"remote-run: environment is up to date ({s.remote_dir}/.venv)")
    else:
        result = t.run(script(environment.BOOTSTRAP_SCRIPT, *environment.bootstrap_args(s, force)))
        if result.exited:
            lines = [l for l in (result.stderr + result.stdout).splitlines() if l.strip()]
            ours = [l for l in lines if l.startswith("remote-run: ")]
            detail = ours[-1][len("remote-run: "):] if ours else (lines[-1] if lines else "no output")
            raise Failure(f"bootstrap on {t.label} failed (exit {result.exited}): {detail}; fix it and run `inv bootstrap` again (--force rebuilds)")
    t.done["bootstrap"] = True


@task(pre=[sync], help={"force": "rebuild REMOTE_DIR/.venv from scratch even if nothing changed"})
def bootstrap(c, force=False):
    """Create or refresh REMOTE_DIR/.venv (torch, PIP_PACKAGES, requirements.txt); skipped when unchanged."""
    bootstrap_once(current(c), force)


def check_gpus(t: Target, allow_busy: bool = False, cpu_ok: bool = False, query: tuple[int, str] | None = None) -> list:
    """Query nvidia-smi once per invocation; refuse a missing or busy GPU unless allowed."""
    if "gpus" in t.done:
        return t.done["gpus"]
    if query is None:
        result = t.run(script(gpu.QUERY_SCRIPT), hide=True, timeout=CHECK_TIMEOUT)
        query = (result.exited, result.stdout + result.stderr)
    exited, text = query
    if exited:
        if exited == gpu.HUNG:
            raise Failure(f"nvidia-smi on {t.label} did not answer within {gpu.HOST_LIMIT} s (a hung driver?); check `nvidia-smi` there, the GPU may need a reset")
        if exited == gpu.MISSING:
            problem = f"nvidia-smi is not installed on {t.label} (no NVIDIA driver); install the driver, or pick a GPU host with REMOTE_HOST"
        elif "NVIDIA driver" in text or "NVIDIA-SMI has failed" in text:
            problem = f"nvidia-smi on {t.label} cannot talk to the NVIDIA driver; reboot or reinstall the driver (check `nvidia-smi` there)"
        else:
            problem = f"nvidia-smi failed on {t.label} (exit {exited}): {text.strip()[-200:]}"
        if cpu_ok:
            print(f"remote-run: {problem.split(';')[0]}; going on without a GPU (--cpu-ok)")
            t.done["gpus"] = []
            return []
        raise Failure(problem + " (or pass --cpu-ok to run on the CPU)")
    gpus = gpu.parse(text)
    print(gpu.table(gpus))
    chosen = gpu.visible(gpus, t.settings.cuda_visible_devices)
    if t.settings.cuda_visible_devices and not chosen:
        raise Failure(f"CUDA_VISIBLE_DEVICES={t.settings.cuda_visible_devices} matches none of the GPUs on {t.label} ({', '.join(str(g.index) for g in gpus) or 'none'}); set it to one of them")
    if not gpus and not cpu_ok:
        raise Failure(f"nvidia-smi on {t.label} lists no GPU; check the driver, or pass --cpu-ok to run on the CPU")
    busy = [g for g in chosen if g.processes]
    if busy and not allow_busy:
        listing = "; ".join(f"GPU {g.index}: " + ", ".join(f"pid {p.pid} {p.name} ({p.memory} MiB)" for p in g.processes) for g in busy)
        raise Failure(f"GPU {', '.join(str(g.index) for g in busy)} on {t.label} is in use by another job ({listing}); wait for it, pick another GPU with CUDA_VISIBLE_DEVICES, or pass --allow-busy")
    if busy:
        print(f"remote-run: GPU {', '.join(str(g.index) for g in busy)} is busy; going on (--allow-busy)", file=sys.stderr)
    t.done["gpus"] = chosen
    return chosen


@task(name="gpu-check", help={"allow_busy": "go on even if another process is using the GPU", "cpu_ok": "go on without a GPU (e.g. `local` on a laptop)"})
def gpu_check(c, allow_busy=False, cpu_ok=False):
    """Show the host's GPUs (memory, utilization, processes); refuse a missing or busy GPU."""
    check_gpus(current(c), allow_busy, cpu_ok)
