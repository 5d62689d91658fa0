"""The project's own environment in-process: what the workspace asks for (remote_run.environment),
the stamp a warm run compares, the choice of extras and groups, the plan the host carries out
(remote_run.host.installer), its one-line reasons, and the host's trust handed to uv whichever
index the project names."""

from __future__ import annotations

import pytest

from remote_run import environment, settings
from remote_run.errors import Failure
from remote_run.host import installer
from remote_run.options import RunOptions
from remote_run.preflight import Preflight, plan_bootstrap
from remote_run.records import hints

PYPROJECT = """\
[project]
name = "rrproj"
version = "0.1"
requires-python = ">=3.10"
dependencies = ["numpy>=1"]

[project.optional-dependencies]
cpu = ["torch==2.10"]
gpu = ["torch==2.10", "triton"]

[dependency-groups]
dev = ["pytest"]

[[tool.uv.index]]
name = "pytorch-cu128"
url = "https://download.pytorch.org/whl/cu128"
explicit = true
"""


def load(ws, **env):
    return settings.load(environ={"WORKSPACE": str(ws), "REMOTE_HOST": "l1", "REMOTE_DIR": "/tmp/rrt_env", **env})


@pytest.fixture
def ws(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "uv.lock").write_text('version = 1\n[[package]]\nname = "torch"\nversion = "2.10.0"\n')
    return tmp_path


