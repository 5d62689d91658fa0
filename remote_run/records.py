"""Run records: RESULT lines, notable warnings, failure hints, and log.md/result.json on disk."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .host.files import write_text
from .shell import join

_RESULT = re.compile(r"^(RESULT_[A-Z0-9_]+)((?:\s+[A-Za-z_][A-Za-z0-9_]*=\S*)*)\s*$", re.M)
_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)")

WARNINGS = [
    ("numpy alias", re.compile(r"np\.(float|int|bool|object)\b.*(deprecat|alias)|"
                               r"`np\.(float|int|bool)` is a deprecated alias", re.I)),
    ("torch.load FutureWarning", re.compile(r"FutureWarning:.*torch\.load|torch\.load.*weights_only=False")),
    ("CUDA not available", re.compile(r"CUDA initialization|torch\.cuda\.is_available\(\) is False|"
                                      r"Found no NVIDIA driver")),
    ("other warning", re.compile(r"\b[A-Z][A-Za-z]*Warning:")),
]

# Searched only in a failed run's output (compiled then, by re's own cache): every run imports this module.
HINTS = [
    (r"ModuleNotFoundError: No module named '(?!torch(?:vision|audio|text)?')(?!remote_run')([^']+)'(?!; )",
     "module {0!r} is missing: if it is part of the workspace check that it was synced (not excluded), "
     "else add it to the project's dependencies (pyproject.toml and `uv lock`, requirements.txt) or PIP_PACKAGES "
     "and run `inv bootstrap`"),
    (r"ModuleNotFoundError: No module named '(torch(?:vision|audio|text)?)'",
     "module {0!r} is missing: add it to TORCH_PACKAGES (installed with torch from TORCH_INDEX_URL), or to the "
     "project's dependencies (pyproject.toml and `uv lock`, requirements.txt) if it has its own, "
     "and run `inv bootstrap`"),
    # A tasks.py added for `inv` is imported instead of the workspace's own tasks/ package.
    (r"No module named 'remote_run'",
     "the run imports remote-run, which is not for the host: most likely a tasks.py added for `inv` hides the "
     "workspace's tasks/ package; remove that tasks.py and use the `remote-run` program, which needs no file in "
     "the repository"),
    (r"No module named '[^']+'; '([^']+)' is not a package",
     "the module {0!r} hides the package {0}/ (a file {0}.py beside the folder, such as a tasks.py added for "
     "`inv`): rename or remove that file; remote-run needs none, use the `remote-run` program"),
    (r"AttributeError: module 'numpy' has no attribute '(float|int|bool|object|complex|str)'",
     "numpy >= 1.24 removed np.{0}: remote-run adds it back for runs it starts; "
     "by hand, add `np.{0} = {0}` after importing numpy, or pin numpy<1.24"),
    (r"CUDA out of memory|OutOfMemoryError",
     "the GPU ran out of memory: lower --batch-size, use lower precision, "
     "and check with `inv gpu-check` that no other job shares the GPU"),
    (r"no CUDA-capable device|Found no NVIDIA driver|CUDA driver version is insufficient|"
     r"No CUDA GPUs are available|Torch not compiled with CUDA",
     "the run found no usable GPU: run `inv gpu-check`, check CUDA_VISIBLE_DEVICES, "
     "and that TORCH_INDEX_URL matches the host's CUDA"),
    (r"URLError: <urlopen error (.*)>",
     "the run could not download a file ({0}): is the host offline? Put what the run downloads on the host "
     "beforehand (data sets: in the shared cache $REMOTE_RUN_DATA) or give it a mirror it can reach"),
    (r"No space left on device",
     "the disk is full on the host: free space (`inv clean --yes` removes REMOTE_DIR) "
     "or choose a REMOTE_DIR on a larger disk"),
    (r"Cannot connect to the Docker daemon",
     "`docker` could not reach its daemon on the host: start it (`sudo systemctl start docker`) "
     "and check it with `inv gpu-check --docker`"),
    (r"permission denied while trying to connect to the Docker daemon",
     "this SSH user may not use Docker on the host: add it to the docker group (`sudo usermod -aG docker USER`, "
     "then log in again), or ask the host's admin"),
    (r"could not select device driver .* with capabilities: \[\[gpu\]\]|"
     r"unknown or invalid runtime name: nvidia",
     "Docker on the host cannot reach the GPUs: install the NVIDIA Container Toolkit "
     "(`inv gpu-check --docker` says what is missing)"),
    (r"Unable to find image '([^']+)' locally",
     "the image {0} is not on the host and could not be pulled: build it there first (the example's build "
     "script, e.g. `inv run build.sh --cwd examples/x`), or check its name"),
    (r"Permission denied",
     "a permission error: the run writes inside REMOTE_DIR; "
     "check that REMOTE_DIR and any output paths are writable by the SSH user"),
]


def parse_result(text: str) -> dict | None:
    """The last ``RESULT_X key=value ...`` line as {"name": "RESULT_X", "metrics": {...}}."""
    matches = list(_RESULT.finditer(text or ""))
    if not matches:
        return None
    match = matches[-1]
    return {"name": match.group(1), "metrics": {k: _value(v) for k, v in _PAIR.findall(match.group(2))}}


def _value(text: str):
    if text in ("None", "nan", ""):
        return None if text != "nan" else float("nan")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def notable_warnings(text: str, limit: int = 20) -> list[str]:
    """Distinct warning lines worth keeping, each tagged with the known signature it matched."""
    seen, found = set(), []
    for line in (text or "").splitlines():
        for label, pattern in WARNINGS:
            if pattern.search(line):
                entry = f"{label}: {line.strip()[:300]}"
                if line.strip() not in seen:
                    seen.add(line.strip())
                    found.append(entry)
                break
        if len(found) >= limit:
            break
    return found


# Exit statuses that say who failed when the output has no known signature.
EXIT_HINTS = {
    125: "exit status 125 is `docker run` failing before the container ran (its daemon, the image or "
         "docker's own options; docker's message is above the end of the log), not the program in it",
}

# A shell's statuses for a command it could not find (127) or found but could not run (126).
STATUS_HINTS = {
    127: "exit status 127 is a shell's \"command not found\"{0}: the run's PATH has the bin folder of the run's "
         "Python first (REMOTE_DIR/.venv/bin, or REMOTE_PYTHON's), so python, torchrun and the project's console "
         "scripts resolve there once installed: add the package to the project's dependencies, requirements.txt or "
         "PIP_PACKAGES (torch and torchrun: TORCH_PACKAGES) and run `inv bootstrap`; a system tool must be "
         "installed on the host",
    126: "exit status 126 is a shell's \"found but cannot run\"{0}: give the file the execute bit here "
         "(`chmod +x FILE`; the sync keeps it) or start it through its interpreter (`bash FILE`, `python FILE`), "
         "and check that it is a program for the host whose #! interpreter exists there",
}
_NOT_FOUND = (r"^(?:.*: )?([^\s:]+): (?:command )?not found$|"
              r"^remote-run: cannot start ([^\s:]+): No such file or directory$")
_CANNOT_RUN = (r"^(?:.*: )?([^\s:]+): (?:Permission denied|cannot execute.*|Exec format error)$|"
               r"^remote-run: cannot start ([^\s:]+): ")


def status_hint(text: str, exit_status: int | None) -> str | None:
    """The hint for a shell's 127 or 126, naming the command when the output does."""
    if exit_status not in STATUS_HINTS:
        return None
    found = re.findall(_NOT_FOUND if exit_status == 127 else _CANNOT_RUN, text or "", re.M)
    name = next((a or b for a, b in reversed(found)), "")
    return STATUS_HINTS[exit_status].format(f" ({name})" if name else "")


