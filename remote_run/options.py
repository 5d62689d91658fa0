"""The flags every run task shares (train-hlb, train-david, run, rerun), declared once.

RunOptions holds them as the command line gave them; check() validates them all before anything
runs and returns them parsed (numbers, seconds, workspace paths, port forwards). What reaches the
sync, the host and the record is that object. RunTask (remote_run.chain) adds these fields to each
run task's own flags, with their help, so a task declares only what is its own.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from .errors import Failure

CLUSTERS = ("gpu", "tpu")  # --sky: the clusters of .cluster_name_gpu and .cluster_name_tpu
MAX_REPEAT = 100
DEFAULT_PAIRS = 5  # --against without --repeat

GATE_HELP = {  # also the flags of `inv compare`
    "tolerance": "NAME=AMOUNT or NAME=PERCENT%: how much worse a metric may get before it counts "
                 "(repeatable; default 2% for times and rates, 0.001 for accuracies, 0 otherwise)",
    "higher_is_better": "a metric for which higher is better, whatever its name suggests (repeatable)",
    "lower_is_better": "a metric for which lower is better (repeatable)",
}


# Short flags. A flag's short form is the same in every task that has the flag (`-a` is
# --allow-busy on gpu-check, run, train-hlb...), so it cannot come from the order of a task's flags
# as in plain Invoke. The rule (remote_run.chain.Flags applies it to every task):
# - a name in SHORT_FLAGS gets that letter, or no short form for "";
# - a RunOptions field not in SHORT_FLAGS gets none: a new shared flag is long-only until it is
#   given a letter here (a free one: no two names share a letter);
# - any other flag (a task's own) gets the first letter of its name that is free: not in
#   SHORT_FLAGS, not -h (help), not taken by the task's earlier flags.
# tests/fast/test_short_flags.py walks every task: one name has one short form everywhere.
SHORT_FLAGS = {
    # shared by the run tasks (and the chain's steps, where they have them)
    "allow_busy": "a", "cpu_ok": "c", "detach": "d", "wait": "w", "gpus": "g", "sky": "k", "port": "p", "only": "o",
    # taken by several tasks of their own
    "run": "r", "target": "t", "module": "m", "follow": "f", "yes": "y", "dry_run": "n", "epochs": "e", "seed": "s",
    "impl": "i", "batch_size": "b",
    # long only: their letters mean something else above (`logs -f` follows, as tail -f does)
    "args": "", "name": "", "ref": "", "force": "",
}
NOT_SHORT = "h"  # `inv TASK -h` is help


def short_flag(name: str, taken: set) -> str | None:
    """The short form of flag ``name`` (underscored) by the rule above; ``taken``: the names and
    letters of the task's flags so far."""
    if name in SHORT_FLAGS:
        return SHORT_FLAGS[name] or None
    if name in {f.name for f in dataclasses.fields(RunOptions)}:
        return None
    reserved = set(SHORT_FLAGS.values()) | set(NOT_SHORT)
    return next((char for char in name if char.isalnum() and char not in reserved and char not in taken), None)


def _flag(default, help: str, *, iterable: bool = False):
    return field(default=default, metadata={"help": help, "iterable": iterable})


