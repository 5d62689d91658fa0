#!/usr/bin/python3
"""Test stand-in for the real ``nvidia-smi``; it is NOT the NVIDIA tool.

``tests/sshd.py`` installs this file as ``nvidia-smi`` in a directory on the
PATH of the loopback SSH server's sessions, so that code which inspects a
remote GPU box can be tested on machines without a GPU.  It knows no GPU; it
prints what a real ``nvidia-smi`` prints for a small fixed table, chosen by
the word in the file named by ``$RR_FAKE_GPU`` (else ``~/.fake-gpu``;
missing file: ``idle``):

  idle      1 GPU, nothing running
  busy      1 GPU, 12000 MiB used, 97 % utilisation, one compute process
            (pid 4242, ``python``, 11990 MiB)
  two       2 GPUs, both idle
  two-first-busy  2 GPUs, GPU 0 busy (pid 4242), GPU 1 idle
  nodriver  every call prints the "couldn't communicate with the NVIDIA
            driver" message and exits 9 (NVML_ERROR_DRIVER_NOT_LOADED)

(``absent`` is handled by the harness deleting this script, so that the remote
shell itself answers "command not found" with exit status 127.)

Supported calls (the forms real scripts use):
  nvidia-smi
  nvidia-smi -L
  nvidia-smi --query-gpu=FIELD[,FIELD...] --format=csv[,noheader][,nounits] [-i N[,N]] [-l SEC | -lms MS]
  nvidia-smi --query-compute-apps=FIELD[,...] --format=csv[,noheader][,nounits]

Output follows the real CSV conventions: fields joined by ", ", one line per
GPU / process, no line at all for "no processes"; without ``nounits`` numbers
carry their unit ("0 MiB", "97 %"); the header line names each field as
requested, plus " [MiB]" / " [%]" for fields that have a unit.  An unknown
field gives ``Field "x" is not a valid field to query.`` and exit status 2,
like the real tool.  Only the standard library is used (the remote has
/usr/bin/python3).
"""

import os
import sys
import time

STATE_FILE = os.environ.get("RR_FAKE_GPU") or os.path.join(os.path.expanduser("~"), ".fake-gpu")
DRIVER_VERSION = "550.54.15"
CUDA_VERSION = "12.4"

H100 = "NVIDIA H100 80GB HBM3"
UUIDS = [
    "GPU-5e5f3b1c-8d2a-4c6e-9f10-2b3c4d5e6f70",
    "GPU-7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
]


def _gpu(index, used=0, util=0):
    return {
        "index": index,
        "name": H100,
        "uuid": UUIDS[index],
        "memory.used": used,
        "memory.total": 81559,
        "utilization.gpu": util,
        "pci.bus_id": "00000000:%02X:00.0" % (0x18 + 0x20 * index),
        "temperature.gpu": 31 + (util // 3),
        "power.draw": 69.5 if util == 0 else 512.3,
    }


STATES = {
    "idle": ([_gpu(0)], []),
    "busy": (
        [_gpu(0, used=12000, util=97)],
        [{"gpu_uuid": UUIDS[0], "pid": 4242, "process_name": "python",
          "used_memory": 11990}],
    ),
    "two": ([_gpu(0), _gpu(1)], []),
    # GPU 0 busy with another job, GPU 1 idle but with more memory in use than an idle GPU 0 would have
    "two-first-busy": (
        [_gpu(0, used=12000, util=97), _gpu(1, used=500)],
        [{"gpu_uuid": UUIDS[0], "pid": 4242, "process_name": "python", "used_memory": 11990}],
    ),
}

NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
    "driver. Make sure that the latest NVIDIA driver is installed and running."
)

