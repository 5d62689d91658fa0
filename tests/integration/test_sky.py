"""SkyPilot clusters: the remote-run program against a fake `sky` (tests/fake_sky/sky), which
records every command line it is given. No network, no cloud, no SkyPilot API server."""

import dataclasses
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Context
from support.cli import one_line_error as cli_error

from remote_run import pipeline, trainers
from remote_run import session as session_mod
from remote_run import settings as settings_mod
from remote_run.errors import Failure, Kind
from remote_run.runner_files import template
from remote_run.sky import backend, names
from remote_run.sky import cli as sky_cli

FAKE = Path(__file__).resolve().parents[1] / "support" / "fake_sky"
GPU = "cifar-h100x1-alice"  # <workspace name>-<accelerator>-<user>
TPU = "cifar-tpu-v6e-1-alice"
PYPROJECT = """\
[project]
name = "cifar"
version = "0"
[project.optional-dependencies]
gpu = ["torch"]
tpu = ["torch"]
[dependency-groups]
dev = ["pytest"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sky:
    """A workspace named `cifar`, the fake `sky` first on PATH, and what it was asked to do."""

    def __init__(self, root: Path):
        self.root = root
        self.workspace = root / "cifar"
        (self.workspace / "scripts").mkdir(parents=True)
        (self.workspace / "tests").mkdir()
        (self.workspace / "pyproject.toml").write_text(PYPROJECT)
        (self.workspace / "scripts" / "bench.py").write_text("print('bench')\n")
        (self.workspace / "tests" / "test_a.py").write_text("def test_a():\n    pass\n")
        self.log = root / "sky-calls.jsonl"
        self.state_file = root / "sky-state.json"
        self.env = dict(
            os.environ,
            PATH=os.pathsep.join([str(FAKE), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            HOME=str(root / "home"),
            XDG_CACHE_HOME=str(root / "home" / ".cache"),
            SKYPILOT_API_SERVER_LOCAL_PORT=str(free_port()),
            FAKE_SKY_LOG=str(self.log),
            FAKE_SKY_STATE=str(self.state_file),
            USER="alice",
            LOGNAME="alice",
        )

    @property
    def state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    @state.setter
    def state(self, clusters: dict) -> None:
        self.state_file.write_text(json.dumps(clusters))

    def calls(self) -> list:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def command(self, *args):
        return [sys.executable, "-m", "remote_run", *args]

    def run(self, *args, **env) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), cwd=self.workspace, env={**self.env, **env}, capture_output=True,
                              text=True, timeout=60)

    def name_file(self, target="gpu") -> Path:
        return self.workspace / f".cluster_name_{target}"

    def records(self) -> list:
        return [json.loads(p.read_text()) for p in sorted((self.workspace / "var" / "runs").glob("*/result.json"))]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    env = Sky(tmp_path)
    (tmp_path / "home").mkdir(exist_ok=True)
    for key in ("PATH", "HOME", "XDG_CACHE_HOME", "SKYPILOT_API_SERVER_LOCAL_PORT", "FAKE_SKY_LOG", "FAKE_SKY_STATE",
                "USER", "LOGNAME"):
        monkeypatch.setenv(key, env.env[key])
    return env


def one_line_error(result, *fragments):
    """A failure is a `remote-run: ...` line on stderr, no traceback, exit status not 0."""
    line = cli_error(result)
    for fragment in fragments:
        assert fragment in line, line
    return line


def launched_yaml(call) -> Path:
    assert call[0] == "launch"
    return Path(call[-1])


# --- sky-up ---------------------------------------------------------------------------------

def test_sky_up_launches_and_writes_the_name_file_after_success(fake):
    result = fake.run("sky-up", "--accel", "H100:1")
    assert result.returncode == 0, result.stderr
    [call] = fake.calls()
    yaml_path = launched_yaml(call)
    assert call == ["launch", "-c", GPU, "-y", "--gpus", "H100:1", "-i", "30", "--down", str(yaml_path)]
    assert yaml_path == fake.root / "home" / ".cache" / "remote-run" / "sky" / GPU / "task.yaml"
    assert fake.workspace not in yaml_path.parents
    assert fake.name_file().read_text() == GPU + "\n"
    assert "Cluster launched" in result.stdout  # streamed through


def test_sky_up_passes_every_option_through(fake):
    result = fake.run("sky-up", "--accel", "A100:8", "--name", "Exp_2.b", "--idle-minutes", "45", "--no-down",
                      "--infra", "gcp/us-central1", "--nodes", "2")
    assert result.returncode == 0, result.stderr
    [call] = fake.calls()
    name = "exp-2-b-a100x8-alice"
    assert call == ["launch", "-c", name, "-y", "--gpus", "A100:8", "-i", "45", "--infra", "gcp/us-central1",
                    "--num-nodes", "2", str(launched_yaml(call))]
    assert fake.name_file().read_text().strip() == name


BEYOND_ONE_BOX = ["slurm/hpc-1/gpu_a100", "k8s", "kubernetes/gke_proj_us-central1_train", "ssh/lab-pool"]


@pytest.mark.parametrize("infra", BEYOND_ONE_BOX)
def test_sky_up_passes_infra_to_sky_launch_unchanged(fake, infra):
    """Where users go when one box is not enough: Slurm (SkyPilot 0.12+), Kubernetes, SSH node pools."""
    result = fake.run("sky-up", "--accel", "H100:8", "--infra", infra)
    assert result.returncode == 0, result.stderr
    [call] = fake.calls()
    assert call[call.index("--infra") + 1] == infra and call.count("--infra") == 1
    assert f'  infra: "{infra}"' in launched_yaml(call).read_text()


@pytest.mark.parametrize("infra", ["slurm//gpu", "k8s/", "ssh/lab pool", "aws;id", "-oProxyCommand=x", ""])
def test_a_bad_infra_is_one_line_and_launches_nothing(fake, infra):
    result = fake.run("sky-up", "--accel", "H100:1", f"--infra={infra}")
    one_line_error(result, f"--infra {infra!r} is not valid", "slurm/CLUSTER/PARTITION", "ssh/NODE_POOL")
    assert fake.calls() == [] and not fake.name_file().exists()


def test_sky_up_for_a_tpu_writes_the_tpu_name_file(fake):
    result = fake.run("sky-up", "--accel", "tpu-v6e-1")
    assert result.returncode == 0, result.stderr
    [call] = fake.calls()
    assert call[:6] == ["launch", "-c", TPU, "-y", "--gpus", "tpu-v6e-1"]
    assert fake.name_file("tpu").read_text().strip() == TPU
    assert not fake.name_file("gpu").exists()
    assert "uv sync --extra tpu" in launched_yaml(call).read_text()


def test_a_failed_launch_writes_no_name_file(fake):
    result = fake.run("sky-up", "--accel", "H100:1", FAKE_SKY_LAUNCH="fail")
    one_line_error(result, "sky launch failed (exit 1)", "ResourcesUnavailableError", "not written")
    assert "Traceback" not in result.stderr
    assert not fake.name_file().exists()


def test_a_live_cluster_in_the_name_file_is_reused(fake):
    fake.name_file().write_text("older-cluster\n")
    fake.state = {"older-cluster": "UP"}
    result = fake.run("sky-up", "--accel", "H100:1")
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [["status", "older-cluster"]]
    assert "reusing cluster older-cluster (UP)" in result.stderr
    assert fake.name_file().read_text() == "older-cluster\n"


def test_a_stopped_cluster_is_brought_up_under_its_own_name(fake):
    fake.name_file().write_text("older-cluster\n")
    fake.state = {"older-cluster": "STOPPED"}
    result = fake.run("sky-up", "--accel", "H100:1")
    assert result.returncode == 0, result.stderr
    status, launch = fake.calls()
    assert status == ["status", "older-cluster"]
    assert launch[:3] == ["launch", "-c", "older-cluster"]
    assert fake.name_file().read_text() == "older-cluster\n"


def test_a_name_file_for_a_vanished_cluster_is_replaced_after_launch(fake):
    fake.name_file().write_text("gone-cluster\n")
    result = fake.run("sky-up", "--accel", "H100:1")
    assert result.returncode == 0, result.stderr
    status, launch = fake.calls()
    assert status == ["status", "gone-cluster"]
    assert launch[:3] == ["launch", "-c", GPU]
    assert fake.name_file().read_text() == GPU + "\n"


def test_replace_tears_the_old_cluster_down_and_launches_a_new_one(fake):
    fake.name_file().write_text("older-cluster\n")
    fake.state = {"older-cluster": "UP"}
    result = fake.run("sky-up", "--accel", "H100:1", "--replace")
    assert result.returncode == 0, result.stderr
    down, launch = fake.calls()
    assert down == ["down", "older-cluster", "-y"]
    assert launch[:3] == ["launch", "-c", GPU]
    assert fake.name_file().read_text() == GPU + "\n"
    assert fake.state == {GPU: "UP"}


@pytest.mark.parametrize("accel", ["H100:0", "H100:x", ";rm", "", "H100:1;ls", "-H100", "H100 :1", "tpu-", "tpu-v4",
                                   "A100:-1"])
def test_a_bad_accelerator_is_refused_in_one_line(accel):
    with pytest.raises(Failure) as caught:
        names.check_accelerator(accel)
    assert "\n" not in caught.value.message and "accel" in caught.value.problem and caught.value.kind is Kind.USAGE


@pytest.mark.parametrize("accel, target", [("H100:1", "gpu"), ("A100", "gpu"), ("L4:8", "gpu"), ("tpu-v4-8", "tpu"),
                                           ("tpu-v6e-1", "tpu"), ("tpu-v5litepod-16", "tpu")])
def test_accelerators_choose_the_target(accel, target):
    assert names.check_accelerator(accel) == (accel, target)


@pytest.mark.parametrize("name", ["a/b", "a;b", "a b", "", "-x", "x" * 41, "$(id)"])
def test_a_bad_experiment_name_is_refused_in_one_line(name):
    with pytest.raises(Failure) as caught:
        names.check_experiment(name)
    assert "\n" not in caught.value.message and caught.value.problem == f"--name {name!r} is not valid"
    assert caught.value.kind is Kind.USAGE


def test_sky_up_with_a_bad_accelerator_or_name_launches_nothing(fake):
    one_line_error(fake.run("sky-up", "--accel", "H100:0"), "--accel 'H100:0' is not valid")
    one_line_error(fake.run("sky-up", "--accel", "H100:1", "--name", "my exp;rm"), "--name 'my exp;rm' is not valid")
    one_line_error(fake.run("sky-up"), "give --accel")
    assert fake.calls() == []


def test_a_workspace_without_the_extra_is_refused_before_launching(fake):
    (fake.workspace / "pyproject.toml").write_text('[project]\nname = "cifar"\nversion = "0"\n')
    one_line_error(fake.run("sky-up", "--accel", "H100:1"), "no `gpu` extra")
    assert fake.calls() == []


def test_cluster_names_follow_skypilot_rules():
    assert names.cluster_name("cifar", "H100:1", "alice") == GPU
    assert names.cluster_name("2024 run", "L4:1", "Bob.Smith") == "run-2024-run-l4x1-bob-smith"
    long = names.cluster_name("e" * 40, "tpu-v5litepod-256", "a-very-long-user-name-indeed")
    assert len(long) <= names.MAX_NAME and names.CLUSTER_NAME.match(long)
    assert names.cluster_name("e" * 40 + "1", "H100:1", "u") != names.cluster_name("e" * 40 + "2", "H100:1", "u")


def test_job_output_loses_skypilots_colours_and_line_prefixes():
    text = ("\x1b[0m\u2699\ufe0e Job submitted, ID: 42\n"
            "\x1b[36m(task, pid=7)\x1b[0m epoch 1\n"
            "(head, rank=0, pid=12) RESULT_HLB ema_val_acc=0.94\n"
            "(worker1, rank=1, pid=3, ip=10.0.0.2) from a worker\n"
            "(setup pid=9) setting up\n")
    assert sky_cli.plain(text).splitlines()[1:] == ["epoch 1", "RESULT_HLB ema_val_acc=0.94", "from a worker",
                                                    "setting up"]
    assert sky_cli.job_id(text) == "42"


# --- sky-exec -------------------------------------------------------------------------------

@pytest.fixture
def gpu_cluster(fake):
    fake.name_file().write_text(GPU + "\n")
    fake.name_file("tpu").write_text(TPU + "\n")
    fake.state = {GPU: "UP", TPU: "UP"}
    return fake


def test_sky_exec_runs_the_playbook_command_on_the_gpu_cluster(gpu_cluster):
    fake = gpu_cluster
    result = fake.run("sky-exec", "scripts/bench.py", "--args", "--n 3 'two words'")
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [["exec", GPU, "--workdir", str(fake.workspace),
                             "export CUDA_VISIBLE_DEVICES=0; uv run --group dev --extra gpu python scripts/bench.py"
                             " --n 3 'two words'"]]


def test_sky_exec_on_the_tpu_cluster_has_no_cuda_prefix(gpu_cluster):
    fake = gpu_cluster
    result = fake.run("sky-exec", "scripts/bench.py", "--target", "tpu")
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [["exec", TPU, "--workdir", str(fake.workspace),
                             "uv run --extra tpu python scripts/bench.py"]]


def test_sky_exec_module_pytest(gpu_cluster):
    fake = gpu_cluster
    result = fake.run("sky-exec", "tests/test_a.py::test_a", "--module", "pytest", "--args", "-x -q",
                      CUDA_VISIBLE_DEVICES="1")
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [["exec", GPU, "--workdir", str(fake.workspace),
                             "export CUDA_VISIBLE_DEVICES=1; uv run --group dev --extra gpu"
                             " python -m pytest tests/test_a.py::test_a -x -q"]]


def test_sky_exec_quotes_what_reaches_the_remote_shell(gpu_cluster):
    fake = gpu_cluster
    (fake.workspace / "scripts" / "odd name.py").write_text("")
    result = fake.run("sky-exec", "scripts/odd name.py", "--args", "'$(touch /tmp/x)' ';' '`id`'")
    assert result.returncode == 0, result.stderr
    [[*_, command]] = fake.calls()
    assert command.endswith("python 'scripts/odd name.py' '$(touch /tmp/x)' ';' '`id`'")


def test_sky_exec_records_the_run_with_its_result(gpu_cluster):
    fake = gpu_cluster
    result = fake.run("sky-exec", "scripts/bench.py", FAKE_SKY_OUTPUT="epoch 1\nRESULT_BENCH seconds=1.5 ok=1",
                      FAKE_SKY_JOB_ID="12")
    assert result.returncode == 0, result.stderr
    [record] = fake.records()
    assert record["host"] == f"sky:{GPU}"
    assert record["outcome"] == "finished" and record["exit_status"] == 0
    assert record["result"] == {"name": "RESULT_BENCH", "metrics": {"seconds": 1.5, "ok": 1}}
    assert record["remote_log"] == f"sky logs {GPU} 12"
    assert "RESULT_BENCH seconds=1.5" in result.stderr  # the summary line


def test_a_failed_job_fails_the_task_with_skys_exit_status(gpu_cluster):
    fake = gpu_cluster
    result = fake.run("sky-exec", "scripts/bench.py", FAKE_SKY_EXIT="100", FAKE_SKY_OUTPUT="Traceback: boom")
    assert result.returncode == 100
    assert fake.records()[0]["outcome"] == "failed"


@pytest.mark.parametrize("content", [None, "", "\n"], ids=["missing", "empty", "blank"])
def test_sky_exec_without_a_cluster_name_says_run_sky_up_first(fake, content):
    if content is not None:
        fake.name_file().write_text(content)
    one_line_error(fake.run("sky-exec", "scripts/bench.py"), "inv sky-up --accel")
    assert fake.calls() == []


def test_sky_exec_on_a_cluster_that_is_gone_ends_with_one_line(fake):
    fake.name_file().write_text("gone-cluster\n")
    result = fake.run("sky-exec", "scripts/bench.py")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == ("remote-run: cluster gone-cluster (from .cluster_name_gpu) does not exist any more;"
                    " run `inv sky-up --accel …` again")


def test_sky_exec_refuses_a_script_outside_the_workspace(gpu_cluster):
    one_line_error(gpu_cluster.run("sky-exec", "../elsewhere.py"), "outside the workspace")
    assert gpu_cluster.calls() == []


@pytest.mark.parametrize("task", [["sky-up", "--accel", "H100:1"], ["sky-exec", "scripts/bench.py"], ["sky-status"],
                                  ["sky-down"]], ids=lambda t: t[0])
def test_without_sky_installed_every_task_says_how_to_install_it(gpu_cluster, task):
    result = gpu_cluster.run(*task, PATH="/usr/bin:/bin")
    one_line_error(result, "sky is not installed; pip install 'remote-run[sky]'")
    assert result.returncode == Kind.ENVIRONMENT.status


# --- Ctrl+C ---------------------------------------------------------------------------------

def interrupt_after(fake, marker: str, *args, **env):
    """Start the program in its own session, wait for ``marker`` in its output, then Ctrl+C it
    the way a terminal does (SIGINT to the whole foreground process group)."""
    proc = subprocess.Popen(fake.command(*args), cwd=fake.workspace, env={**fake.env, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            break
    else:
        proc.wait(10)
        pytest.fail(f"never saw {marker!r}: {''.join(seen)} {proc.stderr.read()}")
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, "".join(seen) + out, err


def test_ctrl_c_cancels_the_submitted_job(gpu_cluster):
    fake = gpu_cluster
    code, out, err = interrupt_after(fake, "still training", "sky-exec", "scripts/bench.py", FAKE_SKY_SLEEP="30",
                                     FAKE_SKY_JOB_ID="7")
    assert code == 130
    assert fake.calls()[-1] == ["cancel", GPU, "7", "-y"]
    assert f"cancelling job 7 on {GPU}" in err
    [record] = fake.records()
    assert record["outcome"] == "killed"


def test_ctrl_c_before_the_job_id_cancels_the_newest_unfinished_job(gpu_cluster):
    fake = gpu_cluster
    code, _, err = interrupt_after(fake, "still training", "sky-exec", "scripts/bench.py", FAKE_SKY_SLEEP="30",
                                   FAKE_SKY_JOB_ID="none", FAKE_SKY_QUEUE="4=SUCCEEDED,6=RUNNING,5=PENDING,3=CANCELLED")
    assert code == 130
    assert fake.calls()[-2:] == [["queue", GPU], ["cancel", GPU, "6", "-y"]]


def test_ctrl_c_with_detach_cancels_nothing(gpu_cluster):
    fake = gpu_cluster
    code, _, err = interrupt_after(fake, "Job submitted", "sky-exec", "scripts/bench.py", "--detach",
                                   FAKE_SKY_SLEEP="30")
    assert code == 130
    assert [call[0] for call in fake.calls()] == ["exec"]
    assert "-d" in fake.calls()[0]
    assert "nothing cancelled" in err


# --- sky-down, sky-status ------------------------------------------------------------------

def test_sky_down_tears_down_and_removes_the_name_file(gpu_cluster):
    fake = gpu_cluster
    result = fake.run("sky-down")
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [["down", GPU, "-y"]]
    assert not fake.name_file().exists() and fake.name_file("tpu").exists()


def test_sky_down_all(gpu_cluster):
    result = gpu_cluster.run("sky-down", "--target", "all")
    assert result.returncode == 0, result.stderr
    assert gpu_cluster.calls() == [["down", GPU, "-y"], ["down", TPU, "-y"]]
    assert gpu_cluster.state == {}


def test_sky_down_with_nothing_to_tear_down_says_so(fake):
    result = fake.run("sky-down")
    assert result.returncode == 0
    assert "nothing to tear down for gpu" in result.stderr
    assert fake.calls() == []


def test_a_failed_sky_down_keeps_the_name_file(gpu_cluster):
    one_line_error(gpu_cluster.run("sky-down", FAKE_SKY_DOWN="fail"), "sky down", "failed")
    assert gpu_cluster.name_file().exists()


def test_sky_status_shows_each_named_cluster(gpu_cluster):
    fake = gpu_cluster
    fake.state = {GPU: "STOPPED"}
    result = fake.run("sky-status")
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [["status", GPU, TPU]]
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines == [["target", "name", "status"], ["gpu", GPU, "STOPPED"], ["tpu", TPU, "not", "found"]]


def test_sky_status_without_clusters_says_how_to_start_one(fake):
    result = fake.run("sky-status")
    assert result.returncode == 0 and "inv sky-up --accel" in result.stderr
    assert fake.calls() == []


# --- train-hlb / train-david on a cluster ------------------------------------------------

def spec():
    files = {"scripts/run_hlb.py": "print('RESULT_HLB elapsed_seconds=3.5 ema_val_acc=0.94')\n",
             "scripts/cifar10_data.py": "# data\n"}
    return trainers.RunSpec(task="train-hlb",
                            argv=["/tmp/x_remote/.venv/bin/python", "scripts/run_hlb.py", "--epochs", "2"],
                            files=files, options={"impl": "builtin", "epochs": 2}, runner_path="scripts/run_hlb.py")


def on_cluster(settings, target, *, detach):
    """A trainer's RunSpec through the one pipeline, on the cluster backend, in-process."""
    sess = session_mod.Session(settings, Context())
    return pipeline.execute(backend.ClusterRuns(sess, target), settings, [spec()], detach=detach).code