@dataclass(frozen=True)
class RunOptions:
    allow_busy: bool = _flag(False, "run even if another process is using the GPU")
    cpu_ok: bool = _flag(False, "run without a GPU (e.g. `local` on a laptop)")
    detach: bool = _flag(False, "start the run and return at once; follow it later with `inv logs --follow`")
    wait: bool = _flag(False, "when the GPUs are busy, wait for them in the host's queue (shared by every user) "
                              "instead of refusing")
    wait_timeout: object = _flag("", "with --wait: give up after this long (seconds, or 30m, 2h)")
    gpus: object = _flag("", "use N idle GPUs the host picks (least memory used), as CUDA_VISIBLE_DEVICES=auto")
    sky: str = _flag("", "run on the SkyPilot cluster of .cluster_name_gpu (gpu) or .cluster_name_tpu (tpu) "
                         "instead of REMOTE_HOST")
    repeat: object = _flag("", "run N times one after another (builtin trainers: seeds seed, seed+1, ...) "
                               "as a group with a summary (default 1; with --against, N pairs, default 5)")
    compare_to: str = _flag("", "then compare with this baseline (`inv baseline.save`) and exit 4 on a regression")
    against: str = _flag("", "A/B: run git revision REF (A: its committed tree and the untracked files a sync sends) "
                             "and the working tree (B) in pairs, interleaved on the same GPU, then compare them "
                             "pair by pair")
    committed_only: bool = _flag(False, "with --against: A gets REF's committed files only, not the untracked ones")
    fail_on_regression: bool = _flag(False, "with --against: exit 4 when B is significantly worse than A "
                                            "beyond its tolerance")
    tolerance: tuple = _flag((), GATE_HELP["tolerance"], iterable=True)
    higher_is_better: tuple = _flag((), GATE_HELP["higher_is_better"], iterable=True)
    lower_is_better: tuple = _flag((), GATE_HELP["lower_is_better"], iterable=True)
    port: tuple = _flag((), "forward this port of the host to this machine while the run is followed "
                            "(6006, or REMOTE:LOCAL such as 6006:16006); repeatable", iterable=True)
    pull: tuple = _flag((), "when the run ends, copy the files it wrote matching this pattern "
                            "(relative to its directory on the host, e.g. outputs/**/*.pt) into its record's pulled/; "
                            "repeatable", iterable=True)
    only: tuple = _flag((), "sync only this workspace path, a folder or a file (repeatable); "
                            "the rest of REMOTE_DIR is left alone (default SYNC_ONLY)", iterable=True)
    force_sync: bool = _flag(False, "sync even when the upload is over SYNC_MAX_MB or SYNC_MAX_FILES")
    checksum: bool = _flag(False, "sync by comparing file contents, not size and time "
                                  "(after a branch switch, when times lie)")
    take_over: bool = _flag(False, "sync even when REMOTE_DIR mirrors another checkout of the workspace: "
                                   "it mirrors this one from now on (the other's runs stay in it)")
    torchrun: bool = _flag(False, "start the script with torchrun (python -m torch.distributed.run --standalone), "
                                  "one process per GPU the run is given (1 without a GPU)")
    nproc: object = _flag("", "with --torchrun: this many processes instead of one per GPU (e.g. 2 on a CPU)")
    env: tuple = _flag((), "set this variable for the run, KEY=VALUE (repeatable); kept in the run's record and "
                           "replayed by rerun, so not for secrets (REMOTE_ENV forwards those)", iterable=True)
    extra: tuple = _flag((), "bootstrap with this extra of the workspace's pyproject.toml (repeatable; "
                             "replaces BOOTSTRAP_EXTRAS)", iterable=True)
    group: tuple = _flag((), "bootstrap with this dependency group of the workspace's pyproject.toml (repeatable; "
                             "replaces BOOTSTRAP_GROUPS)", iterable=True)
    frozen: bool = _flag(False, "bootstrap from uv.lock as it is, even if it is out of date (uv sync --frozen)")
    # What check() parses the flags into.
    forwards: tuple = ()
    wait_seconds: float = 0.0
    gpu_count: int = 0
    runs: int = 1
    variables: tuple = ()  # --env as (name, value) pairs
    processes: int = 0  # --nproc, or 0: one per GPU the host gives the run

    @classmethod
    def flags(cls) -> list[dataclasses.Field]:
        """The fields that are flags, in the order tasks list them (short flags: SHORT_FLAGS above)."""
        return [f for f in dataclasses.fields(cls) if "help" in f.metadata]

    @classmethod
    def of(cls, given: dict) -> RunOptions:
        """The options among a task's keyword arguments (None, invoke's empty repeatable, as ())."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else () if v is None and k in _ITERABLE else v)
                      for k, v in given.items() if k in names})

    def check(self, settings) -> RunOptions:
        """Every flag validated, and their combinations, before anything runs; returns the options
        with what they parse into (workspace paths, port forwards, seconds, counts)."""
        from . import aftermath, ports
        from .environment import choose
        from .settings import int_between, sync_paths

        runs = int_between("--repeat", self.repeat, 1, MAX_REPEAT // 2 if self.against else MAX_REPEAT) \
            if self.repeat not in ("", None) else DEFAULT_PAIRS if self.against else 1
        self._check_against()
        if self.extra or self.group or self.frozen:  # names the workspace's pyproject.toml does not have
            choose(settings, self.extra, self.group, self.frozen)
        if self.sky and self.sky not in CLUSTERS:
            raise Failure(f"--sky {self.sky!r} is not valid", "use gpu or tpu")
        seconds = _seconds(self.wait_timeout, self.wait)
        count = int_between("--gpus", self.gpus, 1, 64) if self.gpus not in ("", None) else 0
        if self.sky and (self.wait or count):
            raise Failure("--wait and --gpus are for SSH hosts", "a SkyPilot cluster has its own GPUs (sky-up --accel)")
        if self.sky and (self.only or self.force_sync or self.checksum or self.take_over):
            raise Failure("--only, --force-sync, --checksum and --take-over shape the sync to REMOTE_HOST",
                          "SkyPilot uploads the workspace itself (.skyignore)")
        only = tuple(sync_paths("--only", settings.workspace, self.only)) if self.only else ()
        forwards, patterns = ports.parse(self.port), aftermath.check_patterns(self.pull)
        if self.sky and (forwards or patterns):
            raise Failure(f"--{'port' if forwards else 'pull'} works on REMOTE_HOST runs",
                          "a SkyPilot cluster is an SSH host too: run with REMOTE_HOST=<cluster name> instead of --sky")
        if forwards and self.detach:
            raise Failure("--port forwards while a run is followed",
                          "with --detach, forward later with `inv tunnel --port PORT`")
        gating = self.gating()
        if not self.compare_to and not self.against and any(gating.values()):
            flag = next(k for k, v in gating.items() if v).replace("_", "-")
            raise Failure(f"--{flag} only applies with --compare-to NAME or --against REF (or to `inv compare`)",
                          "add one or drop it")
        if self.compare_to or self.against:
            if self.compare_to and self.detach:
                raise Failure("--compare-to compares the finished runs",
                              "drop --detach (or compare later with `inv compare`)")
            from . import compare  # here: 3 ms of every run's start, for these flags only

            compare.check_metric_names("--higher-is-better", self.higher_is_better)
            compare.check_metric_names("--lower-is-better", self.lower_is_better)
        processes = int_between("--nproc", self.nproc, 1, 1024) if self.nproc not in ("", None) else 0
        if processes and not self.torchrun:
            raise Failure("--nproc only applies with --torchrun", "add --torchrun or drop it")
        return dataclasses.replace(self, only=only, pull=patterns, forwards=tuple(forwards), wait_seconds=seconds,
                                   gpu_count=count, runs=runs, processes=processes,
                                   variables=run_variables(self.env, settings.remote_env) if self.env else ())

    def _check_against(self) -> None:
        if not self.against:
            for flag in ("committed_only", "fail_on_regression"):
                if getattr(self, flag):
                    raise Failure(f"--{flag.replace('_', '-')} only applies with --against REF", "add it or drop it")
            return
        if self.compare_to:
            raise Failure("--against and --compare-to are two ways to compare",
                          "give one: --against REF runs both versions now; --compare-to NAME uses a saved baseline")
        if self.sky:
            raise Failure("--against runs on REMOTE_HOST", "drop --sky (a SkyPilot cluster is an SSH host too: "
                                                           "REMOTE_HOST=<cluster name>)")
        if self.detach and self.fail_on_regression:
            raise Failure("--fail-on-regression gates the finished A/B",
                          "drop --detach (or gate later: `inv compare ID-A ID-B --fail-on-regression`)")

    def gating(self) -> dict:
        """The gate's flags, as remote_run.tasks.results.gate takes them."""
        return {"tolerance": self.tolerance, "higher_is_better": self.higher_is_better,
                "lower_is_better": self.lower_is_better}

    def invocation(self, names) -> dict:
        """The flags among ``names``, as given, that `inv rerun` gives a run again (no --repeat, gate,
        --detach or --take-over: taking a REMOTE_DIR over is done once, on purpose)."""
        skip = ("repeat", "compare_to", "tolerance", "higher_is_better", "lower_is_better", "detach", "take_over",
                "against", "committed_only", "fail_on_regression")
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in self.flags()
                if f.name in names and f.name not in skip}