# field name -> (unit or None, getter)
GPU_FIELDS = {
    "index": (None, lambda g, n: g["index"]),
    "name": (None, lambda g, n: g["name"]),
    "gpu_name": (None, lambda g, n: g["name"]),
    "uuid": (None, lambda g, n: g["uuid"]),
    "gpu_uuid": (None, lambda g, n: g["uuid"]),
    "count": (None, lambda g, n: n),
    "driver_version": (None, lambda g, n: DRIVER_VERSION),
    "pci.bus_id": (None, lambda g, n: g["pci.bus_id"]),
    "gpu_bus_id": (None, lambda g, n: g["pci.bus_id"]),
    "memory.used": ("MiB", lambda g, n: g["memory.used"]),
    "memory.total": ("MiB", lambda g, n: g["memory.total"]),
    "memory.free": ("MiB", lambda g, n: g["memory.total"] - g["memory.used"]),
    "utilization.gpu": ("%", lambda g, n: g["utilization.gpu"]),
    "temperature.gpu": (None, lambda g, n: g["temperature.gpu"]),
    "power.draw": ("W", lambda g, n: "%.2f" % g["power.draw"]),
    "timestamp": (None, lambda g, n: time.strftime("%Y/%m/%d %H:%M:%S.000")),
}

APP_FIELDS = {
    "gpu_uuid": (None, lambda p: p["gpu_uuid"]),
    "pid": (None, lambda p: p["pid"]),
    "process_name": (None, lambda p: p["process_name"]),
    "name": (None, lambda p: p["process_name"]),
    "used_memory": ("MiB", lambda p: p["used_memory"]),
    "used_gpu_memory": ("MiB", lambda p: p["used_memory"]),
}
# the real tool titles used_memory as "used_gpu_memory [MiB]"
APP_TITLES = {"used_memory": "used_gpu_memory", "name": "process_name"}


def read_state():
    try:
        with open(STATE_FILE) as fh:
            word = fh.read().strip() or "idle"
    except FileNotFoundError:
        word = "idle"
    return word


def parse_args(argv):
    opts = {"query_gpu": None, "query_apps": None, "format": None,
            "ids": None, "list": False, "loop_s": None}
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name in ("--query-gpu", "--query-compute-apps", "--format",
                    "-i", "--id", "-l", "--loop", "-lms", "--loop-ms") and not eq:
            value = next(it, "")
        if name == "--query-gpu":
            opts["query_gpu"] = value
        elif name == "--query-compute-apps":
            opts["query_apps"] = value
        elif name == "--format":
            opts["format"] = value
        elif name in ("-i", "--id"):
            opts["ids"] = value
        elif name in ("-l", "--loop"):
            opts["loop_s"] = float(value)
        elif name in ("-lms", "--loop-ms"):
            opts["loop_s"] = float(value) / 1000
        elif arg in ("-L", "--list-gpus"):
            opts["list"] = True
        else:
            print("Invalid combination of input arguments. Please run "
                  "'nvidia-smi -h' for help.\n")
            sys.exit(2)
    return opts


def csv_output(fields, rows, table, fmt, titles=None):
    """Print rows as nvidia-smi's CSV; ``table`` maps field -> (unit, getter)."""
    titles = titles or {}
    flags = set((fmt or "").split(","))
    if "csv" not in flags:
        print('"--format" must be given "csv" with query options.\n')
        return 2
    names = [f.strip() for f in fields.split(",") if f.strip()]
    for name in names:
        if name not in table:
            print('Field "%s" is not a valid field to query.\n' % name)
            return 2
    out = []
    if "noheader" not in flags:
        heads = []
        for name in names:
            unit = table[name][0]
            head = titles.get(name, name)
            heads.append(head + (" [%s]" % unit if unit else ""))
        out.append(", ".join(heads))
    for row in rows:
        cells = []
        for name in names:
            unit, get = table[name]
            text = str(get(*row))
            if unit and "nounits" not in flags:
                text += " " + unit
            cells.append(text)
        out.append(", ".join(cells))
    for line in out:
        print(line)
    return 0


def _row(a, b, c):
    """One table row: three cells padded to the real widths (41, 24, 22)."""
    return "|%s|%s|%s|" % (a.ljust(41), b.ljust(24), c.ljust(22))


