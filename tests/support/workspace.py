"""Fixture workspaces: a CVlization-shaped checkout with stand-in modules, scripts and secrets."""

from __future__ import annotations

import uuid
from pathlib import Path

HLB_STANDIN = '''"""Stand-in for CVlization's hlb module: same interface, no training."""
hyp = {"misc": {"train_epochs": None}}


def main():
    print("hlb stand-in training for", hyp["misc"]["train_epochs"], "epochs", flush=True)
    return 0.9375
'''

DAWN_STANDIN = '''"""Stand-in for CVlization's dawn_utils: Network(net()) with .to() and .half()."""


class Network:
    def __init__(self, spec):
        self.spec = spec

    def to(self, device):
        self.device = device
        return self

    def half(self):
        self.precision = "half"
        return self


def net():
    return {"layers": 9}
'''

TRAINER_STANDIN = '''"""Stand-in for CVlization's DavidTrainer."""


class DavidTrainer:
    def __init__(self, model, epochs, train_batch_size, use_cached_cifar10, train_dataset, val_dataset):
        self.model, self.epochs, self.batch = model, epochs, train_batch_size

    def train(self):
        print("david stand-in", self.epochs, "epochs, batch", self.batch, self.model.precision, flush=True)
'''

HELLO = '''import hashlib, os, sys
print("argv", sys.argv[1:])
print("token-sha", hashlib.sha256(os.environ.get("MY_TOKEN", "").encode()).hexdigest()[:12])
print("cuda", os.environ.get("CUDA_VISIBLE_DEVICES"))
import numpy_alias_check  # noqa: F401  (workspace module on sys.path)
print("RESULT_HELLO answer=42 ratio=0.5")
sys.exit(int(os.environ.get("HELLO_EXIT", "0")))
'''


def make_workspace(root: Path, name: str = "CVlization") -> Path:
    ws = root / name
    files = {
        "cvlization/__init__.py": "",
        "cvlization/torch/__init__.py": "",
        "cvlization/torch/training_pipeline/__init__.py": "",
        "cvlization/torch/training_pipeline/image_classification/__init__.py": "",
        "cvlization/torch/training_pipeline/image_classification/hlb.py": HLB_STANDIN,
        "cvlization/torch/net/__init__.py": "",
        "cvlization/torch/net/image_classification/__init__.py": "",
        "cvlization/torch/net/image_classification/davidnet/__init__.py": "",
        "cvlization/torch/net/image_classification/davidnet/dawn_utils.py": DAWN_STANDIN,
        "cvlization/torch/trainer/__init__.py": "",
        "cvlization/torch/trainer/david_trainer.py": TRAINER_STANDIN,
        "scripts/hello.py": HELLO,
        "scripts/fail_import.py": "import not_a_real_module_xyz\n",
        "scripts/exit3.py": "import sys\nprint('RESULT_EXIT code=3')\nsys.exit(3)\n",
        "numpy_alias_check.py": "",
        "README.md": "fixture workspace\n",
        ".env": "MY_TOKEN=tok-s3cret-value\n",
        ".env.local": "OTHER=secret-too\n",
        ".env.example": "MY_TOKEN=\n",
        ".git/HEAD": "ref: refs/heads/main\n",
        "var/cache.txt": "local only\n",
        "pkg/__pycache__/x.pyc": "",
        "data/raw/big.bin": "x" * 100,
        "model.ckpt": "weights",
    }
    for rel, text in files.items():
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (ws / "hello_link.py").symlink_to("scripts/hello.py")
    return ws


def unique_remote_dir(tag: str = "rrt") -> str:
    return f"/tmp/{tag}_{uuid.uuid4().hex[:10]}"