_ITERABLE = {f.name for f in RunOptions.flags() if f.metadata["iterable"]}


def _seconds(value, wait: bool) -> float:
    if value in ("", None):
        return 0.0
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([smh]?)", str(value).strip())
    if not match or float(match[1]) <= 0:
        raise Failure(f"--wait-timeout {value!r} is not valid", "give a time above 0 such as 90, 30m or 2h")
    if not wait:
        raise Failure("--wait-timeout only applies with --wait", "add --wait or drop it")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


# Set by remote-run itself, or by the GPU check and queue (--gpus, the CUDA_VISIBLE_DEVICES setting).
OWN_VARIABLES = ("CUDA_VISIBLE_DEVICES", "PATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONUNBUFFERED")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Name parts that say a value is a secret; --env values are kept in records, so those go by REMOTE_ENV.
_SECRET = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|(API|ACCESS|PRIVATE|SECRET)_KEY)(_|$)")


def run_variables(given, forwarded=()) -> tuple:
    """--env KEY=VALUE flags as (name, value) pairs, each name a variable name that is neither
    remote-run's own nor a secret's; a name given twice keeps its last value, as `env` does."""
    found = {}
    for item in given:
        name, eq, value = str(item).partition("=")
        if not eq or not _NAME.fullmatch(name):
            raise Failure(f"--env {item!r} is not valid", "give KEY=VALUE with a variable name (letters, digits, _) "
                                                          "such as --env EPOCHS=3")
        if name in OWN_VARIABLES or name.startswith("REMOTE_RUN_"):
            raise Failure(f"--env {name} is set by remote-run itself for every run",
                          "choose GPUs with --gpus N or the CUDA_VISIBLE_DEVICES setting, which the GPU check sees"
                          if name == "CUDA_VISIBLE_DEVICES" else "drop it")
        if name in forwarded:
            raise Failure(f"--env {name} is also forwarded by REMOTE_ENV", "give it one way: drop one of them")
        if _SECRET.search(name.upper()):
            raise Failure(f"--env {name} looks like a secret, and --env values are kept in the run's record",
                          f"forward it with REMOTE_ENV={name} (its value is never kept)")
        if "\0" in value:
            raise Failure(f"--env {name}'s value holds a NUL byte", "a variable's value cannot hold one")
        found[name] = value
    return tuple(found.items())