def hints(text: str, exit_status: int | None = None) -> list[str]:
    """One line per known failure signature found in the output (and the run's exit status)."""
    out = []
    for pattern, message in HINTS:
        match = re.search(pattern, text or "")
        if match:
            out.append(message.format(*match.groups()))
    status = status_hint(text, exit_status)
    if status:
        out.append(status)
    elif not out and exit_status in EXIT_HINTS:
        out.append(EXIT_HINTS[exit_status])
    return out


_EPOCH = re.compile(r"^EPOCH((?:\s+[A-Za-z_][A-Za-z0-9_]*=\S*)+)\s*$", re.M)
# The builtin trainers' table: a header whose first column is "epoch", then rows of numbers.
_TABLE_HEADER = re.compile(r"^\s*epoch((?:\s+[A-Za-z_][A-Za-z0-9_]*)+)\s*$")
_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|nan|inf", re.I)


def parse_epochs(text: str, arrivals: list[float] | None = None) -> list[dict]:
    """Per-epoch metrics: ``EPOCH key=value ...`` lines, or else the builtin trainers' epoch table.

    Each entry gets ``wall_s``, the seconds since the run's start, when it can be told: given as
    ``wall_s``, summed from per-epoch ``time_s``, or else when its EPOCH line reached us in the
    live stream (``arrivals``, one per EPOCH line; includes the link's latency).
    """
    epochs = [{k: _value(v) for k, v in _PAIR.findall(m.group(1))} for m in _EPOCH.finditer(text or "")]
    if not epochs:
        epochs, arrivals = _epoch_table(text or ""), None
    if arrivals is not None and len(arrivals) != len(epochs):
        arrivals = None
    total = 0.0
    for i, entry in enumerate(epochs):
        if "wall_s" in entry:
            continue
        if isinstance(entry.get("time_s"), (int, float)):
            total += entry["time_s"]
            entry["wall_s"] = round(total, 4)
        elif arrivals is not None:
            entry["wall_s"] = arrivals[i]
    return epochs


