"""Benchmark the two CIFAR-10 trainers in runners/ and print one table.

    python bench/bench_trainers.py                      # CPU: small synthetic subset, ~1-2 min
    python bench/bench_trainers.py --compile both       # GPU: default epochs, hlb with and without torch.compile
    python bench/bench_trainers.py --real --data-dir data/cifar10 --only hlb

Each trainer runs in its own process; the numbers come from its final RESULT_* line. "train s"
is the trainer's own elapsed_seconds: training steps and on-device augmentation only, after an
untimed warm-up (no data loading, model set-up, warm-up, torch.compile or evaluation); "eval s"
is its eval_seconds, the final evaluation alone (hlb: with 6-view test-time augmentation).
Synthetic data by default: throughput is the same, accuracy is meaningless.
"""
import argparse
import ast
import re
import subprocess
import sys
import time
from pathlib import Path

RUNNERS = Path(__file__).resolve().parent.parent / "runners"
TRAINERS = {"hlb": ("hlb_cifar.py", "RESULT_HLB", "train_epochs", "ema_val_acc"),
            "david": ("david_cifar.py", "RESULT_DAVID", "epochs", "val_acc")}


def gpu_available():
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=sorted(TRAINERS), help="run one trainer (default: both)")
    p.add_argument("--hlb-epochs", type=float, help="default: 1 on a CPU, the trainer's default on a GPU")
    p.add_argument("--david-epochs", type=int, help="default: 1 on a CPU, the trainer's default on a GPU")
    p.add_argument("--subset", type=int, help="training images (default: 2048 on a CPU, all on a GPU)")
    p.add_argument("--hlb-batch-size", type=int)
    p.add_argument("--david-batch-size", type=int)
    p.add_argument("--compile", choices=["off", "on", "both"], default="off", help="torch.compile for hlb")
    p.add_argument("--real", action="store_true", help="real CIFAR-10 instead of --synthetic")
    p.add_argument("--data-dir", help="passed to the trainers with --real")
    p.add_argument("--quiet", action="store_true", help="do not echo the trainers' output")
    args = p.parse_args(argv)
    if not gpu_available():
        args.hlb_epochs = 1.0 if args.hlb_epochs is None else args.hlb_epochs
        args.david_epochs = 1 if args.david_epochs is None else args.david_epochs
        args.subset = 2048 if args.subset is None else args.subset
    return args


def commands(args):
    data = (["--data-dir", args.data_dir] if args.data_dir else []) if args.real else ["--synthetic"]
    subset = ["--subset", str(args.subset)] if args.subset else []
    for name in [args.only] if args.only else list(TRAINERS):
        epochs, batch = getattr(args, f"{name}_epochs"), getattr(args, f"{name}_batch_size")
        cmd = [sys.executable, str(RUNNERS / TRAINERS[name][0]), *data, *subset]
        cmd += ["--epochs", str(epochs)] if epochs is not None else []
        cmd += ["--batch-size", str(batch)] if batch is not None else []
        if name == "hlb":
            modes = {"off": ["--no-compile"], "on": ["--compile"], "both": ["--no-compile", "--compile"]}
            for mode in modes[args.compile]:
                yield name + (" compiled" if mode == "--compile" else ""), cmd + [mode]
        else:
            yield name, cmd


def run_one(label, cmd, quiet):
    print(f"== {label}: {' '.join(cmd)}", flush=True)
    start, lines = time.perf_counter(), []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if not quiet:
                print("   " + lines[-1], flush=True)
    print(f"== {label}: exit {proc.returncode}, {time.perf_counter() - start:.1f}s wall", flush=True)
    return proc.returncode, lines


def default_option(script, name):
    """A trainer's default, read from the constants at its top (NAME = <literal> lines)."""
    text = (RUNNERS / script).read_text()
    return ast.literal_eval(re.search(rf"^{name} = (.+)$", text, re.M).group(1))


def images_trained(name, epochs, args):
    """Steps x batch size, by the trainers' own rule: full batches only, ceil(epochs x steps/epoch)."""
    n = args.subset or 50000
    batch = min(n, getattr(args, f"{name}_batch_size") or default_option(TRAINERS[name][0], "BATCH_SIZE"))
    return round(epochs * max(1, n // batch)) * batch


def result_row(label, args, lines):
    name = label.split()[0]
    tag, epochs_key, acc_key = TRAINERS[name][1:]
    found = [line for line in lines if line.startswith(tag + " ")]
    if not found:
        return None
    r = dict(item.split("=", 1) for item in found[-1].split()[1:])
    seconds, ips, epochs = float(r["elapsed_seconds"]), float(r["images_per_second"]), float(r[epochs_key])
    evals = f"{float(r['eval_seconds']):.2f}" if "eval_seconds" in r else "-"
    return [label, r["device"], f"{epochs:g}", str(images_trained(name, epochs, args)), f"{seconds:.2f}",
            f"{seconds / epochs:.2f}", f"{ips:.1f}", evals, r[acc_key]]


def main(argv=None):
    args = parse_args(argv)
    header = ["trainer", "device", "epochs", "images", "train s", "s/epoch", "images/s", "eval s", "val acc"]
    rows, failed = [], []
    for label, cmd in commands(args):
        code, lines = run_one(label, cmd, args.quiet)
        row = result_row(label, args, lines) if code == 0 else None
        if row is None:
            failed.append(label)
            print(f"{label} failed (exit {code}):\n" + "\n".join(lines[-5:]), file=sys.stderr)
        else:
            rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print()
    for r in [header, *rows]:
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    if not args.real:
        print("(synthetic data: the accuracy column means nothing)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
