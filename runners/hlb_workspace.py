"""Run the workspace's hlb CIFAR-10 trainer (CVlization's by default); print one RESULT_HLB line.

remote-run writes this file unchanged into the run's copy of the workspace as scripts/run_hlb.py
and passes the options as flags; by hand, from the workspace root:
`python scripts/run_hlb.py --epochs 11.5 --hlb-module mypkg.hlb`.
"""

import argparse
import importlib
import sys
import time
from pathlib import Path

from remote_run_offline import exit_offline, offline  # beside this file

# Defaults; remote-run passes its HLB_MODULE setting as --hlb-module.
EPOCHS = 11.5
HLB_MODULE = "cvlization.torch.training_pipeline.image_classification.hlb"

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the workspace root
try:
    import numpy as np

    if not hasattr(np, "float"):  # removed in numpy 1.24; legacy training code still uses it
        np.float = float
except ImportError:
    np = None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=EPOCHS)
    parser.add_argument("--hlb-module", default=HLB_MODULE,
                        help="the module whose hyp and main() train (default %(default)s)")
    args = parser.parse_args()
    hlb = importlib.import_module(args.hlb_module)
    hlb.hyp["misc"]["train_epochs"] = args.epochs
    started = time.perf_counter()
    try:
        accuracy = hlb.main()
    except Exception as error:
        if offline(error) is None:
            raise
        exit_offline(offline(error), args.hlb_module)
    elapsed = time.perf_counter() - started
    accuracy = "None" if accuracy is None else "%.4f" % float(accuracy)
    print(f"RESULT_HLB elapsed_seconds={elapsed:.2f} train_epochs={args.epochs:g} ema_val_acc={accuracy}", flush=True)


if __name__ == "__main__":
    main()