def test_train_on_cluster_stages_a_copy_and_records_the_run(gpu_cluster, tmp_path, monkeypatch):
    fake = gpu_cluster
    for junk in (".git", ".venv", "var/runs/old", "__pycache__"):
        (fake.workspace / junk).mkdir(parents=True)
        (fake.workspace / junk / "junk").write_text("x")
    copy = tmp_path / "uploaded"
    monkeypatch.setenv("FAKE_SKY_WORKDIR_COPY", str(copy))
    monkeypatch.setenv("FAKE_SKY_OUTPUT", "epoch 2\nRESULT_HLB elapsed_seconds=3.5 ema_val_acc=0.94")
    s = settings_mod.load(overrides={"WORKSPACE": str(fake.workspace)})

    assert on_cluster(s, "gpu", detach=False) == 0

    [call] = fake.calls()
    stage = Path(call[3])
    assert call == ["exec", GPU, "--workdir", str(stage),
                    "export CUDA_VISIBLE_DEVICES=0; uv run --group dev --extra gpu python scripts/run_hlb.py"
                    " --epochs 2"]
    # staged outside the checkout, then removed
    assert fake.workspace not in stage.parents and not stage.exists()
    assert (copy / "scripts" / "run_hlb.py").read_text() == spec().files["scripts/run_hlb.py"]
    assert (copy / "scripts" / "bench.py").exists() and (copy / "pyproject.toml").exists()
    assert not any((copy / junk).exists() for junk in (".git", ".venv", "var", "__pycache__"))
    assert not (fake.workspace / "scripts" / "run_hlb.py").exists()
    [record] = fake.records()
    assert record["task"] == "train-hlb" and record["host"] == f"sky:{GPU}" and record["outcome"] == "finished"
    assert record["result"] == {"name": "RESULT_HLB", "metrics": {"elapsed_seconds": 3.5, "ema_val_acc": 0.94}}
    assert record["runner"] == spec().files["scripts/run_hlb.py"]
    # the staging copy went through the one rsync helper
    assert [c.split()[0] for c in record["commands"]] == ["rsync", "sky"]
    log = (fake.workspace / "var" / "runs" / record["run_id"] / "run.log").read_text()
    assert "RESULT_HLB elapsed_seconds=3.5" in log and "pid=4242" not in log


