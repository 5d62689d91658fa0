"""Smaller frictions met running real repositories: the workspace trainers offline, the GPU count
in --gpus, and the hints."""

from __future__ import annotations

import subprocess
import sys

import pytest

from remote_run import gpu, records, settings, trainers
from remote_run.host import checks

OFFLINE = ("import urllib.error\n"
           "def download():\n"
           "    print('Downloading https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz to /tmp/cifar10/x.tar.gz')\n"
           "    raise urllib.error.URLError('[Errno -3] Temporary failure in name resolution')\n")
LAB = {  # stand-ins for CVlization's modules: torchvision's download fails inside them, as offline
    "lab/__init__.py": "",
    "lab/hlb.py": OFFLINE + "hyp = {'misc': {}}\n\ndef main():\n    try:\n        download()\n"
                            "    except OSError as e:\n        raise RuntimeError('loader failed') from e\n",
    "lab/nets.py": "class Network:\n    def __init__(self, net): pass\n    def to(self, device): return self\n"
                   "    def half(self): return self\n\ndef net(): return None\n",
    "lab/trainer.py": OFFLINE + "class DavidTrainer:\n    def __init__(self, **kw): pass\n"
                                "    def train(self): download()\n",
    "lab/broken.py": "hyp = {'misc': {}}\n\ndef main():\n    raise ValueError('a bug of its own')\n",
}


def runner_in(tmp_path, **environ):
    s = settings.load(environ={"WORKSPACE": str(tmp_path), "DAVID_NET_MODULE": "lab.nets",
                               "DAVID_TRAINER_MODULE": "lab.trainer", **environ})
    hlb = trainers.hlb(s, sys.executable, epochs="1", impl="workspace")
    david = trainers.david(s, sys.executable, epochs="1", batch_size="8", impl="workspace")
    for relative, text in {**LAB, **hlb.files, **david.files}.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    return hlb, david


def run(argv, cwd):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("which", ["hlb", "david"])
def test_an_offline_workspace_trainer_says_what_to_do_in_one_line(tmp_path, which):
    hlb, david = runner_in(tmp_path, HLB_MODULE="lab.hlb")
    done = run((hlb if which == "hlb" else david).argv, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.splitlines()
    module = "lab.hlb" if which == "hlb" else "lab.trainer"
    assert line.startswith(f"{module} cannot download its data set ([Errno -3] Temporary failure in name resolution)")
    assert "$REMOTE_RUN_DATA/cifar10" in line and "--impl builtin" in line and "Downloading URL to PATH" in line
    assert "Downloading https://" in done.stdout  # torchvision's own line, which names the path, stays


def test_a_workspace_trainer_failing_otherwise_keeps_its_traceback(tmp_path):
    hlb, _ = runner_in(tmp_path, HLB_MODULE="lab.broken")
    done = run(hlb.argv, tmp_path)
    assert done.returncode == 1 and "Traceback" in done.stderr and "ValueError: a bug of its own" in done.stderr
    assert "REMOTE_RUN_DATA" not in done.stderr


def test_an_offline_run_gets_a_hint_naming_the_shared_cache():
    log = "urllib.error.URLError: <urlopen error [Errno -3] Temporary failure in name resolution>\n"
    [hint] = records.hints(log)
    assert "([Errno -3] Temporary failure in name resolution)" in hint and "$REMOTE_RUN_DATA" in hint


def test_a_module_hiding_a_package_gets_the_right_fix_not_pip_packages():
    hidden = "ModuleNotFoundError: No module named 'tasks.data'; 'tasks' is not a package\n"
    assert records.hints(hidden) == ["the module 'tasks' hides the package tasks/ (a file tasks.py beside the folder, "
                                     "such as a tasks.py added for `inv`): rename or remove that file; remote-run "
                                     "needs none, use the `remote-run` program"]
    [ours] = records.hints("ModuleNotFoundError: No module named 'remote_run'\n")
    assert "tasks.py" in ours and "PIP_PACKAGES" not in ours
    [missing] = records.hints("ModuleNotFoundError: No module named 'einops'\n")
    assert missing.startswith("module 'einops' is missing") and "PIP_PACKAGES" in missing


GPU = {"index": 0, "name": "NVIDIA H100", "memory_used": 1, "memory_total": 81559, "utilization": 0,
       "processes": []}


@pytest.mark.parametrize("wait", [False, True])
def test_more_gpus_than_the_host_has_is_refused_naming_how_many_it_has(monkeypatch, wait):
    two = [dict(GPU), dict(GPU, index=1)]
    monkeypatch.setattr(checks.gpu_info, "answer", lambda procs, limit: ("ok", two, ""))
    spec = {"devices": "auto", "count": 8, "require": True, "allow_busy": True, "wait": wait, "limit": 5}
    report = checks.check_gpu(spec, None, drop_stale=False)
    assert report["state"] == "toofew" and not report["go"]  # waiting would never end
    found = gpu.refused(report, "l1", "auto", 5)
    assert found.line == ("l1 has 2 GPUs, fewer than --gpus 8 asks for; "
                          "pass --gpus 2 or fewer, or pick a host with more GPUs (REMOTE_HOST)")
    monkeypatch.setattr(checks.queue, "entries", lambda drop: [])
    monkeypatch.setattr(checks.queue, "own_folder_problem", lambda: None)
    assert checks.check_gpu(dict(spec, count=2), None)["go"]