def test_the_workspace_says_what_it_is(ws):
    project = environment.read_project(ws, extras=("gpu",))
    assert project.kind == "lock" and project.extras == ("cpu", "gpu") and project.groups == ("dev",)
    assert project.indexes == ("https://download.pytorch.org/whl/cu128",)
    assert project.python == {"wanted": ">=3.10", "by": "requires-python in pyproject.toml"}
    assert ("torch==2.10", "pyproject.toml's gpu extra") in project.pins("torch")
    (ws / ".python-version").write_text("3.10\n")
    assert environment.read_project(ws).python == {"wanted": "3.10", "by": ".python-version"}
    (ws / "uv.lock").unlink()
    assert environment.read_project(ws).kind == "pyproject"
    (ws / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")  # no [project]: not a project
    assert environment.read_project(ws).kind == ""
    (ws / "requirements.txt").write_text("# pins\ntorch==2.10  # cu121\n-r other.txt\n")
    project = environment.read_project(ws)
    assert project.kind == "requirements" and project.pins("torch") == [("torch==2.10", "requirements.txt")]


def test_the_stamp_covers_the_project_files_and_the_choice(ws):
    s = load(ws)
    base = environment.stamp(s)
    assert environment.stamp(s) == base
    (ws / "scripts.py").write_text("print(1)\n")  # code is not the environment
    assert environment.stamp(s) == base
    seen = {base}
    for change in (lambda: (ws / "uv.lock").write_text("version = 1\n"),
                   lambda: (ws / "pyproject.toml").write_text(PYPROJECT + "\n# edited\n"),
                   lambda: (ws / ".python-version").write_text("3.11\n"),
                   lambda: (ws / "requirements.txt").write_text("numpy\n")):
        change()
        seen.add(environment.stamp(s))
    for choice in (environment.Choice(extras=("gpu",)), environment.Choice(groups=("dev",)),
                   environment.Choice(frozen=True)):
        seen.add(environment.stamp(s, choice))
    seen.add(environment.stamp(load(ws, BOOTSTRAP_PYTHON_DOWNLOADS="automatic")))
    assert len(seen) == 9


def test_flags_replace_the_settings_and_names_are_checked_against_pyproject(ws):
    s = load(ws, BOOTSTRAP_EXTRAS="cpu", BOOTSTRAP_GROUPS="dev")
    assert environment.choose(s) == environment.Choice(("cpu",), ("dev",), False)
    assert environment.choose(s, extras=("gpu",), frozen=True) == environment.Choice(("gpu",), ("dev",), True)
    with pytest.raises(Failure) as caught:
        environment.choose(s, extras=("tpu",))
    assert "has no extra tpu (it has: cpu, gpu)" in caught.value.problem
    with pytest.raises(Failure) as caught:
        environment.choose(s, groups=("lint",))
    assert "has no dependency group lint (it has: dev)" in caught.value.problem
    with pytest.raises(Failure) as caught:
        environment.choose(s, extras=("gpu;rm",))
    assert "--extra='gpu;rm' is not valid" in caught.value.problem
    (ws / "uv.lock").unlink()
    with pytest.raises(Failure) as caught:
        environment.choose(s, frozen=True)
    assert "has no uv.lock" in caught.value.problem


def test_bad_settings_are_one_line_each(tmp_path):
    for key, value in (("BOOTSTRAP_EXTRAS", "gpu,$(id)"), ("BOOTSTRAP_GROUPS", "-dev"), ("BOOTSTRAP_FROZEN", "maybe"),
                       ("BOOTSTRAP_PYTHON_DOWNLOADS", "always")):
        with pytest.raises(Failure) as caught:
            load(tmp_path, **{key: value})
        assert caught.value.problem.startswith(key), caught.value.problem


def test_the_plan_carries_extras_groups_and_frozen_from_the_steps_and_the_run(ws):
    s = load(ws)
    planned = plan_bootstrap(Preflight(), s, extra=("gpu",), group=("dev",))
    assert (planned.extras, planned.groups, planned.frozen) == (("gpu",), ("dev",), False)
    options = RunOptions(extra=("gpu",), frozen=True).check(s)
    run = planned.for_run(options)
    assert (run.extras, run.groups, run.frozen) == (("gpu",), ("dev",), True)
    with pytest.raises(Failure):
        plan_bootstrap(Preflight(), s, extra=("tpu",))
    # `inv rerun` gives them again.
    assert RunOptions(extra=("gpu",), group=("dev",), frozen=True).invocation(("extra", "group", "frozen")) == {
        "extra": ["gpu"], "group": ["dev"], "frozen": True}


def test_torch_packages_leave_out_what_the_project_names_and_say_both_pins(tmp_path):
    (tmp_path / "requirements.txt").write_text("torch==2.10\nnumpy\n")
    s = load(tmp_path, TORCH_PACKAGES="torch==2.13.0 torchvision")
    payload = environment.bootstrap_payload(s, False, False)
    assert payload["torch"] == [] and payload["project"]["kind"] == "requirements"
    assert environment.notes(s) == ["torch: the project names torch==2.10 (requirements.txt), "
                                    "TORCH_PACKAGES in the environment torch==2.13.0; installing the project's",
                                    "TORCH_PACKAGES in the environment torchvision left out too: they must match "
                                    "the project's torch; add them to the project if it needs them"]
    assert payload["origins"]["torch"] == [["torch==2.13.0", "TORCH_PACKAGES in the environment"],
                                           ["torch==2.10", "requirements.txt"]]
    (tmp_path / "requirements.txt").write_text("numpy\ntorchvision\n")  # a companion alone: only it is the project's
    assert environment.bootstrap_payload(s, False, False)["torch"] == ["torch==2.13.0"]
    (tmp_path / "requirements.txt").write_text("numpy\n")
    assert environment.bootstrap_payload(s, False, False)["torch"] == ["torch==2.13.0", "torchvision"]
    assert environment.notes(s) == []


def test_the_host_plans_the_project_and_requirements_by_kind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "requirements.txt").write_text("numpy\n")
    base = {"torch": ["torch"], "extra": ["rich"], "torch_index": "https://torch/whl"}
    unlocked = {"kind": "pyproject", "extras": ["gpu", "viz"], "groups": ["dev"]}
    assert installer.plan({**base, "project": unlocked}) == [
        (["torch"], "https://torch/whl"),
        (["rich", "-e", ".[gpu,viz]", "--group", "dev", "-r", "requirements.txt"], "")]
    assert installer.plan({**base, "project": {"kind": "lock"}}) == [(["torch"], "https://torch/whl"), (["rich"], "")]
    assert installer.plan({**base, "project": {"kind": "requirements"}})[1] == (["rich", "-r", "requirements.txt"], "")
    assert installer.describe(["rich", "-e", ".[gpu]", "--group", "dev", "-r", "requirements.txt"]) == (
        "rich the project .[gpu] group dev, requirements.txt")


def test_a_sync_refused_is_one_line_naming_the_lock_or_the_python():
    stale = ["Resolved 3 packages in 2ms",
             "error: The lockfile at `uv.lock` needs to be updated, but `--locked` was provided. "
             "To update the lockfile, run `uv lock`."]
    line = installer.project_reason(stale, {"frozen": False})
    assert line.startswith("uv.lock is out of date with pyproject.toml; run `uv lock`") and "--frozen" in line
    python = ["error: No interpreter found for Python 3.7 in virtual environments, managed installations, "
              "or search path"]
    line = installer.project_reason(python, {"python": {"wanted": "3.7", "by": ".python-version"}})
    assert line.startswith("Python 3.7 is wanted (.python-version); the host has 3.")
    assert "BOOTSTRAP_PYTHON_DOWNLOADS=automatic" in line
    assert installer.project_reason(["error: something else"], {}) == ""


