"""How often the regression gate cries wolf, and how often it sees a real regression: simulated
comparisons through remote_run.compare, in process (no host); or, with --cli, real A/B runs
through the CLI against the test suite's loopback sshd.

In process (the default). Runs are drawn like the builtin hlb trainer's RESULT line: elapsed_seconds
(1 % noise; --time-noise), images_per_second (from it), ema_val_acc and val_acc (σ 0.0015 and 0.002),
eval_seconds. The gate decides on the task's own results (ema_val_acc, elapsed_seconds),
Holm–Bonferroni, default tolerances. Two paths:

  unpaired  compare(): a baseline side and a new side measured at another time (Welch). "drift":
            the machine changed in between, elapsed_seconds 0.5 σ or 3 σ slower on the new side.
  paired    compare_pairs(): A and B run side by side, pair after pair. "drift": the machine wanders
            (a random walk of 0.5 σ per pair in elapsed_seconds) and both runs of a pair share it.

A/A: both sides the same code; a gate failure is a false alarm. Planted: B 3 % slower, or B's
ema_val_acc down by one σ; a gate failure is a detection. Each cell is the share of ``--compares``
comparisons (default 2,000) that failed the gate, with its 95 % binomial margin.

    python3 bench/bench_ab.py [--compares 2000] [--seed 1]

Through the CLI (--cli): what the simulation leaves out, the whole path a user runs, from the
working tree to the exit status. It starts the test suite's loopback sshd (tests/support/sshd.py,
alias l1; as root, remote commands run as its dedicated user), makes a temporary git workspace
whose committed ``scripts/noisy.py`` prints ``RESULT_NOISE seconds=...``, a number drawn around
1.0 with --time-noise (1 %) of noise (it does no work and does not sleep), and runs, rounds
alternating until --minutes is used up (a round that would overrun it is not started):

  A/A      the working tree equals HEAD:
           ``inv run scripts/noisy.py --against HEAD --repeat 5 --cpu-ok --fail-on-regression``
           (REMOTE_PYTHON=/usr/bin/python3, TORCH_PACKAGES empty: no venv); exit 4 is a false alarm
  planted  the same, the working tree's script (uncommitted) drawing --planted (3 %) larger;
           exit 4 is a detection

Any other exit (or a timeout) is an error: counted per case and shown with its output's last lines,
never a pass or a failure (the bench then exits 1). After each A/B one single
``inv run scripts/noisy.py --cpu-ok`` is timed on the same tree. Printed:

  the table   per case: rounds, errors, gate failures, their share of the rounds that exited 0 or 4
              with the in-process part's 95 % margin (normal approximation: with a few rounds it is
              wide, and at 0 or all failures it reads ± 0, so the rule-of-three bound is printed
              too), the same case simulated in process (2,000 compares) for reference, the median
              B - A of seconds from each A/B's comparison.json (did the planted change reach B?),
              and the median wall of one A/B as a whole ``inv`` process (the first one left out)
  the cost    the median wall of one A/B of N pairs (REF already on the host) against 2N times the
              median single run; the first A/B of the revision (the one that synced REF: its
              ``A = REF (...) ..., N sent (X s)`` line) against the later ones, one sample; and
              what these include (interpreter start, sync check, one changed file's sync per A/B,
              ssh over loopback with a ControlMaster, records, the compare) and leave out (a real
              run's own work, a venv, a real network, GPU waits)

    .venv/bin/python bench/bench_ab.py --cli [--minutes 4] [--pairs 5] [--time-noise 1] [--planted 3]

Progress (one line per round) goes to stderr, the report to stdout. The sshd needs
openssh-server and rsync, like the integration tests. There is no fast test of --cli (it is a
benchmark); tests/fast/test_gate_simulated.py covers the in-process cases.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:
    from remote_run import compare  # noqa: E402
except ImportError as exc:  # a python3 without the project's packages: --help still answers, the rest says why not
    compare, MISSING = None, exc
else:
    MISSING = None

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


# ------------------------------------------------------------------------------- through the CLI (--cli)

NOISY = '''"""Draws a time-like result around SCALE with {noise:g} % noise: no work, no sleep (bench_ab --cli)."""
import random

SCALE = {scale!r}
print("RESULT_NOISE seconds=%.6f" % (SCALE * random.gauss(1.0, {sd!r})))
'''
AB_OK, AB_FAIL = 0, 4  # --fail-on-regression: no regression, a regression; any other exit is an error
CLI_TIMEOUT = 300
SYNC_LINE = re.compile(r"A = \S+ \([0-9a-f]+\).*?, (\d+) sent \(([\d.]+) s\)")
RECORD = re.compile(r"record (\S+)/comparison\.md")


@dataclass(eq=False)  # one round is itself only: `in` looks for this very round
class Round:
    """One A/B through the CLI."""

    case: str  # "A/A" or "planted"
    rc: int | None  # its exit status; None: it timed out
    wall: float
    sent: int | None = None  # files the REF sync sent (the CLI's "A = REF (...) ..., N sent (X s)" line)
    sync_s: float | None = None  # that sync's own seconds, as the line says
    pairs: int | None = None  # pairs in its comparison (comparison.json)
    relative: float | None = None  # its B - A of seconds, a share of A's mean
    tail: str = ""

    @property
    def error(self) -> bool:
        return self.rc not in (AB_OK, AB_FAIL)


def call(argv: list[str], ws: Path, env: dict) -> tuple[int | None, float, str, str]:
    """One whole CLI process: (exit status, None when it timed out; wall seconds; stdout; stderr)."""
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=ws, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=CLI_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out, err = (x.decode(errors="replace") if isinstance(x, bytes) else x or "" for x in (exc.stdout, exc.stderr))
        return None, time.perf_counter() - started, out, err + f"\n(timed out after {CLI_TIMEOUT} s)"
    return done.returncode, time.perf_counter() - started, done.stdout, done.stderr


def a_b(case: str, inv: list[str], ws: Path, env: dict, pairs: int) -> Round:
    """One `inv run scripts/noisy.py --against HEAD --repeat N --cpu-ok --fail-on-regression`."""
    rc, wall, out, err = call([*inv, "run", "scripts/noisy.py", "--against", "HEAD", "--repeat", str(pairs),
                               "--cpu-ok", "--fail-on-regression"], ws, env)
    found = Round(case, rc, wall, tail="\n".join((out + err).strip().splitlines()[-6:]))
    sync = SYNC_LINE.search(err)
    if sync:
        found.sent, found.sync_s = int(sync.group(1)), float(sync.group(2))
    record = RECORD.search(err)
    if record:
        try:
            result = json.loads((Path(record.group(1)) / "comparison.json").read_text())
            found.pairs = len(result["pairs"])
            found.relative = next(r["relative"] for r in result["rows"] if r["metric"] == "seconds")
        except (OSError, ValueError, KeyError, StopIteration):
            pass
    return found


def git(ws: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    subprocess.run(["git", *args], cwd=ws, env=env, check=True, capture_output=True)


def simulated(pairs: int, noise: float, slower: float, compares: int = 2000, seed: int = 1) -> tuple[float, float]:
    """The same case in process, for reference: N pairs of the one metric `seconds` (σ ``noise``, B
    ``slower`` larger), task `run`, through compare_pairs; (share failing the gate, its margin)."""
    rng = random.Random(seed)

    def fails() -> bool:
        drawn = [({"seconds": rng.gauss(1.0, noise)}, {"seconds": (1 + slower) * rng.gauss(1.0, noise)})
                 for _ in range(pairs)]
        return any(r.regression for r in compare.compare_pairs(drawn, task="run"))

    return margin(sum(fails() for _ in range(compares)), compares)


def cli_bench(minutes: float, pairs: int, noise_pct: float, planted_pct: float) -> int:
    """The through-the-CLI rounds (see the module docstring); prints the table and the cost lines."""
    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here), str(here.parent / "tests")]
    from bench_cli import REPO, compile_in_place
    from support.cli import HOST_PYTHON
    from support.sshd import SshServer

    began = time.monotonic()
    deadline = began + 60 * minutes
    machine = {"cpus": os.cpu_count(), "load": os.getloadavg()[0], "python": platform.python_version(),
               "date": time.strftime("%Y-%m-%d %H:%M %Z")}
    texts = {"A/A": NOISY.format(noise=noise_pct, scale=1.0, sd=noise_pct / 100),
             "planted": NOISY.format(noise=noise_pct, scale=round(1 + planted_pct / 100, 6), sd=noise_pct / 100)}
    rounds: list[Round] = []
    singles: list[float] = []
    single_errors: list[str] = []
    tag = f"/tmp/rrbench_ab_{uuid.uuid4().hex[:10]}"
    compile_in_place(REPO)  # byte code as an installed tool has it, as bench_cli does
    with tempfile.TemporaryDirectory(prefix="rr-bench-ab-") as tmp:
        ws = Path(tmp) / "ws"
        (ws / "scripts").mkdir(parents=True)
        (ws / "scripts" / "noisy.py").write_text(texts["A/A"])
        (ws / ".gitignore").write_text("var/\n")
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "noisy"]):
            git(ws, *args)
        inv = [sys.executable, "-m", "invoke", "--search-root", str(REPO)]
        single = [*inv, "run", "scripts/noisy.py", "--cpu-ok"]
        with SshServer(Path(tmp) / "sshd") as server:
            env = server.env(REMOTE_HOST="l1", REMOTE_DIR=f"{tag}_ws", REMOTE_PYTHON=HOST_PYTHON, TORCH_PACKAGES="")
            try:
                rc, _, out, err = call(single, ws, env)  # untimed: the first sync, the host's first look
                if rc != 0:
                    print(f"bench_ab --cli: the first single run failed (exit {rc}):\n{(out + err)[-3000:]}",
                          file=sys.stderr)
                    return 1
                while True:
                    case = ("A/A", "planted")[len(rounds) % 2]
                    if len(rounds) >= 2:  # a round of each at least; then none that would overrun --minutes
                        walls = [r.wall for r in rounds[1:] if not r.error] or [r.wall for r in rounds[1:]]
                        ahead = statistics.median(walls) + statistics.median(singles or [0])
                        if time.monotonic() + ahead > deadline:
                            break
                    (ws / "scripts" / "noisy.py").write_text(texts[case])  # A/A: the committed text again
                    rounds.append(a_b(case, inv, ws, env, pairs))
                    r = rounds[-1]
                    print(f"  round {len(rounds):3d}  {case:8} exit {r.rc}  {r.wall:5.1f} s", file=sys.stderr,
                          flush=True)
                    rc, wall, out, err = call(single, ws, env)  # the same tree: nothing changed since the A/B
                    if rc == 0 and "RESULT_NOISE" in out + err:
                        singles.append(wall)
                    else:
                        single_errors.append(f"exit {rc}: " + " | ".join((out + err).strip().splitlines()[-3:]))
            finally:
                server.cleanup_remote(tag)
    machine["took_s"] = time.monotonic() - began
    machine["load_end"] = os.getloadavg()[0]
    print(cli_report(rounds, singles, single_errors, machine, pairs, noise_pct, planted_pct))
    errors = sum(r.error for r in rounds) + len(single_errors)
    if errors:
        print(f"bench_ab --cli: {errors} error(s), shown above", file=sys.stderr)
    return 1 if errors else 0


def cli_report(rounds: list[Round], singles: list[float], single_errors: list[str], machine: dict, pairs: int,
               noise_pct: float, planted_pct: float) -> str:
    """The table, the errors, the cost lines and what they leave out."""
    def pct(x: float) -> str:
        return f"{100 * x:+.2f} %"

    lines = [
        f"bench_ab --cli, {machine['date']}: {machine['cpus']} CPUs (load {machine['load']:.2f} at start, "
        f"{machine['load_end']:.2f} at end), Python {machine['python']}, loopback sshd; took {machine['took_s']:.0f} s",
        f"each round: `inv run scripts/noisy.py --against HEAD --repeat {pairs} --cpu-ok --fail-on-regression`; "
        f"seconds drawn with {noise_pct:g} % noise;",
        f"A/A: the working tree equals HEAD (exit 4 = a false alarm); planted: the working tree's script draws "
        f"{planted_pct:g} % larger, uncommitted (exit 4 = detected)",
        "",
        f"{'case':10}{'rounds':>7}{'errors':>7}{'gate failures':>14}{'share ± 95 % margin':>22}"
        f"{'simulated (2000)':>20}{'median B-A':>12}{'median wall per A/B':>21}",
    ]
    firsts = [r for r in rounds if r.sent]  # the A/B that synced REF to the host: its wall is in the cost lines
    for case, slower in (("A/A", 0.0), ("planted", planted_pct / 100)):
        mine = [r for r in rounds if r.case == case]
        done = [r for r in mine if not r.error]
        fails = sum(r.rc == AB_FAIL for r in done)
        share = "—"
        if done:
            s, m = margin(fails, len(done))
            share = f"{100 * s:.1f} ± {100 * m:.1f} %"
        sim, sim_margin = simulated(pairs, noise_pct / 100, slower)
        diffs = [r.relative for r in done if r.relative is not None]
        walls = [r.wall for r in done if r not in firsts]
        lines.append(f"{case:10}{len(mine):>7}{len(mine) - len(done):>7}{fails:>14}{share:>22}"
                     f"{f'{100 * sim:.1f} ± {100 * sim_margin:.1f} %':>20}"
                     f"{pct(statistics.median(diffs)) if diffs else '—':>12}"
                     f"{f'{statistics.median(walls):.2f} s' if walls else '—':>21}")
    lines += [
        "",
        "share = gate failures / rounds that exited 0 or 4 (errors are left out of it and counted apart), with the",
        "normal-approximation margin of the in-process part: with few rounds it is wide, and at 0 or all failures it",
        "reads ± 0 though it is not; then the rule of three bounds the other side: under 3 / rounds at 95 %.",
    ]
    for case in ("A/A", "planted"):
        done = [r for r in rounds if r.case == case and not r.error]
        fails, bound = sum(r.rc == AB_FAIL for r in done), 100 * min(1.0, 3 / len(done)) if done else 0
        if done and fails == 0:
            lines.append(f"  {case}: 0 of {len(done)} failed the gate: its true share is under {bound:.0f} % "
                         "(rule of three, 95 %)")
        elif done and fails == len(done):
            lines.append(f"  {case}: {fails} of {len(done)} failed the gate: its true share is over {100 - bound:.0f} %"
                         " (rule of three, 95 %)")
    lines += ["simulated = the same case in process (compare_pairs, one metric `seconds`, 2000 compares, seed 1);",
              "median B-A = of seconds, from each A/B's comparison.json; median wall per A/B = whole `inv` processes,",
              "the first A/B (it synced REF to the host) left out: it is in the cost lines"]
    odd = [r for r in rounds if not r.error and r.pairs != pairs]
    if odd:
        lines.append(f"{len(odd)} round(s) compared fewer than {pairs} pairs (a run without a RESULT): "
                     + ", ".join(f"{r.case} {r.pairs}" for r in odd))
    errors = [r for r in rounds if r.error]
    if errors:
        lines += ["", f"ERRORS: {len(errors)} round(s) exited neither 0 nor 4 (not counted as passes or failures):"]
        for r in errors[:3]:
            lines.append(f"  {r.case}, exit {'timeout' if r.rc is None else r.rc} after {r.wall:.1f} s:")
            lines += [f"    {line}" for line in r.tail.splitlines()]
        if len(errors) > 3:
            lines.append(f"  ... and {len(errors) - 3} more")
    if single_errors:
        lines += ["", f"ERRORS: {len(single_errors)} single run(s) failed (left out of the cost lines):",
                  *[f"  {e}" for e in single_errors[:3]]]
    lines += ["", *cost_lines(rounds, firsts, singles, pairs)]
    return "\n".join(lines)


def cost_lines(rounds: list[Round], firsts: list[Round], singles: list[float], pairs: int) -> list[str]:
    """What an A/B costs against 2N single runs, and what the first A/B of a revision adds (REF's sync)."""
    later = [r.wall for r in rounds if r not in firsts and not r.error]
    out = ["cost, whole `inv` processes timed the same way in this session (median, min-max, count):"]
    if not (later and singles):
        return [*out, "  not enough rounds or single runs finished to compare"]
    ab, one = statistics.median(later), statistics.median(singles)
    out += [
        f"  one A/B of {pairs} pairs, REF already on the host: {ab:.2f} s ({min(later):.2f}-{max(later):.2f}, "
        f"{len(later)})",
        f"  one single run `inv run scripts/noisy.py --cpu-ok`: {one:.2f} s ({min(singles):.2f}-{max(singles):.2f}, "
        f"{len(singles)}); {2 * pairs} of them: {2 * pairs * one:.2f} s",
        f"  the A/B against {2 * pairs} single runs: {ab / (2 * pairs * one):.2f}x, {ab - 2 * pairs * one:+.2f} s",
    ]
    for r in firsts:
        out += [f"  the first A/B of this revision (REF synced: {r.sent} file(s) sent, the CLI's line says "
                f"{r.sync_s:.1f} s): {r.wall:.2f} s, {r.wall - ab:+.2f} s against the later median (one sample)",
                f"  {2 * pairs} single runs plus that REF sync: {2 * pairs * one + r.sync_s:.2f} s, against which the "
                f"first A/B is {r.wall / (2 * pairs * one + r.sync_s):.2f}x"]
    syncs = [r for r in rounds if r not in firsts and r.sync_s is not None]
    if syncs:
        sent = sorted({r.sent for r in syncs})
        out.append(f"  the later A/Bs' REF sync, as their line says: {', '.join(map(str, sent))} file(s) sent, "
                   f"median {statistics.median(r.sync_s for r in syncs):.1f} s")
    out += [
        "  includes: interpreter start, the sync check and (the tree alternating) one changed file's sync per A/B,",
        "  ssh over loopback with a ControlMaster, the host's start of each run of a script that only draws a",
        "  number, the records, the fetch and the compare. The single runs find the tree synced already (each",
        "  follows an A/B). Leaves out: a real run's own work (the same 2N runs either way), a venv",
        "  (TORCH_PACKAGES empty, the host's /usr/bin/python3), a real network's round trips, GPU waits.",
    ]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="The gate's false alarms and power: simulated in process (default), or through the CLI (--cli).")
    parser.add_argument("--compares", type=int, default=2000, help="comparisons per cell (default 2000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 3, 5, 10], help="runs (or pairs) a side")
    parser.add_argument("--time-noise", type=float, default=1.0, help="run-to-run noise of the time, %% (default 1)")
    cli = parser.add_argument_group("through the CLI", "A/B rounds of `inv run --against HEAD` over the loopback "
                                    "sshd (--compares, --seed and --n are the in-process part's)")
    cli.add_argument("--cli", action="store_true", help="run the through-the-CLI rounds instead of the simulation")
    cli.add_argument("--minutes", type=float, default=4.0, help="how long to go on with rounds (default 4)")
    cli.add_argument("--pairs", type=int, default=5, help="--repeat of each A/B (default 5)")
    cli.add_argument("--planted", type=float, default=3.0,
                     help="how much larger the planted rounds' working tree draws the time, %% (default 3)")
    args = parser.parse_args(argv)
    if MISSING is not None:
        parser.exit(2, f"bench_ab: {MISSING}: run it with the project's environment, .venv/bin/python "
                       "bench/bench_ab.py or ./dev python bench/bench_ab.py\n")
    if args.cli:
        if args.minutes <= 0 or args.pairs < 2 or args.time_noise <= 0:
            parser.error("--cli needs --minutes > 0, --pairs >= 2 and --time-noise > 0")
        return cli_bench(args.minutes, args.pairs, args.time_noise, args.planted)
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
