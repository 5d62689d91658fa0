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


def offline(error):
    """The URLError behind ``error`` (a data set download that found no network), or None."""
    import urllib.error

    while error is not None:
        if isinstance(error, urllib.error.URLError):
            return error
        error = error.__cause__ or error.__context__
    return None


def exit_offline(found, where):
    """One line instead of the download's traceback, naming what to do; exit 2 like the builtin trainers."""
    print(f"{where} cannot download its data set ({getattr(found, 'reason', found)}): is the host offline? "
          "Copy the files onto the host where it looks for them (torchvision's `Downloading URL to PATH` line "
          "above), or put cifar-10-python.tar.gz in the shared cache $REMOTE_RUN_DATA/cifar10 and train "
          "with --impl builtin, which reads it from there", file=sys.stderr, flush=True)
    sys.exit(2)


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
