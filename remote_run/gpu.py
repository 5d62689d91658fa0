"""GPU checks: one nvidia-smi round trip, parsed into GPUs and the processes using them."""

from __future__ import annotations

from dataclasses import dataclass, field

from .target import CHECK_TIMEOUT

GPU_FIELDS = "index,name,uuid,memory.used,memory.total,utilization.gpu"
APP_FIELDS = "gpu_uuid,pid,process_name,used_memory"
SEPARATOR = "--- remote-run compute apps ---"
MISSING = 127
HUNG = 124  # coreutils timeout's status
# A wedged driver can hang nvidia-smi for good: the host ends it before our own check timeout.
HOST_LIMIT = max(1, int(CHECK_TIMEOUT * 0.75))

# Both queries in one remote command; "command not found" is told apart from a driver failure.
QUERY_SCRIPT = f"""
command -v nvidia-smi >/dev/null 2>&1 || exit {MISSING}
limit() {{ if command -v timeout >/dev/null 2>&1; then timeout -k 2 {HOST_LIMIT} "$@"; else "$@"; fi; }}
limit nvidia-smi --query-gpu={GPU_FIELDS} --format=csv,noheader,nounits || exit $?
echo '{SEPARATOR}'
limit nvidia-smi --query-compute-apps={APP_FIELDS} --format=csv,noheader,nounits
"""


@dataclass
class Gpu:
    index: int
    name: str
    uuid: str
    memory_used: int | None
    memory_total: int | None
    utilization: int | None
    processes: list = field(default_factory=list)


@dataclass
class Process:
    gpu_uuid: str
    pid: int
    name: str
    memory: int | None


def _number(text: str) -> int | None:
    text = text.strip()
    try:
        return int(float(text))
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def parse(output: str) -> list[Gpu]:
    """Parse QUERY_SCRIPT's output (``--format=csv,noheader,nounits``)."""
    gpu_part, _, app_part = output.partition(SEPARATOR)
    gpus = []
    for line in gpu_part.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 6 or not cells[0].isdigit():
            continue
        # A GPU name may itself contain commas: the fixed fields are at both ends.
        index, uuid, used, total, util = cells[0], cells[-4], cells[-3], cells[-2], cells[-1]
        gpus.append(Gpu(int(index), ", ".join(cells[1:-4]), uuid, _number(used), _number(total), _number(util)))
    by_uuid = {g.uuid: g for g in gpus}
    for line in app_part.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 4 or not cells[1].isdigit():
            continue
        process = Process(cells[0], int(cells[1]), ", ".join(cells[2:-1]), _number(cells[-1]))
        if process.gpu_uuid in by_uuid:
            by_uuid[process.gpu_uuid].processes.append(process)
    return gpus


def visible(gpus: list[Gpu], cuda_visible_devices: str) -> list[Gpu]:
    """The GPUs a run may use under CUDA_VISIBLE_DEVICES (indices or UUID prefixes)."""
    if not cuda_visible_devices:
        return list(gpus)
    chosen = []
    for item in cuda_visible_devices.split(","):
        for gpu in gpus:
            if (item.isdigit() and gpu.index == int(item)) or (not item.isdigit() and gpu.uuid.startswith(item)):
                chosen.append(gpu)
    return chosen


def table(gpus: list[Gpu]) -> str:
    rows = [("GPU", "name", "memory used / total", "util", "other processes")]
    for g in gpus:
        memory = f"{g.memory_used if g.memory_used is not None else '?'} / {g.memory_total if g.memory_total is not None else '?'} MiB"
        util = f"{g.utilization} %" if g.utilization is not None else "?"
        procs = "; ".join(f"{p.pid} {p.name} ({p.memory} MiB)" for p in g.processes) or "none"
        rows.append((str(g.index), g.name, memory, util, procs))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