def test_train_on_cluster_detached(gpu_cluster):
    s = settings_mod.load(overrides={"WORKSPACE": str(gpu_cluster.workspace)})
    assert on_cluster(s, "tpu", detach=True) == 0
    [call] = gpu_cluster.calls()
    assert call[:2] == ["exec", TPU] and call[4] == "-d"
    assert call[5] == "uv run --extra tpu python scripts/run_hlb.py --epochs 2"
    assert gpu_cluster.records()[0]["outcome"] == "detached"


def test_a_trainers_flags_reach_the_cluster_shell_as_its_argv(gpu_cluster):
    """The runner's options are words of its argv: the one quoting place turns them into the
    command `sky exec` hands the cluster's shell, and that shell splits them back exactly."""
    s = settings_mod.load(overrides={"WORKSPACE": str(gpu_cluster.workspace), "HLB_MODULE": "lab.hlb"})
    spec = trainers.hlb(s, "python", epochs="0.5", impl="workspace")
    odd = dataclasses.replace(spec, argv=[*spec.argv, "--note", "two words; $(touch /tmp/canary) `id`"])
    sess = session_mod.Session(s, Context())
    assert pipeline.execute(backend.ClusterRuns(sess, "tpu"), s, [odd], detach=False).code == 0
    [call] = gpu_cluster.calls()
    assert call[-1] == "uv run --extra tpu python scripts/run_hlb.py --epochs 0.5 --hlb-module lab.hlb --note " \
                      "'two words; $(touch /tmp/canary) `id`'"
    assert shlex.split(call[-1]) == ["uv", "run", "--extra", "tpu", "python", *odd.argv[1:]]
    assert gpu_cluster.records()[0]["runner"] == template("hlb_workspace.py")