def _epoch_table(text: str) -> list[dict]:
    rows, columns = [], None
    for line in text.splitlines():
        header = _TABLE_HEADER.match(line)
        if header:
            columns, rows = ["epoch", *header.group(1).split()], []
            continue
        cells = line.split()
        if columns and len(cells) == len(columns) and all(_NUMBER.fullmatch(c) for c in cells):
            rows.append(dict(zip(columns, (_value(c) for c in cells))))
        elif columns and rows:
            columns = None  # the table ended
    return rows


GPU_COLUMNS = ("timestamp", "index", "uuid", "utilization", "memory_used", "memory_total", "power")
IDLE_UTILISATION = 50  # percent: a run whose GPU is busier than this is not input-bound
# Every run starts with the GPU idle (imports, CUDA initialisation, loading data: 5-15 s for torch).
# A mean says something about the training loop only when that start is a small part of it: at
# least IDLE_MIN_SECONDS (a 15 s start is then at most a quarter, which alone cannot pull a busy
# run below IDLE_UTILISATION) and at least IDLE_MIN_SAMPLES sampling times, so that with a long
# GPU_SAMPLE_SECONDS (10 s: 100 s) no single sample decides it. At the default 2 s a run needs 60 s.
IDLE_MIN_SECONDS = 60
IDLE_MIN_SAMPLES = 10


def idle_warning(usage: dict | None, elapsed: float | None, settings: dict) -> str | None:
    """The warning that the run's GPUs were mostly idle, when the samples can say so (see IDLE_MIN_SECONDS)."""
    if not usage or usage["mean_utilization"] >= IDLE_UTILISATION:
        return None
    times = usage.get("sample_times", usage["samples"])  # older records count rows
    if (elapsed or 0) < IDLE_MIN_SECONDS or times < IDLE_MIN_SAMPLES:
        return None
    said = f"GPU idle: mean utilisation {usage['mean_utilization']:g} % over {times} samples"
    if settings.get("RUN_ENVIRONMENT") == "docker":
        # nvidia-smi sees a container's work, but only on the GPUs it samples: CUDA_VISIBLE_DEVICES
        return (f"{said}: the containers may use other GPUs (`docker run --gpus all` does not follow "
                "CUDA_VISIBLE_DEVICES; pass `--gpus \"device=$CUDA_VISIBLE_DEVICES\"`), or none")
    return f"{said}: input-bound?"


def gpu_usage(csv_text: str) -> dict | None:
    """What the GPU did, from the samples the host took (``nvidia-smi -lms``): mean and peak
    utilisation, peak memory, mean power; None without samples."""
    rows = []
    for line in (csv_text or "").splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) == len(GPU_COLUMNS):
            row = dict(zip(GPU_COLUMNS, cells))
            row["utilization"], row["memory_used"], row["power"] = (_float(row["utilization"]),
                                                                    _float(row["memory_used"]), _float(row["power"]))
            rows.append(row)
    util = [r["utilization"] for r in rows if r["utilization"] is not None]
    if not util:
        return None
    memory = [r["memory_used"] for r in rows if r["memory_used"] is not None]
    power = [r["power"] for r in rows if r["power"] is not None]
    return {"samples": len(rows), "sample_times": len({r["timestamp"] for r in rows}),
            "mean_utilization": round(sum(util) / len(util), 1), "max_utilization": max(util),
            "peak_memory_mib": max(memory) if memory else None,
            "mean_power_w": round(sum(power) / len(power), 1) if power else None}


