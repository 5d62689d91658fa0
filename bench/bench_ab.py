"""How often the regression gate cries wolf, and how often it sees a real regression: simulated
comparisons through remote_run.compare, in process (no host).

Runs are drawn like the builtin hlb trainer's RESULT line: elapsed_seconds (1 % noise; --time-noise),
images_per_second (from it), ema_val_acc and val_acc (σ 0.0015 and 0.002), eval_seconds. The gate
decides on the task's own results (ema_val_acc, elapsed_seconds), Holm–Bonferroni, default
tolerances. Two paths:

  unpaired  compare(): a baseline side and a new side measured at another time (Welch). "drift":
            the machine changed in between, elapsed_seconds 0.5 σ or 3 σ slower on the new side.
  paired    compare_pairs(): A and B run side by side, pair after pair. "drift": the machine wanders
            (a random walk of 0.5 σ per pair in elapsed_seconds) and both runs of a pair share it.

A/A: both sides the same code; a gate failure is a false alarm. Planted: B 3 % slower, or B's
ema_val_acc down by one σ; a gate failure is a detection. Each cell is the share of ``--compares``
comparisons (default 2,000) that failed the gate, with its 95 % binomial margin.

    python3 bench/bench_ab.py [--compares 2000] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remote_run import compare  # noqa: E402

ELAPSED, ELAPSED_SD = 10.0, 0.1  # 1 % run-to-run noise of a training run's time on one GPU (--time-noise)
ACC_SD, VAL_SD = 0.0015, 0.002
IMAGES = 50_000 * 10


def run(rng: random.Random, *, slower: float = 0.0, acc_drop: float = 0.0, drift: float = 0.0) -> dict:
    """One run's metrics; ``drift`` in σ of elapsed_seconds."""
    elapsed = (ELAPSED + drift * ELAPSED_SD + rng.gauss(0, ELAPSED_SD)) * (1 + slower)
    return {"elapsed_seconds": elapsed, "images_per_second": IMAGES / elapsed,
            "ema_val_acc": rng.gauss(0.94, ACC_SD) - acc_drop * ACC_SD, "val_acc": rng.gauss(0.935, VAL_SD),
            "eval_seconds": rng.gauss(1.0, 0.03), "train_epochs": 10.0}


def unpaired(rng: random.Random, n: int, *, drift: float, **planted) -> bool:
    """Whether the gate fails a compare of n baseline runs with n new runs."""
    def side(name, metrics):
        return compare.Side(name, "group", name, [{"id": f"{name}{i}", "task": "train-hlb", "metrics": m}
                                                  for i, m in enumerate(metrics)])

    a = side("A", [run(rng) for _ in range(n)])
    b = side("B", [run(rng, drift=drift, **planted) for _ in range(n)])
    return any(r.regression for r in compare.compare(a, b))


def paired(rng: random.Random, n: int, *, drift: float, **planted) -> bool:
    """Whether the gate fails n pairs run side by side while the machine wanders by ``drift`` σ a pair."""
    state, pairs = 0.0, []
    for _ in range(n):
        state += rng.gauss(0, drift) if drift else 0.0
        pairs.append((run(rng, drift=state), run(rng, drift=state, **planted)))
    return any(r.regression for r in compare.compare_pairs(pairs, task="train-hlb"))


def margin(hits: int, total: int) -> tuple[float, float]:
    """The share hits / total and its 95 % binomial margin (normal approximation)."""
    share = hits / total
    return share, 1.96 * math.sqrt(max(share * (1 - share), 1e-9) / total)


def rate(check, compares: int, seed: int, n: int, **kwargs) -> tuple[float, float]:
    rng = random.Random(seed)
    return margin(sum(check(rng, n, **kwargs) for _ in range(compares)), compares)


CASES = [  # (label, path, keyword arguments)
    ("A/A, no drift", unpaired, {"drift": 0.0}),
    ("A/A, 0.5 σ drift", unpaired, {"drift": 0.5}),
    ("A/A, 3 σ drift", unpaired, {"drift": 3.0}),
    ("3 % slower", unpaired, {"drift": 0.0, "slower": 0.03}),
    ("accuracy −1 σ", unpaired, {"drift": 0.0, "acc_drop": 1.0}),
    ("A/A, no drift", paired, {"drift": 0.0}),
    ("A/A, drifting 0.5 σ a pair", paired, {"drift": 0.5}),
    ("A/A, drifting 3 σ a pair", paired, {"drift": 3.0}),
    ("3 % slower, drifting", paired, {"drift": 0.5, "slower": 0.03}),
    ("accuracy −1 σ, drifting", paired, {"drift": 0.5, "acc_drop": 1.0}),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The gate's false alarms and power, simulated in process.")
    parser.add_argument("--compares", type=int, default=2000, help="comparisons per cell (default 2000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 3, 5, 10], help="runs (or pairs) a side")
    parser.add_argument("--time-noise", type=float, default=1.0, help="run-to-run noise of the time, %% (default 1)")
    args = parser.parse_args(argv)
    global ELAPSED_SD
    ELAPSED_SD = ELAPSED * args.time_noise / 100
    started = time.perf_counter()
    print(f"gate failures in {args.compares} simulated compares each (share ± 95 % margin); "
          f"A/A: false alarms, planted: detections; time noise {args.time_noise:g} %, accuracy σ {ACC_SD}")
    print(f"{'path':9} {'case':28}" + "".join(f"{'n=' + str(n):>15}" for n in args.n))
    for label, check, kwargs in CASES:
        cells = []
        for n in args.n:
            if check is paired and n == 1:
                cells.append(f"{'—':>15}")
                continue
            share, margin = rate(check, args.compares, args.seed, n, **kwargs)
            cells.append(f"{100 * share:>8.1f} ±{100 * margin:4.1f}%")
        print(f"{check.__name__:9} {label:28}" + "".join(cells))
    print(f"\n(took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
