"""`inv init`'s .env and .gitignore, and how `inv doctor` reads a host's report: in-process, no network."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from remote_run import doctor, envfile, settings
from remote_run.errors import Failure, Kind
from remote_run.host import doctor as doctor_host
from remote_run.host import installer, owner
from remote_run.transport import Host


@pytest.fixture
def ws(tmp_path, monkeypatch):
    ws = tmp_path / "My Project"
    ws.mkdir()
    monkeypatch.chdir(ws)
    return ws


# ------------------------------------------------------------------------------ the .env text

def test_a_new_env_has_the_header_and_the_four_keys_only(ws):
    values = {"REMOTE_HOST": "l1", "WORKSPACE": ".", "REMOTE_DIR": "/tmp/my_project_remote",
              "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cu124"}
    text = envfile.text(values, None)
    assert text == envfile.HEADER + "".join(f"{k}={v}\n" for k, v in values.items())
    assert envfile.read_back(text) == values


def test_updating_keeps_every_other_line_and_comments_out_what_cannot_be_read():
    old = "# keep\nMY_TOKEN='tok s3cret'\n\nexport REMOTE_HOST=old # was\nnot a line\nREMOTE_HOST=dup\nLAST=1"
    text = envfile.text({"REMOTE_HOST": "l2", "REMOTE_DIR": "/tmp/x"}, old)
    assert text == ("# keep\nMY_TOKEN='tok s3cret'\n\nREMOTE_HOST=l2\n"
                    "# (unreadable, commented out by inv init) not a line\n"
                    "LAST=1\nREMOTE_DIR=/tmp/x\n")
    assert envfile.read_back(text) == {"MY_TOKEN": "tok s3cret", "REMOTE_HOST": "l2", "LAST": "1",
                                       "REMOTE_DIR": "/tmp/x"}


@hsettings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcXYZ019 ._+@%=,/:-~$#\"\\{}", min_size=1, max_size=30))
@example("${}")  # python-dotenv expands ${...} even inside single quotes
@example("a b/${HOME}")
def test_any_value_init_writes_reads_back_exactly(value):
    try:
        line = envfile.quoted("WORKSPACE", value)
    except Failure:
        assert any(ch in value for ch in "'\\\n") or "${" in value
        return
    assert envfile.read_back(f"WORKSPACE={line}\n") == {"WORKSPACE": value}


def test_values_are_checked_by_the_settings_parsers_and_credentials_are_refused(ws):
    path = ws / ".env"
    checked = envfile.check({"REMOTE_HOST": "l1", "WORKSPACE": "."}, path, environ={})
    assert checked.remote_dir == "/tmp/my_project_remote"
    for values, needle in [({"REMOTE_HOST": "l1;id"}, "REMOTE_HOST"), ({"REMOTE_DIR": "tmp/x"}, "REMOTE_DIR"),
                           ({"WORKSPACE": "/nonexistent/ws"}, "WORKSPACE"),
                           ({"TORCH_INDEX_URL": "ftp://x"}, "TORCH_INDEX_URL"),
                           ({"TORCH_INDEX_URL": "https://me:tok@pkgs.example.com/simple"}, "credentials")]:
        with pytest.raises(Failure) as info:
            envfile.check(values, path, environ={})
        assert needle in info.value.problem and info.value.kind is Kind.USAGE


def test_a_relative_workspace_is_written_relative_to_the_env_file(ws, tmp_path):
    (ws / "sub").mkdir()
    assert envfile.file_workspace("sub", ws / ".env") == "sub"
    assert envfile.file_workspace("sub", tmp_path / "elsewhere" / ".env") == str(ws / "sub")
    assert envfile.file_workspace("/abs", tmp_path / "elsewhere" / ".env") == "/abs"


def test_a_new_env_is_private_and_an_old_one_keeps_its_mode(ws):
    path = ws / ".env"
    envfile.write(path, "A=1\n")
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o640)
    envfile.write(path, "A=2\n")
    assert path.read_text() == "A=2\n" and path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in ws.iterdir()) == [".env"]


def test_gitignore_gets_what_it_lacks_once_and_is_never_created(ws, tmp_path):
    assert envfile.ignore(ws / ".env", ws) == [] and not (ws / ".gitignore").exists()
    (ws / ".gitignore").write_text("build/")
    assert envfile.ignore(ws / ".env", ws) == [f"added .env, .cluster_name_* to {ws / '.gitignore'}"]
    assert (ws / ".gitignore").read_text() == "build/\n.env\n.cluster_name_*\n"
    assert envfile.ignore(ws / ".env", ws) == []
    (ws / ".gitignore").write_text("/.env*\n.cluster_name_gpu\n")  # the tpu file is not covered
    assert envfile.ignore(ws / ".env", ws) == [f"added .cluster_name_* to {ws / '.gitignore'}"]
    other = tmp_path / "tools"
    other.mkdir()
    (other / ".gitignore").write_text("# tools\n")
    envfile.ignore(other / ".env", ws)  # the .env's folder gets .env, the workspace .cluster_name_*
    assert (other / ".gitignore").read_text() == "# tools\n.env\n"


def test_a_bad_answer_is_asked_again():
    out = io.StringIO()
    questions = envfile.Questions(ask=True, stdin=io.StringIO("relative\n\n"), stderr=out)

    def valid(value):
        if not value.startswith("/"):
            raise Failure(f"REMOTE_DIR={value!r} is not valid")

    assert questions.answer("REMOTE_DIR", "/tmp/default", valid) == "/tmp/default"
    assert out.getvalue().count("REMOTE_DIR [/tmp/default]: ") == 2
    assert "REMOTE_DIR='relative' is not valid" in out.getvalue()
    with pytest.raises(Failure, match="no answer"):
        envfile.Questions(ask=True, stdin=io.StringIO(""), stderr=out).answer("X", "", valid)


def test_ssh_aliases_follow_include_and_leave_patterns_out(tmp_path):
    ssh = tmp_path / ".ssh"
    (ssh / "conf.d").mkdir(parents=True)
    (ssh / "config").write_text("Host l1 gpu-*\n  HostName 10.0.0.1\nInclude conf.d/*\n"
                                "Host=l2\nMatch host x\nHost *\n  User me\n")
    (ssh / "conf.d" / "sky").write_text("Host rr-cluster !bad\n")
    assert doctor.ssh_aliases(tmp_path) == ["l1", "rr-cluster", "l2"]


# ------------------------------------------------------------------- reading the host's report

@pytest.mark.parametrize("cuda, url", [("12.4", "cu124"), ("12.5", "cu124"), ("12.2", "cu121"), ("13.1", "cu130"),
                                       ("11.4", None), ("", None)])
def test_the_suggested_index_is_the_newest_the_driver_runs(cuda, url):
    assert doctor.suggest_index(cuda) == (f"https://download.pytorch.org/whl/{url}" if url else None)
    assert doctor.cuda_tag("https://download.pytorch.org/whl/cu121") == (12, 1)
    assert doctor.cuda_tag("https://x/whl/cpu") == "cpu"


def host_report(**changes) -> dict:
    report = {"user": "me", "hostname": "gpubox", "os": "Debian", "seconds": 0.05,
              "rsync": {"path": "/usr/bin/rsync", "version": "rsync  version 3.2.7  protocol version 31"},
              "uv": {"path": None, "version": ""},
              "python": {"version": "3.11.2", "executable": "/usr/bin/python3", "venv": True, "ensurepip": True},
              "disk": {"where": "/tmp", "mount": "/", "free_bytes": 50e9},
              "remote_dir": {"state": "absent", "parent": "/tmp", "writable": True},
              "index": {"url": "https://pypi.org/simple", "source": "pip's default"},
              "indexes": [{"url": "https://pypi.org/simple", "label": "packages", "kind": "net", "host": "pypi.org",
                           "port": 443, "ok": True, "seconds": 0.01}],
              "gpu": {"state": "ok", "gpus": [{"index": 0, "name": "NVIDIA A100", "uuid": "GPU-a", "memory_used": 1,
                                               "memory_total": 81920, "utilization": 0, "processes": []}],
                      "chosen": [0], "busy": [], "go": True, "driver": "550.1", "cuda": "12.4"},
              "docker": {"path": None, "state": "missing"}}
    report.update(changes)
    return report


def statuses(report, **env) -> dict:
    s = settings.load(environ={"REMOTE_HOST": "box", "WORKSPACE": os.getcwd(), "TORCH_PACKAGES": "", **env})
    return {c.name: c for c in doctor.interpret(Host(s, None), report, elapsed=0.1, was_up=True)}


def test_a_good_report_is_all_ok_and_docker_absent_does_not_apply(ws):
    checks = statuses(host_report())
    assert {name: c.status for name, c in checks.items()} == {
        "connection": "ok", "rsync": "ok", "python": "ok", "uv": "ok", "disk": "ok", "REMOTE_DIR": "ok",
        "package index": "ok", "GPU": "ok", "docker": "skip"}
    assert checks["rsync"].text == "rsync 3.2.7 (protocol 31)"
    assert checks["GPU"].text == "1 × NVIDIA A100, driver 550.1, CUDA 12.4; GPU 0: 1/81920 MiB, 0 %, free"


@pytest.mark.parametrize("state, extra, needle", [
    ("foreign", {"owner": "bob", "mode": "0755", "me": "me"}, "someone else's (owner bob, mode 0755; you are me)"),
    ("writable", {"owner": "me", "mode": "0777"}, "can be written by other users (owner me, mode 0777)"),
    ("symlink", {"owner": "bob", "mode": "0777", "target": "/home/bob/x"}, "is a symlink to /home/bob/x"),
    ("home", {"home": "/tmp"}, "remote home directory"),
    ("unclaimed", {"owner": "me", "mode": "0755"}, "was not created by remote-run"),
    ("ancestor", {"above": "/scratch", "owner": "bob", "mode": "0775"},
     "is inside /scratch (owner bob, mode 0775), which another user can change"),
])
def test_every_remote_dir_that_is_not_ours_fails_with_the_fix(ws, state, extra, needle):
    check = statuses(host_report(remote_dir={"state": state, **extra}))["REMOTE_DIR"]
    assert check.status == "fail" and needle in check.text, check
    assert "choose another REMOTE_DIR" in check.fix or (state == "home" and "directory of its own" in check.fix)


def test_remote_dir_says_which_checkout_it_mirrors_and_warns_of_another(ws):
    from remote_run import checkout

    s = settings.load(environ={"REMOTE_HOST": "box", "WORKSPACE": os.getcwd()})
    ours = {"state": "ours", "owner": "me", "mode": "0700", "synced": True, "runs": 2,
            "checkout": {"id": checkout.own_id(s), "from": "laptop:/x", "synced": 0}}
    check = statuses(host_report(remote_dir=ours))["REMOTE_DIR"]
    assert check.status == "ok" and check.text.endswith("; it mirrors this checkout"), check
    theirs = dict(ours, checkout={"id": "c" * 32, "from": "laptop:/home/ann/proj", "synced": 0})
    check = statuses(host_report(remote_dir=theirs))["REMOTE_DIR"]
    assert check.status == "warn" and "mirrors another checkout (laptop:/home/ann/proj, synced " in check.text
    assert "--take-over" in check.fix


def test_an_index_out_of_reach_fails_only_when_bootstrap_needs_it(ws, tmp_path):
    down = [{"url": "https://pypi.org/simple", "label": "packages", "kind": "net", "host": "pypi.org", "port": 443,
             "ok": False, "error": "Name or service not known"}]
    assert statuses(host_report(indexes=down))["package index"].status == "warn"
    check = statuses(host_report(indexes=down), PIP_PACKAGES="numpy")["package index"]
    assert check.status == "fail" and "bootstrap installs numpy and would fail" in check.text
    assert "HTTPS_PROXY" in check.fix
    check = statuses(host_report(indexes=down), REMOTE_PYTHON="/usr/bin/python3", PIP_PACKAGES="numpy")["package index"]
    assert check.status == "warn"


def test_docker_with_and_without_its_gpu_runtime(ws):
    docker = {"path": "/usr/bin/docker", "version": "Docker version 27.3.1"}
    check = statuses(host_report(docker=dict(docker, state="ok", text="nvidia, runc")))["docker"]
    assert check.status == "ok"
    assert check.text == "Docker version 27.3.1; Docker on box can reach the GPUs (runtimes: nvidia, runc)"
    check = statuses(host_report(docker=dict(docker, state="noruntime", text="runc")))["docker"]
    assert check.status == "warn" and "NVIDIA Container Toolkit" in check.fix
    no_gpu = {"state": "missing", "gpus": [], "text": ""}
    check = statuses(host_report(docker=dict(docker, state="noruntime", text="runc"), gpu=no_gpu))["docker"]
    assert check.status == "ok"
    check = statuses(host_report(docker=dict(docker, state="error",
                                             text="Cannot connect to the Docker daemon")))["docker"]
    assert check.status == "warn" and "docker group" in check.fix


def test_the_host_side_reads_a_directory_s_state_without_changing_it(tmp_path):
    root = tmp_path / "remote"
    assert owner.examine(str(root))["state"] == "absent"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    assert owner.examine(str(root))["state"] == "empty"
    (root / "thesis.tex").write_text("x")
    assert owner.examine(str(root))["state"] == "unclaimed"
    (root / ".remote-run").mkdir()
    (root / ".remote-run" / "owner").write_text("created by remote-run\n")
    found = owner.examine(str(root))
    assert found["state"] == "ours" and found["mode"] == "0755"
    root.chmod(0o775)
    assert owner.examine(str(root))["state"] == "writable"
    (tmp_path / "link").symlink_to(root)
    assert owner.examine(str(tmp_path / "link"))["state"] == "symlink"
    assert sorted(p.name for p in root.iterdir()) == [".remote-run", "thesis.tex"]
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)  # anyone may write, and not sticky (unlike /tmp)
    found = owner.examine(str(open_folder / "remote"))
    assert found["state"] == "ancestor" and found["above"] == str(open_folder) and found["mode"] == "0777"
    open_folder.chmod(0o1777)
    assert owner.examine(str(open_folder / "remote"))["state"] == "absent"


def test_doctor_reports_only_a_uv_bootstrap_would_use(tmp_path, monkeypatch):
    old, new = tmp_path / "old" / "uv", tmp_path / "new" / "uv"
    for path, version in ((old, "0.4.30"), (new, "0.13.8")):
        path.parent.mkdir()
        path.write_text(f"#!/bin/sh\necho 'uv {version} (abc 2026-01-01)'\n")
        path.chmod(0o755)
    monkeypatch.setattr(installer, "UV_PLACES", (str(old), "/nonexistent/uv"))
    assert doctor_host.uv_check(str(tmp_path)) == {"path": None, "version": ""}  # bootstrap skips it
    tool = tmp_path / installer.TOOL / "bin"
    tool.mkdir(parents=True)
    new.rename(tool / "uv")
    assert doctor_host.uv_check(str(tmp_path)) == {"path": str(tool / "uv"), "version": "uv 0.13.8"}


@pytest.mark.parametrize("state,text", [("noruntime", "runc"), ("error", "Cannot connect to the Docker daemon"),
                                        ("missing", "")])
def test_docker_that_cannot_reach_the_gpus_fails_when_runs_start_containers(ws, state, text):
    found = {"path": "/usr/bin/docker" if state != "missing" else None, "version": "Docker version 27.3.1",
             "state": state, "text": text}
    checks = statuses(host_report(docker=found), RUN_ENVIRONMENT="docker")
    assert checks["docker"].status == "fail" and checks["docker"].fix
    assert checks["docker"].text.endswith("but runs start containers (RUN_ENVIRONMENT=docker)")
    assert checks["python"].status == "ok" and "no venv is built" in checks["python"].text
    assert checks["uv"].status == "skip" and "RUN_ENVIRONMENT=docker" in checks["uv"].text
    # no GPU either: still a failure, the run's containers need one
    no_gpu = {"state": "missing", "gpus": [], "text": ""}
    assert statuses(host_report(docker=found, gpu=no_gpu), RUN_ENVIRONMENT="docker")["docker"].status == "fail"
    ok = dict(found, path="/usr/bin/docker", state="ok", text="nvidia, runc")
    assert statuses(host_report(docker=ok), RUN_ENVIRONMENT="docker")["docker"].status == "ok"