def _float(text: str):
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def git_state(run, workspace: Path) -> dict:
    """The workspace's commit and whether it has uncommitted changes; ``run`` is a Host.local-like runner."""
    def git(*args):
        done = run(["git", "-C", str(workspace), *args], hide=True, timeout=10)
        return done.stdout.strip() if done.exited == 0 else None

    try:
        commit = git("rev-parse", "HEAD")
    except Exception:  # noqa: BLE001 - no git, or it hung: the record says "not a git checkout"
        commit = None
    if commit is None:
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


DIFF_LIMIT = 1 << 20  # bytes of `git diff --binary HEAD` a record keeps; the full size and hash are noted
HASH_LIMIT = 64 << 20  # untracked files larger than this are listed with their size only


def code_state(run, workspace: Path, synced: set[str]) -> tuple[dict, bytes]:
    """What ran, beyond the commit: (summary for the record, the diff against HEAD, capped).

    ``synced`` are the workspace paths a sync sends; the untracked ones among them are listed with
    their sizes and hashes.
    """
    import hashlib

    state = git_state(run, workspace)
    if state["commit"] is None:
        return {**state, "diff_bytes": None, "untracked": []}, b""
    done = run(["git", "-C", str(workspace), "diff", "--binary", "HEAD"], hide=True, timeout=60)
    diff = done.stdout.encode("utf-8", "surrogateescape") if done.exited == 0 else b""
    listed = run(["git", "-C", str(workspace), "ls-files", "--others", "--exclude-standard", "-z"],
                 hide=True, timeout=60)
    untracked = []
    for rel in sorted(p for p in listed.stdout.split("\0") if p and p in synced):
        path = workspace / rel
        try:
            size = path.stat().st_size
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if size <= HASH_LIMIT else None
        except OSError:
            continue
        untracked.append({"path": rel, "size": size, "sha256": digest})
    summary = {**state, "diff_bytes": len(diff), "diff_sha256": hashlib.sha256(diff).hexdigest(),
               "diff_truncated": len(diff) > DIFF_LIMIT, "untracked": untracked}
    return summary, diff[:DIFF_LIMIT]


def code_differences(then: dict, now: dict) -> list[str]:
    """How the workspace now differs from what a run used (both from code_state)."""
    changes = []
    if then.get("commit") != now.get("commit"):
        changes.append(f"commit {str(then.get('commit'))[:12]} -> {str(now.get('commit'))[:12]}")
    if then.get("diff_sha256") != now.get("diff_sha256"):
        changes.append("uncommitted changes differ")
    before = {u["path"]: u["sha256"] for u in then.get("untracked", [])}
    after = {u["path"]: u["sha256"] for u in now.get("untracked", [])}
    for path in sorted(set(before) | set(after)):
        if before.get(path) != after.get(path):
            changes.append(f"untracked {path} "
                           + ("added" if path not in before else "removed" if path not in after else "changed"))
    return changes


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def check_run_id(run: str) -> str:
    """A run id given with --run ("" for none); refuses anything that is not one."""
    from .errors import Failure

    if run and not RUN_ID.match(run):
        raise Failure(f"--run {run!r} is not a run id",
                      "run ids look like 20261122T101500Z_train-hlb (see `inv status`)")
    return run


def markdown_table(rows) -> list[str]:
    """``rows`` (the header first) as the lines of a Markdown table."""
    return ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0]),
            *["| " + " | ".join(row) + " |" for row in rows[1:]]]


