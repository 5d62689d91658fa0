"""GPU samples beside a run: `nvidia-smi -lms` writing its GPUs' utilisation, memory and power to
the run's gpu.csv every few seconds, until the run ends or its supervisor dies."""

import os
import signal
import subprocess
import sys

FIELDS = "timestamp,index,uuid,utilization.gpu,memory.used,memory.total,power.draw"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def start(run_dir, sample):
    """The sampling process, which Linux ends when its parent (the supervisor) dies, even by kill -9;
    None when sampling is off (``sample["seconds"]`` 0, no GPU) or there is no nvidia-smi. Where the
    sampler cannot be tied to its parent, it is not started: one line in the run's log says so."""
    if not sample or not sample.get("seconds") or sample.get("devices") == "-1":
        return None
    argv = ["nvidia-smi", "--query-gpu=" + FIELDS, "--format=csv,noheader,nounits", "-lms",
            str(int(sample["seconds"] * 1000))]
    if sample.get("devices"):
        argv += ["-i", sample["devices"]]
    tie, why = dies_with_this_process()
    if tie is None:
        note(run_dir, "GPU sampling off: %s; the run goes on without gpu.csv" % why)
        return None
    try:
        with open(os.path.join(run_dir, "gpu.csv"), "wb") as out:
            # preexec_fn is safe here: the supervisor, which calls this, is single-threaded (and so the
            # thread that forks, whose end is what PR_SET_PDEATHSIG watches, lives as long as it does).
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                    preexec_fn=tie)
    except subprocess.SubprocessError:  # tie() raised in the child: prctl refused
        note(run_dir, "GPU sampling off: prctl(PR_SET_PDEATHSIG) failed, so a sampler could outlive its "
                      "supervisor; the run goes on without gpu.csv")
        return None
    except OSError:
        return None


def stop(process):
    if process is not None:
        process.terminate()
        process.wait()


def dies_with_this_process():
    """(tie, None): ``tie`` is a preexec_fn that has the child sent SIGTERM when the process that
    called this one dies; (None, why) where Linux's prctl cannot be reached. A sampler that loops
    until killed must not outlive the supervisor that would stop it (it would sample, and keep
    gpu.csv open, for as long as the host is up), so without the tie there is no sampler."""
    if not sys.platform.startswith("linux"):
        return None, "the sampler can only be tied to its supervisor on Linux (this host is %s)" % sys.platform
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except ImportError:
        return None, "this python3 (%s) has no ctypes, which ties the sampler to its supervisor" % sys.executable
    except (OSError, AttributeError) as exc:
        return None, "prctl, which ties the sampler to its supervisor, cannot be called here (%s)" % exc
    # Everything the child needs is made before the fork: between fork and exec it only calls prctl.
    args = (ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGTERM), ctypes.c_ulong(0), ctypes.c_ulong(0),
            ctypes.c_ulong(0))
    parent = os.getpid()

    def tie():
        if prctl(*args) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        # Linux signals a parent's death only to children tied before it: a parent that died between
        # fork and prctl left this child to init, and no SIGTERM will come. It goes now instead.
        if os.getppid() != parent:
            os._exit(0)

    return tie, None


def note(run_dir, text):
    """One ``remote-run:`` line in the run's log (its user sees it with the run's output)."""
    try:
        with open(os.path.join(run_dir, "run.log"), "ab") as log:
            log.write(("remote-run: %s\n" % text).encode("utf-8", "replace"))
    except OSError:
        pass
