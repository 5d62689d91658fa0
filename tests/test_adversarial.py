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
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration import make_workspace, one_line_error, remote_exists, unique_remote_dir
from survive import cli, no_traceback, tree

CANARY = f"/tmp/rrt_canary_{uuid.uuid4().hex[:10]}"  # the host is this machine: one path for both sides

# Which inputs are refused before connecting ("local"), and which legitimately need the host
# ("host": its GPU, its runs, its directories) -- for those, nothing may start: no REMOTE_DIR/runs.
LOCAL, HOST = "local", "host"

# (id, CLI args, environment (None = unset), .env text or None, needle in the error line, where, setup)
# {remote} = this test's unique REMOTE_DIR, {canary} = CANARY, {ws} = the workspace.
ROWS = [
    # REMOTE_HOST, from the environment, .env and --host
    ("host-proxycommand", ["sync"], {"REMOTE_HOST": "-oProxyCommand=touch {canary}"}, None, "REMOTE_HOST", LOCAL, None),
    ("host-space", ["gpu-check"], {"REMOTE_HOST": "l1 x"}, None, "REMOTE_HOST", LOCAL, None),
    ("host-two-ats", ["sync"], {"REMOTE_HOST": "a@b@c"}, None, "REMOTE_HOST", LOCAL, None),
    ("host-port-0", ["sync"], {"REMOTE_HOST": "rrtest@127.0.0.1:0"}, None, "1-65535", LOCAL, None),
    ("host-port-70000", ["status"], {"REMOTE_HOST": "rrtest@127.0.0.1:70000"}, None, "1-65535", LOCAL, None),
    ("host-semicolon", ["bootstrap"], {"REMOTE_HOST": "l1;touch {canary}"}, None, "REMOTE_HOST", LOCAL, None),
    ("host-subshell", ["run", "scripts/hello.py"], {"REMOTE_HOST": "$(touch {canary})"}, None, "REMOTE_HOST", LOCAL, None),
    ("host-empty-user-part", ["sync"], {"REMOTE_HOST": "rrtest@"}, None, "REMOTE_HOST", LOCAL, None),
    ("host-flag-two-ats", ["--host", "a@b@c", "sync"], {}, None, "REMOTE_HOST", LOCAL, "remote-run"),
    ("host-dotenv-proxycommand", ["sync"], {"REMOTE_HOST": None}, "REMOTE_HOST=-oProxyCommand=touch {canary}\n", "REMOTE_HOST", LOCAL, None),
    # REMOTE_DIR
    ("dir-newline", ["sync"], {"REMOTE_DIR": "{remote}/a\nb"}, None, "REMOTE_DIR", LOCAL, None),
    ("dir-subshell", ["sync"], {"REMOTE_DIR": "{remote}/$(touch {canary})"}, None, "REMOTE_DIR", LOCAL, None),
    ("dir-quote", ["clean", "--yes"], {"REMOTE_DIR": "{remote}/it's"}, None, "REMOTE_DIR", LOCAL, None),
    ("dir-dot", ["sync"], {"REMOTE_DIR": "{remote}/./x"}, None, "REMOTE_DIR", LOCAL, None),
    ("dir-tilde-user", ["sync"], {"REMOTE_DIR": "~rrtest/x"}, None, "REMOTE_DIR", LOCAL, None),
    ("dir-glob", ["sync"], {"REMOTE_DIR": "{remote}/*"}, None, "REMOTE_DIR", LOCAL, None),
    ("dir-slashes-only", ["sync"], {"REMOTE_DIR": "//"}, None, "REMOTE_DIR", LOCAL, None),
    ("dir-pipe", ["pull-logs"], {"REMOTE_DIR": "{remote}/a|touch {canary}"}, None, "REMOTE_DIR", LOCAL, None),
    ("dir-dotenv-backtick", ["sync"], {"REMOTE_DIR": None}, "REMOTE_DIR={remote}/`touch {canary}`\n", "REMOTE_DIR", LOCAL, None),
    # REMOTE_ENV
    ("env-digit-first", ["sync"], {"REMOTE_ENV": "1ABC"}, None, "REMOTE_ENV", LOCAL, None),
    ("env-semicolon", ["run", "scripts/hello.py"], {"REMOTE_ENV": "A,B;touch"}, None, "REMOTE_ENV", LOCAL, None),
    ("env-subshell", ["sync"], {"REMOTE_ENV": "$(touch {canary})"}, None, "REMOTE_ENV", LOCAL, None),
    ("env-name-without-value", ["run", "scripts/hello.py"], {"REMOTE_ENV": "RRT_NOT_SET_ANYWHERE"}, None, "RRT_NOT_SET_ANYWHERE", LOCAL, None),
    # SYNC_EXCLUDE, RUNS_DIR, WORKSPACE, REMOTE_PYTHON
    ("exclude-option", ["sync"], {"SYNC_EXCLUDE": "--delete-excluded"}, None, "SYNC_EXCLUDE", LOCAL, None),
    ("exclude-rsync-path", ["sync"], {"SYNC_EXCLUDE": "data,-e touch {canary}"}, None, "SYNC_EXCLUDE", LOCAL, None),
    ("runs-dir-is-a-file", ["run", "scripts/hello.py"], {"RUNS_DIR": "README.md"}, None, "RUNS_DIR", LOCAL, None),
    ("workspace-is-a-file", ["sync"], {"WORKSPACE": "{ws}/README.md"}, None, "WORKSPACE", LOCAL, None),
    ("python-semicolon", ["bootstrap"], {"REMOTE_PYTHON": "python3;touch {canary}"}, None, "REMOTE_PYTHON", LOCAL, None),
    ("python-option", ["run", "scripts/hello.py"], {"REMOTE_PYTHON": "-c"}, None, "REMOTE_PYTHON", LOCAL, None),
    ("python-with-args", ["sync"], {"REMOTE_PYTHON": "/usr/bin/python3 -c import os"}, None, "REMOTE_PYTHON", LOCAL, None),
    # bootstrap inputs
    ("index-ftp", ["bootstrap"], {"TORCH_INDEX_URL": "ftp://example.com/simple"}, None, "TORCH_INDEX_URL", LOCAL, None),
    ("index-subshell", ["bootstrap"], {"TORCH_INDEX_URL": "https://example.com/$(touch {canary})"}, None, "TORCH_INDEX_URL", LOCAL, None),
    ("torch-packages-semicolon", ["bootstrap"], {"TORCH_PACKAGES": "torch;touch {canary}"}, None, "TORCH_PACKAGES", LOCAL, None),
    ("pip-index-option", ["bootstrap"], {"PIP_PACKAGES": "--index-url=http://evil.example"}, None, "PIP_PACKAGES", LOCAL, None),
    ("pip-editable", ["train-hlb"], {"PIP_PACKAGES": "-e ."}, None, "PIP_PACKAGES", LOCAL, None),
    ("pip-subshell", ["bootstrap"], {"PIP_PACKAGES": "numpy$(touch {canary})"}, None, "PIP_PACKAGES", LOCAL, None),
    # CUDA_VISIBLE_DEVICES
    ("cuda-semicolon", ["gpu-check"], {"CUDA_VISIBLE_DEVICES": "0;touch {canary}"}, None, "CUDA_VISIBLE_DEVICES", LOCAL, None),
    ("cuda-word", ["run", "scripts/hello.py"], {"CUDA_VISIBLE_DEVICES": "abc"}, None, "CUDA_VISIBLE_DEVICES", LOCAL, None),
    ("cuda-empty-item", ["gpu-check"], {"CUDA_VISIBLE_DEVICES": "0,,1"}, None, "CUDA_VISIBLE_DEVICES", LOCAL, None),
    ("cuda-negative", ["train-david"], {"CUDA_VISIBLE_DEVICES": "-2"}, None, "CUDA_VISIBLE_DEVICES", LOCAL, None),
    ("cuda-empty-uuid", ["gpu-check"], {"CUDA_VISIBLE_DEVICES": "GPU-"}, None, "CUDA_VISIBLE_DEVICES", LOCAL, None),
    # trainer settings and modules
    ("train-impl-setting", ["train-hlb"], {"TRAIN_IMPL": "cuda"}, None, "TRAIN_IMPL", LOCAL, None),
    ("hlb-module-semicolon", ["train-hlb"], {"HLB_MODULE": "os;touch {canary}"}, None, "HLB_MODULE", LOCAL, None),
    ("hlb-module-double-dot", ["sync"], {"HLB_MODULE": "a..b"}, None, "HLB_MODULE", LOCAL, None),
    ("david-net-module-digit", ["train-david"], {"DAVID_NET_MODULE": "1abc"}, None, "DAVID_NET_MODULE", LOCAL, None),
    ("david-trainer-module-path", ["train-david"], {"DAVID_TRAINER_MODULE": "../x"}, None, "DAVID_TRAINER_MODULE", LOCAL, None),
    # flags
    ("impl-junk", ["train-hlb", "--impl", "junk"], {}, None, "--impl", LOCAL, None),
    ("synthetic-with-workspace-impl", ["train-hlb", "--impl", "workspace", "--synthetic"], {}, None, "--synthetic", LOCAL, None),
    ("seed-with-workspace-impl", ["train-david", "--impl", "workspace", "--seed", "1"], {}, None, "--seed", LOCAL, None),
    ("subset-with-workspace-impl", ["train-david", "--impl", "workspace", "--subset", "5"], {}, None, "--subset", LOCAL, None),
    ("subset-0", ["train-hlb", "--impl", "builtin", "--subset", "0"], {}, None, "--subset", LOCAL, None),
    ("subset-too-big", ["train-david", "--impl", "builtin", "--subset", "50001"], {}, None, "--subset", LOCAL, None),
    ("seed-negative", ["train-hlb", "--impl", "builtin", "--seed", "-1"], {}, None, "--seed", LOCAL, None),
    ("seed-float", ["train-hlb", "--impl", "builtin", "--seed", "1e3"], {}, None, "--seed", LOCAL, None),
    ("seed-too-big", ["train-david", "--impl", "builtin", "--seed", "2147483648"], {}, None, "--seed", LOCAL, None),
    ("epochs-overflow", ["train-hlb", "--epochs", "1e999"], {}, None, "--epochs", LOCAL, None),
    ("epochs-too-many", ["train-hlb", "--epochs", "10001"], {}, None, "--epochs", LOCAL, None),
    ("epochs-blank", ["train-hlb", "--epochs", " "], {}, None, "--epochs", LOCAL, None),
    ("epochs-injection", ["train-hlb", "--epochs", "1;touch {canary}"], {}, None, "--epochs", LOCAL, None),
    ("david-epochs-0", ["train-david", "--epochs", "0"], {}, None, "--epochs", LOCAL, None),
    ("batch-size-float", ["train-david", "--batch-size", "1.0"], {}, None, "--batch-size", LOCAL, None),
    ("batch-size-hex", ["train-hlb", "--impl", "builtin", "--batch-size", "0x10"], {}, None, "--batch-size", LOCAL, None),
    # run ids
    ("logs-run-dotdot", ["logs", "--run", "../x"], {}, None, "--run", LOCAL, None),
    ("logs-run-slash", ["logs", "--follow", "--run", "a/b"], {}, None, "--run", LOCAL, None),
    ("kill-run-space", ["kill", "--run", "a b"], {}, None, "--run", LOCAL, None),
    ("kill-run-subshell", ["kill", "--run", "$(touch {canary})"], {}, None, "--run", LOCAL, None),
    ("pull-logs-run-hidden", ["pull-logs", "--run", ".hidden"], {}, None, "--run", LOCAL, None),
    # scripts, modules, --args
    ("script-empty", ["run", ""], {}, None, "not a file path", LOCAL, None),
    ("script-option", ["run", "--target=-x"], {}, None, "not a file path", LOCAL, None),
    ("script-directory", ["run", "scripts"], {}, None, "does not exist", LOCAL, None),
    ("script-symlink-out", ["run", "evil_link.py"], {}, None, "outside the workspace", LOCAL, "evil_link"),
    ("module-empty", ["run", "--module", ""], {}, None, "--module", LOCAL, None),
    ("module-space", ["run", "--module", "a b"], {}, None, "--module", LOCAL, None),
    ("module-path", ["run", "--module", "os.path/.."], {}, None, "--module", LOCAL, None),
    ("args-unbalanced-double", ["run", "scripts/hello.py", "--args", 'a "b'], {}, None, "--args", LOCAL, None),
    ("args-trailing-backslash", ["run", "scripts/hello.py", "--args", "x\\"], {}, None, "--args", LOCAL, None),
    # .env files and the control directory
    ("dotenv-unterminated", ["sync"], {}, "REMOTE_HOST=l1\nMY_TOKEN=\"unterminated\n", "line 2", LOCAL, None),
    ("dotenv-no-key", ["sync"], {}, "=value\n", "line 1", LOCAL, None),
    ("dotenv-space-in-key", ["gpu-check"], {}, "MY TOKEN=1\n", "line 1", LOCAL, None),
    ("dotenv-not-utf8", ["sync"], {}, b"MY_TOKEN=\xff\xfe\n", "UTF-8", LOCAL, None),
    ("env-file-missing", ["sync"], {"REMOTE_RUN_ENV_FILE": "{ws}/nope.env"}, None, "does not exist", LOCAL, None),
    ("env-file-is-a-directory", ["--env-file", "{ws}/scripts", "sync"], {}, None, "does not exist", LOCAL, "remote-run"),
    ("control-dir-world-writable", ["sync"], {"REMOTE_RUN_CONTROL_DIR": "{ws}/../cm777"}, None, "chmod 700", LOCAL, "cm777"),
    # SkyPilot tasks: validated before anything runs
    ("sky-down-target", ["sky-down", "--target", "junk"], {}, None, "--target", LOCAL, None),
    ("sky-exec-target", ["sky-exec", "scripts/hello.py", "--target", "junk"], {}, None, "--target", LOCAL, None),
    # Inputs only the host can judge: refused before any run starts.
    ("host-cuda-no-such-gpu", ["run", "scripts/hello.py"], {"CUDA_VISIBLE_DEVICES": "7"}, None, "matches none", HOST, None),
    ("host-busy-gpu", ["run", "scripts/hello.py"], {}, None, "in use by another job", HOST, "gpu:busy"),
    ("host-no-driver", ["train-david", "--epochs", "1"], {}, None, "nvidia-smi is not installed", HOST, "gpu:absent"),
    ("host-python-missing", ["run", "scripts/hello.py"], {"REMOTE_PYTHON": "/nonexistent/python3"}, None, "REMOTE_PYTHON", HOST, None),
    ("host-kill-unknown-run", ["kill", "--run", "20990101T000000Z_nope"], {}, None, "run `inv sync` first", HOST, None),
    ("host-logs-no-dir", ["logs"], {}, None, "run `inv sync` first", HOST, None),
    ("host-remote-dir-is-a-file", ["sync"], {}, None, "not a directory", HOST, "remote-file"),
]


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


