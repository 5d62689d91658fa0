"""Run the workspace's DavidNet trainer (CVlization's by default); print one RESULT_DAVID line.

remote-run writes this file unchanged into the run's copy of the workspace as
scripts/run_david_trainer.py and passes the options as flags; by hand, from the workspace root:
`python scripts/run_david_trainer.py --epochs 12 --batch-size 512`.
"""

import argparse
import importlib
import sys
import time
from pathlib import Path

from remote_run_offline import exit_offline, offline  # beside this file

# Defaults; remote-run passes its DAVID_NET_MODULE and DAVID_TRAINER_MODULE settings as flags.
EPOCHS = 12
BATCH_SIZE = 512
DAVID_NET_MODULE = "cvlization.torch.net.image_classification.davidnet.dawn_utils"
DAVID_TRAINER_MODULE = "cvlization.torch.trainer.david_trainer"

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the workspace root
try:
    import numpy as np

    if not hasattr(np, "float"):  # removed in numpy 1.24; legacy training code still uses it
        np.float = float
except ImportError:
    np = None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--david-net-module", default=DAVID_NET_MODULE,
                        help="the module with net() and Network (default %(default)s)")
    parser.add_argument("--david-trainer-module", default=DAVID_TRAINER_MODULE,
                        help="the module with DavidTrainer (default %(default)s)")
    args = parser.parse_args()
    nets = importlib.import_module(args.david_net_module)
    trainers = importlib.import_module(args.david_trainer_module)
    try:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        device = "cpu"
    model = nets.Network(nets.net()).to(device).half()
    trainer = trainers.DavidTrainer(
        model=model,
        epochs=args.epochs,
        train_batch_size=args.batch_size,
        use_cached_cifar10=True,
        train_dataset=None,
        val_dataset=None,
    )
    started = time.perf_counter()
    try:
        trainer.train()
    except Exception as error:
        if offline(error) is None:
            raise
        exit_offline(offline(error), args.david_trainer_module)
    elapsed = time.perf_counter() - started
    print(f"RESULT_DAVID elapsed_seconds={elapsed:.2f} epochs={args.epochs} batch_size={args.batch_size}", flush=True)


if __name__ == "__main__":
    main()