# --- the task YAML, checked by SkyPilot itself ----------------------------------------------

def test_every_rendered_task_yaml_is_valid_for_skypilot(fake):
    import sky as skypilot  # the `sky` extra; CI installs it

    cases = [
        (["--accel", "H100:1"], GPU, "H100", 1, 1),
        (["--accel", "tpu-v6e-1"], TPU, "tpu-v6e-1", 1, 1),
        (["--accel", "A100:8", "--name", "big", "--infra", "gcp/us-central1", "--nodes", "2"],
         "big-a100x8-alice", "A100", 8, 2),
        (["--accel", "L4:1", "--infra", "k8s", "--no-down"], "cifar-l4x1-alice", "L4", 1, 1),
        (["--accel", "H100:8", "--infra", "slurm/hpc-1/gpu_a100"], "cifar-h100x8-alice", "H100", 8, 1),
        (["--accel", "L4:2", "--infra", "ssh/lab-pool"], "cifar-l4x2-alice", "L4", 2, 1),
    ]
    for args, name, accel, count, nodes in cases:
        for target in ("gpu", "tpu"):
            fake.name_file(target).unlink(missing_ok=True)
        result = fake.run("sky-up", *args)
        assert result.returncode == 0, result.stderr
        task = skypilot.Task.from_yaml(str(launched_yaml(fake.calls()[-1])))
        assert task.name == name and task.num_nodes == nodes
        assert task.workdir == str(fake.workspace)
        [resources] = task.resources
        assert resources.accelerators == {accel: count}
        assert "uv sync" in task.setup and task.run is None