@pytest.mark.parametrize("name,args,env,dotenv,needle,where,setup", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_is_one_line_and_changes_nothing(sshd, fresh, gpu, name, args, env, dotenv, needle, where, setup):
    ws, remote = fresh
    names = {"remote": remote, "canary": CANARY, "ws": str(ws)}
    args = [fill(a, **names) for a in args]
    env = {"REMOTE_DIR": remote, **{k: fill(v, **names) for k, v in env.items()}}
    if dotenv is not None:
        data = dotenv if isinstance(dotenv, bytes) else fill(dotenv, **names).encode()
        (ws / ".env").write_bytes(data)
    program = "inv"
    if setup == "remote-run":
        program = "remote-run"
    elif setup == "evil_link":
        (ws / "evil_link.py").symlink_to("/etc/hostname")
    elif setup == "cm777":
        folder = ws.parent / "cm777"
        folder.mkdir()
        folder.chmod(0o777)
    elif setup == "remote-file":
        sshd.as_user(["sh", "-c", f"echo precious > {remote}"])
    elif setup and setup.startswith("gpu:"):
        gpu(setup[4:])
    mark = sshd.mark()
    done = cli(sshd, ws, *args, program=program, timeout=60, **env)
    line = one_line_error(done)
    assert needle in line, line
    assert not os.path.exists(CANARY)
    if where == LOCAL:
        assert sshd.count("Starting session:", mark) == 0, f"connected to the host for an input it could refuse locally: {line}"
        assert not remote_exists(sshd, remote), f"{remote} was created for an input refused with: {line}"
    else:
        assert not remote_exists(sshd, f"{remote}/runs"), f"a run was started for an input refused with: {line}"
        if setup == "remote-file":
            assert sshd.as_user(["cat", remote]).stdout == "precious\n"
        elif args[0] in ("kill", "logs", "status"):
            assert not remote_exists(sshd, remote), "a task that only looks at runs created REMOTE_DIR"


def test_the_table_is_large_and_covers_every_task():
    assert len(ROWS) >= 40 and len({row[0] for row in ROWS}) == len(ROWS)
    tasks = {a for row in ROWS for a in row[1] if not a.startswith("-") and a in
             {"sync", "bootstrap", "gpu-check", "train-hlb", "train-david", "run", "pull-logs", "clean", "logs", "status", "kill", "sky-down", "sky-exec"}}
    assert tasks >= {"sync", "bootstrap", "gpu-check", "train-hlb", "train-david", "run", "pull-logs", "clean", "logs", "status", "kill"}


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
        assert Path(remote, "scripts", "hello.py").is_file() and Path(remote, "runs").is_dir()
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
    done = cli(sshd, ws, "run", "scripts/echo_args.py", f"--args={shlex.join(values)}", REMOTE_DIR=remote, timeout=60)
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
@given(files=st.lists(st.tuples(st.one_of(NAME, LEADING_DASH), st.one_of(st.none(), NAME, LEADING_DASH), st.binary(max_size=64)),
                      min_size=1, max_size=6))
def test_fuzz_odd_file_names_sync_exactly(sshd, names_box, files):
    ws, remote = names_box
    shutil.rmtree(ws)
    ws.mkdir()
    (ws / "README.md").write_text("fuzz\n")
    for first, second, data in files:
        if second is None:
            if first in ("d", "README.md", "runs", "data"):  # "d" holds the nested ones; runs/ and data/ are never deleted remotely
                continue
            path = ws / first
        else:
            path = ws / "d" / first / second
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    done = cli(sshd, ws, "sync", REMOTE_DIR=remote, timeout=60)
    assert done.returncode == 0, done.stderr
    no_traceback(done)
    assert tree(Path(remote)) == tree(ws)
    assert not os.path.exists(CANARY)
