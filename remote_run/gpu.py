"""What the host's GPU check found (remote_run.launcher.check_gpu), as a table and as one line."""

from __future__ import annotations

from .errors import Failure, Kind
from .output import table


def show_table(gpus: list) -> str:
    rows = [("GPU", "name", "memory used / total", "util", "other processes")]
    for g in gpus:
        used = g["memory_used"] if g["memory_used"] is not None else "?"
        total = g["memory_total"] if g["memory_total"] is not None else "?"
        util = f"{g['utilization']} %" if g["utilization"] is not None else "?"
        procs = "; ".join(f"{p['pid']} {p['name']} ({p['memory']} MiB)" for p in g["processes"]) or "none"
        rows.append((str(g["index"]), g["name"], f"{used} / {total} MiB", util, procs))
    return table(rows)


def failure(report: dict, label: str, devices: str, limit: float) -> Failure | None:
    """What the GPU check found wrong (also when --cpu-ok/--allow-busy let it pass) and the fix;
    None when nothing is."""
    state = report["state"]
    if state == "missing":
        return Failure(f"nvidia-smi is not installed on {label} (no NVIDIA driver)",
                       "install the driver, or pick a GPU host with REMOTE_HOST", Kind.GPU)
    if state == "hung":
        return Failure(f"nvidia-smi on {label} did not answer within {limit:g} s (a hung driver?)",
                       "check `nvidia-smi` there, the GPU may need a reset", Kind.GPU)
    if state == "nodriver":
        return Failure(f"nvidia-smi on {label} cannot talk to the NVIDIA driver",
                       "reboot or reinstall the driver (check `nvidia-smi` there)", Kind.GPU)
    if state == "failed":
        return Failure(f"nvidia-smi failed on {label} ({report['text']})", kind=Kind.GPU)
    if state == "none":
        return Failure(f"nvidia-smi on {label} lists no GPU", "check the driver", Kind.GPU)
    if state == "nomatch":
        found = ", ".join(str(g["index"]) for g in report["gpus"]) or "none"
        return Failure(f"CUDA_VISIBLE_DEVICES={devices} matches none of the GPUs on {label} ({found})",
                       "set it to one of them", Kind.GPU)
    if state == "queue":
        return Failure(f"{queue_folder(report, label)}, so this run cannot wait in the GPU queue",
                       "ask its owner or the host's admin to remove it, or run without --wait "
                       "(its GPU hold is then not visible to other users)", Kind.GPU)
    if state == "toofew":
        have = len(report["gpus"])
        return Failure(f"{label} has {have} GPU{'s' if have != 1 else ''}, fewer than --gpus {report['auto']} asks for",
                       f"pass --gpus {have} or fewer, or pick a host with more GPUs (REMOTE_HOST)", Kind.GPU)
    if state == "busy" and report.get("auto"):
        return Failure(f"{label} has fewer than {report['auto']} idle GPU{'s' if report['auto'] > 1 else ''} (busy: "
                       f"{', '.join(str(i) for i in report['busy']) or 'none'})",
                       "pass --wait to queue for them, or --gpus fewer", Kind.GPU)
    if state == "busy":
        by_index = {g["index"]: g for g in report["gpus"]}
        listing = "; ".join(f"GPU {i}: " + (by_index[i].get("held_by")
                                            or ", ".join(f"pid {p['pid']} {p['name']} ({p['memory']} MiB)"
                                                         for p in by_index[i]["processes"]))
                            for i in report["busy"])
        busy = ", ".join(str(i) for i in report["busy"])
        return Failure(f"GPU {busy} on {label} is in use by another job ({listing})",
                       "pass --wait to queue for it, pick another GPU with CUDA_VISIBLE_DEVICES (or auto), "
                       "or pass --allow-busy", Kind.GPU)
    return None


def queue_folder(report: dict, label: str) -> str:
    """The host's word on this user's GPU queue folder when it is not theirs: whose it is."""
    found = report["queue_folder"]
    return f"the GPU queue folder {found['folder']} on {label} is not yours ({found['why']})"


def refused(report: dict, label: str, devices: str, limit: float) -> Failure:
    """The Failure of a check that says no, its fix naming the flag that would let it pass."""
    found = failure(report, label, devices, limit)
    if report["state"] in ("missing", "hung", "nodriver", "failed", "none"):
        return Failure(found.problem,
                       f"{found.fix} (or pass --cpu-ok to run on the CPU)" if found.fix
                       else "pass --cpu-ok to run on the CPU", found.kind)
    return found


def host_limit(check_timeout: float) -> float:
    """How long the host lets nvidia-smi take: a wedged driver can hang it for good, and the host
    ends it before our own check timeout so the answer still arrives."""
    return max(1.0, int(check_timeout * 0.75))


def spec(settings, *, cpu_ok: bool, allow_busy: bool, wait: bool = False, count: int = 0) -> dict:
    """The launcher's "gpu" check (``count``: --gpus N, which means CUDA_VISIBLE_DEVICES=auto)."""
    return {"devices": "auto" if count else settings.cuda_visible_devices, "count": count or 1, "require": not cpu_ok,
            "allow_busy": allow_busy, "wait": wait, "limit": host_limit(settings.check_timeout)}


def queue(settings, *, wait: bool, timeout: float, count: int) -> dict:
    """The launcher's "queue": which GPUs the run holds while it runs (so other remote-run runs of
    any user see them taken), and whether it waits for them."""
    devices = "auto" if count else settings.cuda_visible_devices
    return {"want": {"devices": devices, "count": count or 1}, "wait": wait, "timeout": timeout}


def docker(report: dict, label: str) -> Failure | None:
    """Why Docker on the host cannot reach the GPUs (launcher.check_docker), and the fix; None when it can."""
    state, text = report.get("state"), report.get("text", "")
    if state == "ok":
        return None
    if state == "missing":
        return Failure(f"Docker is not installed on {label}",
                       "install Docker and the NVIDIA Container Toolkit to run GPU containers", Kind.ENVIRONMENT)
    if state == "noruntime":
        return Failure(f"Docker on {label} has no NVIDIA runtime (runtimes: {text or 'none'}), "
                       "so containers cannot reach the GPUs",
                       "install the NVIDIA Container Toolkit there and run "
                       "`sudo nvidia-ctk runtime configure --runtime=docker && "
                       "sudo systemctl restart docker`", Kind.ENVIRONMENT)
    return Failure(f"Docker on {label} did not answer ({text or 'no output'})",
                   "start the daemon or add your user to the docker group", Kind.ENVIRONMENT)


def docker_line(report: dict, label: str) -> str:
    """One line on whether Docker on the host can reach the GPUs."""
    found = docker(report, label)
    return found.line if found else f"Docker on {label} can reach the GPUs (runtimes: {report.get('text', '')})"