def test_python_version_is_met_by_the_host_s_own_or_named(monkeypatch):
    monkeypatch.setattr(installer, "python_version", lambda: "3.11.2")
    assert installer.python_wanted({"python": {"wanted": "3.11", "by": ".python-version"}}) == ""
    assert installer.python_wanted({"python": {"wanted": "3.11.2", "by": ".python-version"}}) == ""
    assert installer.python_wanted({"python": {"wanted": "3.11.9", "by": ".python-version"}}) == ""  # a patch level
    assert installer.python_wanted({"python": {"wanted": "3.1", "by": ".python-version"}}) == "3.1"
    assert installer.python_wanted({"python": {"wanted": "3.10", "by": ".python-version"}}) == "3.10"
    assert installer.python_wanted({"python": {"wanted": "3.1", "by": ".python-version"}}) == "3.1"
    assert installer.python_wanted({"python": {"wanted": ">=3.12", "by": "requires-python in pyproject.toml"}}) == ""


def test_a_conflict_names_where_each_pin_came_from():
    origins = {"torch": [["torch==2.13.0", "TORCH_PACKAGES (the default)"], ["torch==2.10", "requirements.txt"]],
               "numpy": [["numpy", "requirements.txt"]]}
    why = installer.reason(["  × No solution found when resolving dependencies:",
                            "  ╰─▶ Because you require torch==2.13.0 and torch==2.10, we can conclude that your "
                            "requirements are unsatisfiable."], "index x")
    assert why.startswith("the requirements conflict")
    assert installer.pins(why, origins) == (" (torch==2.13.0 from TORCH_PACKAGES (the default); "
                                            "torch==2.10 from requirements.txt)")
    assert installer.pins("the host's disk is full", origins) == ""


