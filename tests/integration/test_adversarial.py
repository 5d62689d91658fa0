"""Adversarial input through the real CLI: bad settings, flags, names and ids are one clear line
and change nothing on the host; odd-but-legal arguments and file names arrive exactly as given.

Complements BAD_INPUTS in test_ssh_tasks.py (none of those rows is repeated here).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import cli as support
from support.badinput import LOCAL, ROWS
from support.cli import no_traceback, one_line_error, remote_exists, tree
from support.workspace import make_workspace, unique_remote_dir

CANARY = f"/tmp/rrt_canary_{uuid.uuid4().hex[:10]}"  # the host is this machine: one path for both sides


def cli(*args, **env):
    """Runs here use the host's own Python, unless a row says otherwise: no venv to build."""
    return support.cli(*args, venv=False, **env)


def fill(value, **names):
    if isinstance(value, str):
        for key, text in names.items():
            value = value.replace("{" + key + "}", text)
    return value


@pytest.fixture
def fresh(sshd, offline_pip, tmp_path):
    ws = make_workspace(tmp_path)
    remote = unique_remote_dir("rrt_adv")
    yield ws, remote
    sshd.cleanup_remote(remote)
    Path(CANARY).unlink(missing_ok=True)


def write_records(runs):
    """Local records for the compare/baseline/report rows: two runs with no metric in common, a group
    of two, a run whose result.json is corrupt, and a baseline."""
    from remote_run import groups, records

    def run(run_id, metrics, group=None):
        record = records.RunRecord(run_id=run_id, task="run", host="l1", outcome="finished", group=group,
                                   started=f"2026-11-0{run_id[7]}T00:00:00.000+00:00",
                                   result={"name": "RESULT_T", "metrics": metrics})
        record.write(runs / run_id)
        return record

    run("20261101T000000Z_run", {"acc": 0.9})
    run("20261101T000001Z_run", {"loss": 0.5})
    members = [run(f"20261102T000000Z_run-x2.{i}", {"acc": 0.8 + i / 100}, group="20261102T000000Z_run-x2")
               for i in (1, 2)]
    groups.write(runs / "20261102T000000Z_run-x2", groups.summarize("20261102T000000Z_run-x2", members))
    (runs / "20261103T000000Z_run").mkdir(parents=True)
    (runs / "20261103T000000Z_run" / "result.json").write_text('{"run_id": "20261103T000000Z_run", "res')
    (runs / "baselines").mkdir()
    (runs / "baselines" / "main.json").write_text(json.dumps({
        "name": "main", "ref": "x", "kind": "run", "source": "20261101T000000Z_run",
        "runs": [{"id": "20261101T000000Z_run", "task": "run", "metrics": {"acc": 0.9},
                  "git": {}, "options": {}, "outcome": "finished"}],
        "saved": ""}))


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input_is_one_line_and_changes_nothing(sshd, fresh, gpu, row):
    ws, remote = fresh
    cm777 = tempfile.mkdtemp(prefix="rr-cm777-", dir="/tmp") if row.setup == "cm777" else ""
    names = {"remote": remote, "canary": CANARY, "ws": str(ws), "cm777": cm777}
    args = [fill(a, **names) for a in row.args]
    env = {"REMOTE_DIR": remote, **{k: fill(v, **names) for k, v in row.env.items()}}
    if row.dotenv is not None:
        data = row.dotenv if isinstance(row.dotenv, bytes) else fill(row.dotenv, **names).encode()
        (ws / ".env").write_bytes(data)
    program = "inv"
    if row.setup == "remote-run":
        program = "remote-run"
    elif row.setup == "evil_link":
        (ws / "evil_link.py").symlink_to("/etc/hostname")
    elif row.setup == "cm777":
        os.chmod(cm777, 0o777)
    elif row.setup == "remote-file":
        sshd.as_user(["sh", "-c", f"echo precious > {remote}"])
    elif row.setup and row.setup.startswith("gpu:"):
        gpu(row.setup[4:])
    elif row.setup == "records":
        write_records(ws / "var" / "runs")
    mark = sshd.mark()
    try:
        done = cli(sshd, ws, *args, program=program, timeout=60, **env)
    finally:
        if cm777:
            os.rmdir(cm777)
    line = one_line_error(done)
    assert row.needle in line, line
    assert done.returncode == row.status, f"exit {done.returncode}, not {row.status}: {line}"
    assert not os.path.exists(CANARY)
    if row.where == LOCAL:
        assert sshd.count("Starting session:", mark) == 0, (
            f"connected to the host for an input it could refuse locally: {line}")
        assert not remote_exists(sshd, remote), f"{remote} was created for an input refused with: {line}"
    else:
        assert not remote_exists(sshd, f"{remote}/runs"), f"a run was started for an input refused with: {line}"
        if row.setup == "remote-file":
            assert sshd.as_user(["cat", remote]).stdout == "precious\n"
        elif args[0] in ("kill", "logs", "status"):
            assert not remote_exists(sshd, remote), "a task that only looks at runs created REMOTE_DIR"


def test_the_table_is_large_and_covers_every_task():
    assert len(ROWS) >= 100 and len({row.id for row in ROWS}) == len(ROWS)
    tasks = {a for row in ROWS for a in row.args if not a.startswith("-") and a in
             {"sync", "bootstrap", "gpu-check", "train-hlb", "train-david", "run", "pull-logs", "clean", "logs",
              "status", "kill", "sky-down", "sky-exec"}}
    assert tasks >= {"sync", "bootstrap", "gpu-check", "train-hlb", "train-david", "run", "pull-logs", "clean", "logs",
                     "status", "kill"}


