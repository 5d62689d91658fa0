"""The gate's false alarms and power on simulated runs (bench/bench_ab.py's cases), with fixed
seeds and few compares, so they cannot flake: A/A stays under 5 % false alarms on both paths, a
drifting machine does not fool the paired path, and a planted 3 % slowdown is seen."""

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_ab  # noqa: E402


def failures(check, n, compares=200, seed=5, **kwargs):
    rng = random.Random(seed)
    return sum(check(rng, n, **kwargs) for _ in range(compares)) / compares


def test_a_a_compares_rarely_fail_the_gate_on_either_path():
    assert failures(bench_ab.unpaired, 5, drift=0.0) <= 0.05
    assert failures(bench_ab.paired, 5, drift=0.0) <= 0.05
    assert failures(bench_ab.unpaired, 1, drift=0.0) == 0.0  # one run a side never fails it


def test_a_drift_beyond_the_tolerance_fools_the_unpaired_compare_but_not_the_paired_one():
    # 3 σ of the time is 3 %, beyond the default tolerance of 2 %: the baseline was another machine
    assert failures(bench_ab.unpaired, 10, drift=3.0) > 0.5
    assert failures(bench_ab.paired, 10, drift=3.0) <= 0.05  # both sides of a pair share the drift


def test_a_planted_slowdown_is_seen_by_interleaved_pairs():
    assert failures(bench_ab.paired, 5, drift=0.5, slower=0.03) >= 0.7  # 82 % over 2,000 in the bench
    assert failures(bench_ab.paired, 10, drift=0.5, slower=0.03) >= 0.9