def utc_stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def new_run_id(task: str, runs_dir: Path) -> str:
    """``<UTC timestamp>_<task>``, not yet used among the local records."""
    base = f"{utc_stamp()}_{task}"
    run_id, n = base, 1
    while (runs_dir / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def claim_run_id(task: str, runs_dir: Path) -> str:
    """A new run id whose record folder this process has created (concurrent runs never share one)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = new_run_id(task, runs_dir)
        try:
            (runs_dir / run_id).mkdir()
            return run_id
        except FileExistsError:
            continue


@dataclass
class RunRecord:
    run_id: str
    task: str
    host: str
    gpu: list = field(default_factory=list)
    git: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    runner: str | None = None
    runner_path: str | None = None
    # what ran, relative to the run's copy of the workspace (its runner's flags too)
    argv: list = field(default_factory=list)
    commands: list = field(default_factory=list)
    remote_log: str = ""
    local_log: str = ""
    started: str = ""
    ended: str = ""
    elapsed_seconds: float | None = None
    exit_status: int | None = None
    outcome: str = "unknown"
    result: dict | None = None
    warnings: list = field(default_factory=list)
    hints: list = field(default_factory=list)
    epochs: list = field(default_factory=list)  # per-epoch metrics (parse_epochs)
    snapshot: dict | None = None  # the run's own copy of the code on the host: the sync stamp it was taken at
    devices: str | None = None  # CUDA_VISIBLE_DEVICES the host picked (`auto`)
    group: str | None = None  # the group of a --repeat run
    gpu_usage: dict | None = None  # from the host's samples (gpu_usage)
    code: dict = field(default_factory=dict)  # code_state: commit, diff against HEAD, untracked files
    invocation: dict = field(default_factory=dict)  # the task and its arguments, for `inv rerun`
    pulled: dict | None = None  # --pull: patterns, and the files brought into pulled/ (remote_run.aftermath)
    # what REMOTE_DIR held of the workspace: {"only", "files", "bytes", "how"} (remote_run.sync.synced)
    synced: dict | None = None
    env: dict = field(default_factory=dict)  # --env: the run's variables (REMOTE_ENV's, secrets, are never kept)

    def finish(self, log_text: str, exit_status: int | None, elapsed: float, outcome: str, gpu_csv: str = "",
               epoch_arrivals: list[float] | None = None) -> None:
        """Fill in how the run ended; ``outcome`` comes from remote_run.pipeline.outcome()."""
        self.ended = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self.elapsed_seconds = round(elapsed, 3)
        self.exit_status = exit_status
        self.outcome = outcome
        self.result = parse_result(log_text)
        self.epochs = parse_epochs(log_text, epoch_arrivals)
        self.warnings = notable_warnings(log_text)
        self.hints = hints(log_text, exit_status) if exit_status else []
        if gpu_csv:
            self.gpu_usage = gpu_usage(gpu_csv)
        idle = idle_warning(self.gpu_usage, self.elapsed_seconds, self.settings)
        if idle:
            self.warnings.append(idle)

    def write(self, folder: Path, log_text: str | None = None, *, diff: bytes | None = None, gpu_csv: str = "") -> Path:
        """Write result.json, log.md and (if given) run.log, code.diff and gpu.csv; never replaces
        an existing run.log.

        Each file is written under a temporary name and renamed: a reader (another terminal
        completing the same record) never sees half of one.
        """
        folder.mkdir(parents=True, exist_ok=True)
        if log_text is not None:
            log_path = folder / "run.log"
            if not log_path.exists():
                log_path.write_text(log_text, encoding="utf-8", errors="surrogateescape")
        if diff:
            (folder / "code.diff").write_bytes(diff)
        if gpu_csv:
            write_text(folder / "gpu.csv", gpu_csv)
        write_text(folder / "result.json", json.dumps(asdict(self), indent=2, default=str) + "\n")
        write_text(folder / "log.md", self.markdown())
        return folder

    @classmethod
    def load(cls, folder: Path) -> "RunRecord | None":
        """The record in ``folder``, or None when there is none (or it cannot be read)."""
        try:
            data = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError:
            return None

    def markdown(self) -> str:
        metrics = (self.result or {}).get("metrics", {})
        gpu = (", ".join(f"{g.get('index')}: {g.get('name')}" for g in self.gpu)
               or "none seen (gpu-check not run or no GPU)")
        commit = self.git.get("commit") or "not a git checkout"
        dirty = {True: " (dirty: uncommitted changes)", False: " (clean)"}.get(self.git.get("dirty"), "")
        lines = [
            f"# {self.task} — {self.run_id}",
            "",
            f"- **Outcome:** {self.outcome} (exit status {self.exit_status}), {self.elapsed_seconds} s wall",
            f"- **Host:** {self.host}",
            *([f"- **Ran:** `{join(self.argv)}`"] if self.argv else []),
            *([f"- **Variables (--env):** `{join(f'{k}={v}' for k, v in self.env.items())}`"] if self.env else []),
            f"- **GPU:** {gpu}",
            f"- **Workspace commit:** {commit}{dirty}{self._code_line()}",
            *([f"- **Code on the host:** the run's own snapshot of the tree synced as {self.snapshot.get('tree')} "
               f"({self.snapshot.get('files')} files hard-linked in {self.snapshot.get('seconds')} s)"]
              if self.snapshot else []),
            *([(f"- **Synced:** {', '.join(self.synced.get('only') or []) or 'the whole workspace'}: "
                f"{self.synced.get('files')} files, "
                f"{self.synced.get('bytes')} bytes ({self.synced.get('how')})")] if self.synced else []),
            f"- **Started / ended (UTC):** {self.started} / {self.ended}",
            f"- **Remote log:** {self.remote_log}",
            f"- **Local log:** {self.local_log}",
            "",
            "## Result",
            "",
            (f"`{self.result['name']}` " + ", ".join(f"{k}={v}" for k, v in metrics.items())) if self.result
            else "No RESULT line was printed.",
            "",
            "## Options",
            "",
            *[f"- `{k}`: {v!r}" for k, v in self.options.items()],
            "",
            "## Commands",
            "",
            "```",
            *[_short(c) for c in self.commands],
            "```",
            "",
            "## Warnings",
            "",
            *([f"- {w}" for w in self.warnings] or ["None seen."]),
            "",
        ]
        if self.group:
            lines.insert(3, f"- **Group:** {self.group} (summary: ../{self.group}/summary.md)")
        if self.gpu_usage:
            u = self.gpu_usage
            lines += ["## GPU use", "",
                      f"Mean utilisation {u['mean_utilization']:g} %, peak {u['max_utilization']:g} %, "
                      f"peak memory {u['peak_memory_mib']} MiB, mean power {u['mean_power_w']} W "
                      f"({u['samples']} samples, gpu.csv).", ""]
        if self.epochs:
            columns = list(dict.fromkeys(k for e in self.epochs for k in e))
            lines += ["## Epochs", "", *markdown_table([columns, *[[str(e.get(c, "")) for c in columns]
                                                                     for e in self.epochs]]), ""]
        if self.code.get("untracked"):
            lines += ["## Untracked files synced", "",
                      *[f"- `{u['path']}` ({u['size']} bytes, sha256 {u['sha256'] or 'not hashed: too large'})"
                        for u in self.code["untracked"]], ""]
        if self.pulled:
            p = self.pulled
            lines += ["## Pulled files", "",
                      f"`--pull {' '.join(p.get('patterns', []))}` from {p.get('from', 'the host')} into pulled/:", "",
                      *[f"- `{f['path']}` ({f['size']} bytes)" for f in p.get("files", [])],
                      *[f"- `{k}`: the local copy differs from the host's and was kept" for k in p.get("kept", [])],
                      *([f"- {p['error']}"] if p.get("error") else []),
                      *([] if p.get("files") or p.get("kept") or p.get("error") or "from" not in p
                        else ["- no matching file was written"]),
                      *([] if "from" in p or p.get("error")
                        else ["- not yet: the files come when the run has ended (`inv logs --follow`)"]), ""]
        if self.hints:
            lines += ["## Hints", "", *[f"- {h}" for h in self.hints], ""]
        if self.runner:
            lines += [f"## Runner ({self.runner_path})", "", "```python", self.runner.rstrip(), "```", ""]
        return "\n".join(lines)


    def _code_line(self) -> str:
        code = self.code
        if not code.get("diff_bytes"):
            return ""
        cut = f", first {DIFF_LIMIT} bytes kept" if code.get("diff_truncated") else ""
        return f"; diff against it: code.diff ({code['diff_bytes']} bytes{cut}, sha256 {code['diff_sha256'][:12]})"


def _short(command: str, limit: int = 300) -> str:
    """Commands carrying an inline script are long; the record keeps their head."""
    return command if len(command) <= limit else command[:limit] + f" … ({len(command)} chars)"
