"""Run the workspace's hlb CIFAR-10 trainer (CVlization's by default); print one RESULT_HLB line.

remote-run renders this file into REMOTE_DIR/scripts/run_hlb.py with the options below set;
by hand: `python scripts/run_hlb.py --epochs 11.5` from the workspace root.
"""

import argparse
import importlib
import sys
import time
from pathlib import Path

# --- options (remote-run renders these) ---
EPOCHS = 11.5
HLB_MODULE = "cvlization.torch.training_pipeline.image_classification.hlb"
# --- end options ---

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
    parser.add_argument("--module", default=HLB_MODULE)
    args = parser.parse_args()
    hlb = importlib.import_module(args.module)
    hlb.hyp["misc"]["train_epochs"] = args.epochs
    started = time.perf_counter()
    accuracy = hlb.main()
    elapsed = time.perf_counter() - started
    accuracy = "None" if accuracy is None else "%.4f" % float(accuracy)
    print(f"RESULT_HLB elapsed_seconds={elapsed:.2f} train_epochs={args.epochs:g} ema_val_acc={accuracy}", flush=True)


if __name__ == "__main__":
    main()
