"""The workspace's pyproject.toml ([tool.remote-run]) and RUN_ENVIRONMENT, which it can set, and what
docker and none change: no venv, no environment check."""

import pytest

from remote_run import project, settings
from remote_run.errors import Failure, Kind


def load(ws, **environ):
    return settings.load(environ={"WORKSPACE": str(ws), **environ})


def test_no_pyproject_reads_as_empty_and_leaves_the_default(tmp_path):
    assert project.read_pyproject(tmp_path) == {}
    assert load(tmp_path).run_environment == "auto"


def test_pyproject_says_docker_and_env_file_environment_and_flags_win(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.remote-run]\nenvironment = "docker"\n')
    assert project.read_pyproject(tmp_path)["project"] == {"name": "x"}
    assert load(tmp_path).run_environment == "docker"
    assert load(tmp_path).describe()["RUN_ENVIRONMENT"] == "docker"
    assert load(tmp_path, RUN_ENVIRONMENT="auto").run_environment == "auto"
    (tmp_path / ".env").write_text("RUN_ENVIRONMENT=none\n")
    assert settings.load(environ={"WORKSPACE": str(tmp_path)},
                         env_file=str(tmp_path / ".env")).run_environment == "none"
    assert settings.load(environ={"WORKSPACE": str(tmp_path)}, env_file=str(tmp_path / ".env"),
                         overrides={"RUN_ENVIRONMENT": "docker"}).run_environment == "docker"


def test_a_pyproject_without_the_table_or_the_key_leaves_the_default(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.remote-run]\nother = 1\n[tool.ruff]\nline-length = 1\n')
    assert load(tmp_path).run_environment == "auto"


def test_a_malformed_pyproject_is_one_line_naming_the_file_and_line(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = \n')
    with pytest.raises(Failure) as info:
        load(tmp_path)
    assert info.value.problem == f"{tmp_path / 'pyproject.toml'} line 3: Invalid value"
    assert info.value.kind is Kind.USAGE and "\n" not in info.value.line and "toml" in info.value.fix.lower()


@pytest.mark.parametrize("text,needle", [
    ('[tool.remote-run]\nenvironment = "podman"\n', "environment = 'podman' is not valid"),
    ('[tool.remote-run]\nenvironment = 1\n', "environment = 1 is not valid"),
    ('[tool]\nremote-run = "docker"\n', "tool.remote-run is not a table"),
])
def test_a_bad_environment_in_pyproject_names_the_file_and_the_choices(tmp_path, text, needle):
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(Failure) as info:
        load(tmp_path)
    assert str(tmp_path / "pyproject.toml") in info.value.problem and needle in info.value.problem
    assert "\n" not in info.value.line


def test_pyproject_that_is_not_utf8_or_not_a_file(tmp_path):
    (tmp_path / "pyproject.toml").write_bytes(b'name = "\xff"\n')
    with pytest.raises(Failure, match="is not UTF-8 text"):
        project.read_pyproject(tmp_path)
    (tmp_path / "pyproject.toml").unlink()
    (tmp_path / "pyproject.toml").mkdir()
    with pytest.raises(Failure, match="is a directory"):
        project.read_pyproject(tmp_path)


def test_run_environment_from_env_is_checked(tmp_path):
    with pytest.raises(Failure) as info:
        load(tmp_path, RUN_ENVIRONMENT="Docker")
    assert info.value.problem == "RUN_ENVIRONMENT='Docker' is not valid"
    assert info.value.fix == "use `auto` or `docker` or `none`"


def host_of(tmp_path, **environ):
    from remote_run.transport import Host

    s = load(tmp_path, REMOTE_HOST="l1", **environ)
    return Host(s, None)


def test_docker_and_none_build_no_venv_and_check_no_environment(tmp_path):
    from remote_run import environment

    auto = host_of(tmp_path)
    assert auto.uses_venv and auto.python.endswith("/.venv/bin/python")
    assert environment.check(auto)["kind"] == "venv" and environment.skipped(auto) is None
    for name in ("docker", "none"):
        host = host_of(tmp_path, RUN_ENVIRONMENT=name)
        assert not host.uses_venv and host.python == "python3"
        assert environment.check(host) is None
        assert f"RUN_ENVIRONMENT={name}" in environment.skipped(host)
    own = "/opt/py/bin/python3"
    assert host_of(tmp_path, RUN_ENVIRONMENT="none", REMOTE_PYTHON=own).python == own