def test_uv_gets_the_host_s_cert_and_proxy_even_with_the_project_s_own_index(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    environ = {"HOME": str(tmp_path), "PIP_CONFIG_FILE": "/dev/null", "PIP_CERT": "/etc/corp-ca.pem",
               "PIP_PROXY": "http://proxy:3128"}
    found = installer.Sources(environ)
    assert found.own == str(tmp_path / "pyproject.toml") and found.args() == []  # the index is the project's
    assert found.env == {"SSL_CERT_FILE": "/etc/corp-ca.pem", "HTTPS_PROXY": "http://proxy:3128",
                         "HTTP_PROXY": "http://proxy:3128"}
    # Without pip's cert: the system's store (uv's own bundle lacks a company's CA); SSL_CERT_FILE is uv's to read.
    assert installer.trust({}, {}) == {"UV_NATIVE_TLS": "1"}
    assert installer.trust({"SSL_CERT_FILE": "/x.pem"}, {"cert": "/y.pem"}) == {}


def test_the_missing_torchvision_hint_names_torch_packages():
    [line] = hints("ModuleNotFoundError: No module named 'torchvision'\n")
    assert "TORCH_PACKAGES" in line and "PIP_PACKAGES" not in line
    [line] = hints("ModuleNotFoundError: No module named 'einops'\n")
    assert "PIP_PACKAGES" in line and "pyproject.toml" in line


@pytest.fixture
def tls_index(tmp_path):
    """An HTTPS server on 127.0.0.1 whose certificate only its own CA file trusts."""
    import shutil
    import socket
    import ssl
    import subprocess
    import threading

    if not shutil.which("openssl"):
        pytest.skip("needs openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            try:
                context.wrap_socket(connection, server_side=True).close()
            except (OSError, ssl.SSLError):
                connection.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"https://localhost:{listener.getsockname()[1]}/simple", str(cert)
    stop.set()
    listener.close()


def test_doctor_reaches_an_index_the_way_uv_will_with_the_host_s_cert(tls_index, monkeypatch, tmp_path):
    from remote_run.host import doctor as host_doctor

    url, cert = tls_index
    for name in ("SSL_CERT_FILE", "UV_NATIVE_TLS", "PIP_CERT", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("HOME", str(tmp_path))
    refused = host_doctor.reach({"url": url, "label": "project index"}, 5)
    assert not refused["ok"] and "not trusted" in refused["error"], refused
    monkeypatch.setenv("PIP_CERT", cert)  # pip's cert: what uv is given too
    assert host_doctor.reach({"url": url, "label": "project index"}, 5)["ok"]
    assert host_doctor.package_index({}, [url]) == {"url": url, "project": [url],
                                                    "source": "the project's [[tool.uv.index]]"}


LOCK = """\
version = 1
[[package]]
name = "rrproj"
version = "0.1"
source = { virtual = "." }
dependencies = [{ name = "numpy" }]
[package.optional-dependencies]
cpu = [{ name = "torch", version = "2.10.0+cpu" }]
gpu = [{ name = "torch", version = "2.10.0" }, { name = "timm", extra = ["hub"] }]
[package.dev-dependencies]
dev = [{ name = "pytest" }]
lint = [{ name = "ruff" }]
[[package]]
name = "torch"
version = "2.10.0"
dependencies = [{ name = "nvidia-cudnn" }]
[[package]]
name = "torch"
version = "2.10.0+cpu"
[[package]]
name = "timm"
version = "1.0"
[package.optional-dependencies]
hub = [{ name = "huggingface-hub" }]
[[package]]
name = "numpy"
version = "2.0"
[[package]]
name = "nvidia-cudnn"
version = "9"
[[package]]
name = "huggingface-hub"
version = "0.3"
[[package]]
name = "pytest"
version = "8"
[[package]]
name = "ruff"
version = "0.9"
"""


def test_a_locked_project_names_what_uv_sync_installs_for_the_extras_and_groups_chosen(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "rrproj"\nversion = "0.1"\n'
                                             '[project.optional-dependencies]\ncpu = []\ngpu = []\n'
                                             '[dependency-groups]\ndev = []\nlint = []\n')
    (tmp_path / "uv.lock").write_text(LOCK)
    base = environment.read_project(tmp_path)
    assert sorted(base.names) == ["numpy", "pytest"]  # dev: uv sync's default group
    gpu = environment.read_project(tmp_path, extras=("gpu",), groups=("lint",))
    assert sorted(gpu.names) == ["huggingface-hub", "numpy", "nvidia-cudnn", "pytest", "ruff", "timm", "torch"]
    assert gpu.pins("torch") == [("torch==2.10.0", "uv.lock")]
    assert environment.read_project(tmp_path, extras=("cpu",)).pins("torch") == [("torch==2.10.0+cpu", "uv.lock")]
    # Without torch in what is installed, TORCH_PACKAGES goes on top; with it, the lock's torch is used.
    s = load(tmp_path, TORCH_PACKAGES="torch torchvision")
    assert environment.bootstrap_payload(s, False, False)["torch"] == ["torch", "torchvision"]
    chosen = environment.Choice(extras=("gpu",))
    assert environment.bootstrap_payload(s, False, False, chosen)["torch"] == []


def test_doctor_says_when_the_host_s_python_or_installer_cannot_build_the_project(tmp_path, monkeypatch):
    from test_init import host_report, statuses

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "rrproj"\nversion = "0.1"\n')
    (tmp_path / ".python-version").write_text("3.10\n")
    check = statuses(host_report())["python"]
    assert check.status == "warn" and ".python-version wants 3.10" in check.text, check
    assert "BOOTSTRAP_PYTHON_DOWNLOADS=automatic" in check.fix
    assert statuses(host_report(), BOOTSTRAP_PYTHON_DOWNLOADS="automatic")["python"].status == "ok"
    (tmp_path / ".python-version").write_text("3.11.9\n")  # the host's 3.11.2 is that release
    assert statuses(host_report())["python"].status == "ok"
    (tmp_path / "uv.lock").write_text("version = 1\n")
    check = statuses(host_report(), BOOTSTRAP_INSTALLER="pip")["uv"]
    assert check.status == "fail" and "uv.lock" in check.text


def test_pip_packages_pointing_at_the_project_say_that_bootstrap_installs_it(tmp_path):
    for value in (".", "-e .", "-r pyproject.toml", "-r requirements.txt"):
        with pytest.raises(Failure) as caught:
            load(tmp_path, PIP_PACKAGES=value)
        assert caught.value.problem.startswith("PIP_PACKAGES=") and "installs the workspace's own" in caught.value.fix