# --------------------------------------------------------------------------- legal but odd

@pytest.mark.parametrize("suffix", [" sp@c e=,+%-x", " co:lon"], ids=["spaces-and-signs", "colon"])
def test_odd_but_legal_remote_dir_works_end_to_end_or_is_refused_up_front(sshd, fresh, suffix):
    ws, _ = fresh
    remote = unique_remote_dir("rrt_adv") + suffix
    mark = sshd.mark()
    try:
        done = cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote)
        if done.returncode and "REMOTE_DIR" in done.stderr and sshd.count("Starting session:", mark) == 0:
            one_line_error(done)  # refused up front: fine
            return
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr
        assert "RESULT_HELLO answer=42" in done.stdout
        assert Path(remote, "scripts", "hello.py").is_file() and Path(remote, ".remote-run", "runs").is_dir()
        status = cli(sshd, ws, "status", REMOTE_DIR=remote)
        assert status.returncode == 0 and "finished" in status.stdout, status.stderr
    finally:
        sshd.cleanup_remote(remote)


# ------------------------------------------------------------------------------------ fuzz

FUZZ = settings(max_examples=25, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

DANGEROUS = [
    f"$(touch {CANARY})", f"`touch {CANARY}`", f"; touch {CANARY}", f"| touch {CANARY}", f"&& touch {CANARY}",
    f"\ntouch {CANARY}\n", f"' ; touch {CANARY}; '", f'" ; touch {CANARY}; "', "$((6*7))", "${HOME}", "$HOME",
    "-x", "--help", "-", "--", "*", "~", "a b", "naïve", "日本語", "\\", "\t", "", "'", '"', "\\'", "%s", "{}",
]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
ARG = st.one_of(st.sampled_from(DANGEROUS), TEXT, st.tuples(st.sampled_from(DANGEROUS), TEXT).map("".join))

ECHO_ARGS = "import json, sys\nprint('ARGV ' + json.dumps(sys.argv[1:]))\n"


@pytest.fixture(scope="module")
def fuzz_box(sshd, offline_pip, tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("fuzz_args"))
    (ws / "scripts" / "echo_args.py").write_text(ECHO_ARGS)
    remote = unique_remote_dir("rrt_fuzz_args")
    yield ws, remote
    sshd.cleanup_remote(remote)
    Path(CANARY).unlink(missing_ok=True)


@FUZZ
@given(values=st.lists(ARG, max_size=5))
def test_fuzz_run_args_arrive_exactly_and_nothing_is_executed(sshd, fuzz_box, values):
    ws, remote = fuzz_box
    joined = shlex.join(values)
    if joined == "--":
        joined = " --"  # invoke's parser takes a bare `--` for the end of its options, even as a value (README)
    done = cli(sshd, ws, "run", "scripts/echo_args.py", f"--args={joined}", REMOTE_DIR=remote, timeout=60)
    assert done.returncode == 0, done.stderr
    no_traceback(done)
    lines = [line for line in done.stdout.splitlines() if line.startswith("ARGV ")]
    assert len(lines) == 1, done.stdout
    assert json.loads(lines[0][5:]) == values
    run_id = re.search(r"\[run (\S+)\]", done.stderr).group(1)
    record = json.loads((ws / "var" / "runs" / run_id / "result.json").read_text())
    assert record["options"]["args"] == values
    assert not os.path.exists(CANARY), values


NAME_ALPHABET = (
    "abcXYZ019_.-" " '\"$`;&|()[]{}*?!#~%^=+,@:\\" "éüßñ日本語🙂" "\t\n"
)
EXCLUDED = {".", "..", ".git", "var", ".venv", "__pycache__", ".env", ".remote-run"}
NAME = st.text(alphabet=NAME_ALPHABET, min_size=1, max_size=20).filter(
    lambda n: n not in EXCLUDED and not (n.startswith(".env.") and n != ".env.example"))
LEADING_DASH = NAME.map(lambda n: "-" + n).filter(lambda n: n not in EXCLUDED)


@pytest.fixture(scope="module")
def names_box(sshd, tmp_path_factory):
    ws = tmp_path_factory.mktemp("fuzz_names") / "ws"
    ws.mkdir()
    remote = unique_remote_dir("rrt_fuzz_names")
    yield ws, remote
    sshd.cleanup_remote(remote)


@FUZZ
@given(files=st.lists(st.tuples(st.one_of(NAME, LEADING_DASH), st.one_of(st.none(), NAME, LEADING_DASH),
                                st.binary(max_size=64)),
                      min_size=1, max_size=6))
def test_fuzz_odd_file_names_sync_exactly(sshd, names_box, files):
    ws, remote = names_box
    identity = ws / "var" / "runs" / ".checkout"  # every example is the same checkout, which REMOTE_DIR mirrors
    kept = identity.read_bytes() if identity.exists() else None
    shutil.rmtree(ws)
    ws.mkdir()
    if kept is not None:
        identity.parent.mkdir(parents=True)
        identity.write_bytes(kept)
    (ws / "README.md").write_text("fuzz\n")
    for first, second, data in files:
        if second is None:
            # "d" holds the nested ones; runs/ and data/ are never deleted remotely
            if first in ("d", "README.md", "runs", "data"):
                continue
            path = ws / first
        else:
            path = ws / "d" / first / second
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    done = cli(sshd, ws, "sync", REMOTE_DIR=remote, timeout=60)
    assert done.returncode == 0, done.stderr
    no_traceback(done)
    assert tree(Path(remote)) == tree(ws, skip=("var",))  # var/: this machine's own (RUNS_DIR)
    assert not os.path.exists(CANARY)
