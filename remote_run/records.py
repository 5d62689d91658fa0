"""Run records: RESULT lines, notable warnings, failure hints, and log.md/result.json on disk."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

_RESULT = re.compile(r"^(RESULT_[A-Z0-9_]+)((?:\s+[A-Za-z_][A-Za-z0-9_]*=\S*)*)\s*$", re.M)
_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)")

WARNINGS = [
    ("numpy alias", re.compile(r"np\.(float|int|bool|object)\b.*(deprecat|alias)|`np\.(float|int|bool)` is a deprecated alias", re.I)),
    ("torch.load FutureWarning", re.compile(r"FutureWarning:.*torch\.load|torch\.load.*weights_only=False")),
    ("CUDA not available", re.compile(r"CUDA initialization|torch\.cuda\.is_available\(\) is False|Found no NVIDIA driver")),
    ("other warning", re.compile(r"\b[A-Z][A-Za-z]*Warning:")),
]

HINTS = [
    (re.compile(r"ModuleNotFoundError: No module named '([^']+)'"),
     "module {0!r} is missing: if it is part of the workspace check that it was synced (not excluded), else add it to PIP_PACKAGES or requirements.txt and run `inv bootstrap`"),
    (re.compile(r"AttributeError: module 'numpy' has no attribute '(float|int|bool|object|complex|str)'"),
     "numpy >= 1.24 removed np.{0}: remote-run adds it back for runs it starts; by hand, add `np.{0} = {0}` after importing numpy, or pin numpy<1.24"),
    (re.compile(r"CUDA out of memory|OutOfMemoryError"),
     "the GPU ran out of memory: lower --batch-size, use lower precision, and check with `inv gpu-check` that no other job shares the GPU"),
    (re.compile(r"no CUDA-capable device|Found no NVIDIA driver|CUDA driver version is insufficient|No CUDA GPUs are available|Torch not compiled with CUDA"),
     "the run found no usable GPU: run `inv gpu-check`, check CUDA_VISIBLE_DEVICES, and that TORCH_INDEX_URL matches the host's CUDA"),
    (re.compile(r"No space left on device"),
     "the disk is full on the host: free space (`inv clean --yes` removes REMOTE_DIR) or choose a REMOTE_DIR on a larger disk"),
    (re.compile(r"Permission denied"),
     "a permission error: the run writes inside REMOTE_DIR; check that REMOTE_DIR and any output paths are writable by the SSH user"),
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


def hints(text: str) -> list[str]:
    """One line per known failure signature found in the output."""
    out = []
    for pattern, message in HINTS:
        match = pattern.search(text or "")
        if match:
            out.append(message.format(*match.groups()))
    return out


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


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def check_run_id(run: str) -> str:
    """A run id given with --run ("" for none); refuses anything that is not one."""
    from .errors import Failure

    if run and not RUN_ID.match(run):
        raise Failure(f"--run {run!r} is not a run id; run ids look like 20261122T101500Z_train-hlb (see `inv status`)")
    return run


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

    def finish(self, log_text: str, exit_status: int | None, elapsed: float, outcome: str) -> None:
        """Fill in how the run ended; ``outcome`` comes from remote_run.pipeline.outcome()."""
        self.ended = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.elapsed_seconds = round(elapsed, 3)
        self.exit_status = exit_status
        self.outcome = outcome
        self.result = parse_result(log_text)
        self.warnings = notable_warnings(log_text)
        self.hints = hints(log_text) if exit_status else []

    def write(self, folder: Path, log_text: str | None = None) -> Path:
        """Write result.json, log.md and (if given) run.log; never replaces an existing run.log.

        Each file is written under a temporary name and renamed: a reader (another terminal
        completing the same record) never sees half of one.
        """
        folder.mkdir(parents=True, exist_ok=True)
        if log_text is not None:
            log_path = folder / "run.log"
            if not log_path.exists():
                log_path.write_text(log_text, encoding="utf-8", errors="surrogateescape")
        _write(folder / "result.json", json.dumps(asdict(self), indent=2, default=str) + "\n")
        _write(folder / "log.md", self.markdown())
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
        gpu = ", ".join(f"{g.get('index')}: {g.get('name')}" for g in self.gpu) or "none seen (gpu-check not run or no GPU)"
        commit = self.git.get("commit") or "not a git checkout"
        dirty = {True: " (dirty: uncommitted changes)", False: " (clean)"}.get(self.git.get("dirty"), "")
        lines = [
            f"# {self.task} — {self.run_id}",
            "",
            f"- **Outcome:** {self.outcome} (exit status {self.exit_status}), {self.elapsed_seconds} s wall",
            f"- **Host:** {self.host}",
            f"- **GPU:** {gpu}",
            f"- **Workspace commit:** {commit}{dirty}",
            f"- **Started / ended (UTC):** {self.started} / {self.ended}",
            f"- **Remote log:** {self.remote_log}",
            f"- **Local log:** {self.local_log}",
            "",
            "## Result",
            "",
            (f"`{self.result['name']}` " + ", ".join(f"{k}={v}" for k, v in metrics.items())) if self.result else "No RESULT line was printed.",
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
        if self.hints:
            lines += ["## Hints", "", *[f"- {h}" for h in self.hints], ""]
        if self.runner:
            lines += [f"## Runner ({self.runner_path})", "", "```python", self.runner.rstrip(), "```", ""]
        return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text, encoding="utf-8", errors="surrogateescape")
    os.replace(temp, path)


def _short(command: str, limit: int = 300) -> str:
    """Commands carrying an inline script are long; the record keeps their head."""
    return command if len(command) <= limit else command[:limit] + f" … ({len(command)} chars)"
