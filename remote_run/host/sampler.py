"""GPU samples beside a run: `nvidia-smi -lms` writing its GPUs' utilisation, memory and power to
the run's gpu.csv every few seconds, until the run ends."""

import os
import subprocess

FIELDS = "timestamp,index,uuid,utilization.gpu,memory.used,memory.total,power.draw"


def start(run_dir, sample):
    """The sampling process; None when sampling is off (``sample["seconds"]`` 0, no GPU) or there
    is no nvidia-smi."""
    if not sample or not sample.get("seconds") or sample.get("devices") == "-1":
        return None
    argv = ["nvidia-smi", "--query-gpu=" + FIELDS, "--format=csv,noheader,nounits", "-lms",
            str(int(sample["seconds"] * 1000))]
    if sample.get("devices"):
        argv += ["-i", sample["devices"]]
    try:
        with open(os.path.join(run_dir, "gpu.csv"), "wb") as out:
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    except OSError:
        return None


def stop(process):
    if process is not None:
        process.terminate()
        process.wait()