def test_train_hlb_with_sky_runs_the_rendered_trainer_on_the_cluster(gpu_cluster, monkeypatch):
    fake = gpu_cluster
    result = fake.run("train-hlb", "--sky", "gpu", "--epochs", "2.5", "--synthetic",
                      FAKE_SKY_OUTPUT="RESULT_HLB elapsed_seconds=2.9 train_epochs=2.5 ema_val_acc=0.94")
    assert result.returncode == 0, result.stderr
    [call] = fake.calls()
    assert call[:2] == ["exec", GPU]
    assert call[-1] == ("export CUDA_VISIBLE_DEVICES=0; uv run --group dev --extra gpu python scripts/run_hlb.py"
                        " --epochs 2.5 --synthetic")
    [record] = fake.records()
    assert record["task"] == "train-hlb"
    assert record["options"]["epochs"] == 2.5 and record["options"]["synthetic"] is True
    assert record["runner"] == template("hlb_cifar.py")  # unchanged: the options went as flags
    assert record["result"]["metrics"]["ema_val_acc"] == 0.94
    assert not (fake.workspace / ".remote-run").exists()  # no sync to REMOTE_HOST happened


def test_env_reaches_the_cluster_with_its_value_and_is_kept_in_the_record(gpu_cluster):
    fake = gpu_cluster
    result = fake.run("train-hlb", "--sky", "gpu", "--epochs", "1", "--synthetic", "--env", "EPOCHS=3",
                      FAKE_SKY_OUTPUT="RESULT_HLB elapsed_seconds=1.0 train_epochs=1 ema_val_acc=0.5")
    assert result.returncode == 0, result.stderr
    [call] = fake.calls()
    assert call[:6] == ["exec", GPU, "--workdir", call[3], "--env", "EPOCHS=3"]
    [record] = fake.records()
    assert record["env"] == {"EPOCHS": "3"} and record["invocation"]["args"]["env"] == ["EPOCHS=3"]