def plain_table(gpus, apps):
    now = time.strftime("%a %b %d %H:%M:%S %Y")
    bar = "+" + "-" * 89 + "+"
    sep = "+" + "-" * 41 + "+" + "-" * 24 + "+" + "-" * 22 + "+"
    head = " NVIDIA-SMI %s" % DRIVER_VERSION
    tail = "Driver Version: %s      CUDA Version: %s     " % (DRIVER_VERSION, CUDA_VERSION)
    lines = [
        now,
        bar,
        "|" + head + tail.rjust(89 - len(head)) + "|",
        sep.replace("+", "|", 1)[:-1] + "|",
        _row(" GPU  Name                 Persistence-M ", " Bus-Id          Disp.A ",
             " Volatile Uncorr. ECC "),
        _row(" Fan  Temp   Perf          Pwr:Usage/Cap ", "           Memory-Usage ",
             " GPU-Util  Compute M. "),
        _row("", "", "               MIG M. "),
        "|" + "=" * 41 + "+" + "=" * 24 + "+" + "=" * 22 + "|",
    ]
    for g in gpus:
        lines.append(_row(" %3d  %-22s      On  " % (g["index"], g["name"][:22]),
                          " %s Off " % g["pci.bus_id"].ljust(16),
                          "                    0 "))
        lines.append(_row(" N/A   %2dC    P0       %14s " % (
                              g["temperature.gpu"], "%dW /  700W" % g["power.draw"]),
                          " %22s " % ("%dMiB / %dMiB" % (g["memory.used"], g["memory.total"])),
                          " %6s      Default " % ("%d%%" % g["utilization.gpu"])))
        lines.append(_row("", "", "             Disabled "))
        lines.append(sep)
    lines += [
        "",
        bar,
        "| Processes:".ljust(90) + "|",
        "|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |",
        "|        ID   ID                                                               Usage      |",
        "|" + "=" * 89 + "|",
    ]
    by_uuid = {g["uuid"]: g["index"] for g in gpus}
    if not apps:
        lines.append("|  No running processes found".ljust(90) + "|")
    for p in apps:
        lines.append("|  %4d   N/A  N/A  %9d      C   %-40s %9s |"
                     % (by_uuid.get(p["gpu_uuid"], 0), p["pid"],
                        p["process_name"][:40], "%dMiB" % p["used_memory"]))
    lines.append(bar)
    print("\n".join(lines))
    return 0


def main(argv):
    opts = parse_args(argv)
    if opts["loop_s"]:
        # Query again every interval until killed, as the real tool does; the state is read each
        # time, so a test can change what the GPU shows while a run goes on.
        while True:
            code = query(opts)
            sys.stdout.flush()
            if code:
                return code
            time.sleep(opts["loop_s"])
    return query(opts)


def query(opts):
    state = read_state()
    if state == "nodriver":
        print(NO_DRIVER)
        return 9
    gpus, apps = STATES.get(state, STATES["idle"])
    if opts["ids"] is not None:
        wanted = {i.strip() for i in opts["ids"].split(",")}
        gpus = [g for g in gpus if str(g["index"]) in wanted or g["uuid"] in wanted]
        if not gpus:
            print("No devices were found")
            return 6
    if opts["query_gpu"] is not None:
        rows = [(g, len(gpus)) for g in gpus]
        return csv_output(opts["query_gpu"], rows, GPU_FIELDS, opts["format"])
    if opts["query_apps"] is not None:
        uuids = {g["uuid"] for g in gpus}
        rows = [(p,) for p in apps if p["gpu_uuid"] in uuids]
        return csv_output(opts["query_apps"], rows, APP_FIELDS, opts["format"],
                          APP_TITLES)
    if opts["list"]:
        for g in gpus:
            print("GPU %d: %s (UUID: %s)" % (g["index"], g["name"], g["uuid"]))
        return 0
    return plain_table(gpus, apps)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