def test_forwarded_variables_are_named_not_valued_on_the_sky_command_line(gpu_cluster):
    fake = gpu_cluster
    (fake.workspace / ".env").write_text("WANDB_API_KEY=wb-s3cret\n")
    (fake.workspace / ".skyignore").write_text(".env\n")
    result = fake.run("sky-exec", "scripts/bench.py", REMOTE_ENV="WANDB_API_KEY")
    assert result.returncode == 0, result.stderr
    [call] = fake.calls()
    assert call[:6] == ["exec", GPU, "--workdir", str(fake.workspace), "--env", "WANDB_API_KEY"]
    assert "wb-s3cret" not in json.dumps(call) and "wb-s3cret" not in result.stdout + result.stderr
    assert f"env WANDB_API_KEY sha {hashlib.sha256(b'wb-s3cret').hexdigest()[:12]}" in result.stdout


def test_sky_exec_refuses_to_upload_env_files_that_sky_would_not_ignore(gpu_cluster):
    fake = gpu_cluster
    (fake.workspace / ".env").write_text("WANDB_API_KEY=wb-s3cret\n")
    (fake.workspace / ".env.example").write_text("WANDB_API_KEY=\n")
    one_line_error(fake.run("sky-exec", "scripts/bench.py"), ".env", ".gitignore")
    assert fake.calls() == []
    (fake.workspace / ".skyignore").write_text("# ours\n.env\n")
    assert fake.run("sky-exec", "scripts/bench.py").returncode == 0
    (fake.workspace / ".skyignore").unlink()
    subprocess.run(["git", "init", "-q", str(fake.workspace)], check=True)
    (fake.workspace / ".gitignore").write_text(".env\n")
    assert fake.run("sky-exec", "scripts/bench.py").returncode == 0


def test_sky_up_refuses_to_upload_env_files(fake):
    (fake.workspace / "sub").mkdir()
    (fake.workspace / "sub" / ".env.production").write_text("TOKEN=x\n")
    one_line_error(fake.run("sky-up", "--accel", "H100:1"), "sub/.env.production")
    assert fake.calls() == [] and not fake.name_file().exists()


# --- the project's own environment on a cluster ---------------------------------------------------

def test_sky_runs_the_project_with_the_extras_groups_and_lock_bootstrap_uses(gpu_cluster):
    fake = gpu_cluster
    (fake.workspace / "uv.lock").write_text("version = 1\n")
    chosen = {"BOOTSTRAP_EXTRAS": "tpu", "BOOTSTRAP_GROUPS": "dev", "BOOTSTRAP_FROZEN": "1"}
    result = fake.run("sky-exec", "scripts/bench.py", **chosen)
    assert result.returncode == 0, result.stderr
    assert fake.calls()[-1][-1] == ("export CUDA_VISIBLE_DEVICES=0; "
                                    "uv run --frozen --group dev --extra tpu python scripts/bench.py")
    # A run task's flags replace the settings, as they do for bootstrap on an SSH host.
    result = fake.run("train-hlb", "--sky", "gpu", "--extra", "gpu", "--epochs", "1", FAKE_SKY_OUTPUT="RESULT_HLB x=1")
    assert result.returncode == 0, result.stderr
    assert "uv run --locked --extra gpu python scripts/run_hlb.py" in fake.calls()[-1][-1]
    one_line_error(fake.run("train-hlb", "--sky", "gpu", "--extra", "cuda"), "has no extra cuda")
    # sky-up's setup syncs the same way.
    fake.name_file().unlink()
    fake.state = {}
    result = fake.run("sky-up", "--accel", "H100:1", **chosen)
    assert result.returncode == 0, result.stderr
    assert "uv sync --frozen --group dev --extra tpu" in launched_yaml(fake.calls()[-1]).read_text()
