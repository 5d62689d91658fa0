"""Settings: layering, defaults and one-line errors for bad values."""

from pathlib import Path

import pytest

from remote_run import settings
from remote_run.errors import Failure, Kind


def load(tmp_path, environ=None, env_text=None, **kw):
    if env_text is not None:
        (tmp_path / ".env").write_text(env_text)
    return settings.load(environ={"WORKSPACE": str(tmp_path), **(environ or {})}, **kw)


def test_defaults(tmp_path):
    ws = tmp_path / "CVlization"
    ws.mkdir()
    s = settings.load(environ={"WORKSPACE": str(ws)})
    assert s.host.is_local
    assert s.remote_dir == "/tmp/cvlization_remote"
    assert s.torch_index_url == "https://download.pytorch.org/whl/cu121"
    assert s.torch_packages == ("torch", "torchvision")
    assert s.cuda_visible_devices == "0"
    assert s.runs_dir == ws / "var" / "runs"
    assert s.train_impl == "builtin"


def test_env_file_is_below_the_environment_which_is_below_flags(tmp_path):
    s = load(tmp_path, environ={"REMOTE_HOST": "l2"}, env_text="REMOTE_HOST=l1\nREMOTE_DIR=/tmp/x_remote\n")
    assert s.host.spec == "l2"
    assert s.remote_dir == "/tmp/x_remote"
    s = load(tmp_path, environ={"REMOTE_HOST": "l2"}, overrides={"REMOTE_HOST": "l3"})
    assert s.host.spec == "l3"


def test_env_file_from_variable_and_flag(tmp_path):
    other = tmp_path / "other.env"
    other.write_text("REMOTE_HOST=box\n")
    assert load(tmp_path, environ={"REMOTE_RUN_ENV_FILE": str(other)}).host.spec == "box"
    assert load(tmp_path, env_file=str(other)).host.spec == "box"
    with pytest.raises(Failure, match="does not exist"):
        load(tmp_path, env_file=str(tmp_path / "missing.env"))


def test_relative_workspace_in_env_file_is_relative_to_the_file(tmp_path, monkeypatch):
    (tmp_path / "CVlization").mkdir()
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / ".env").write_text("WORKSPACE=../CVlization\n")
    monkeypatch.chdir(proj)
    s = settings.load(environ={})
    assert s.workspace == tmp_path / "CVlization"
    assert s.remote_dir == "/tmp/cvlization_remote"


def test_forwarded_env_reads_env_file_and_environment(tmp_path):
    s = load(tmp_path, environ={"REMOTE_ENV": "WANDB_API_KEY,HF_TOKEN", "HF_TOKEN": "hf-s3cret"},
             env_text="WANDB_API_KEY=wb-s3cret\n")
    assert s.forwarded_env() == {"WANDB_API_KEY": "wb-s3cret", "HF_TOKEN": "hf-s3cret"}
    assert "s3cret" not in repr(s) and "s3cret" not in repr(s.describe())


def test_forwarding_a_variable_without_value_is_an_error_before_anything_runs(tmp_path):
    with pytest.raises(Failure, match="NOPE has no value"):
        load(tmp_path, environ={"REMOTE_ENV": "NOPE"})


@pytest.mark.parametrize("host,user,name,port", [
    ("l1", None, "l1", None),
    ("me@gpu.example.org", "me", "gpu.example.org", None),
    ("me@10.0.0.2:2222", "me", "10.0.0.2", 2222),
])
def test_host_forms(host, user, name, port):
    h = settings.parse_host(host)
    assert (h.user, h.name, h.port) == (user, name, port)


BAD = [
    ("REMOTE_HOST", "-oProxyCommand=touch /tmp/x"),
    ("REMOTE_HOST", "l1; rm -rf /"),
    ("REMOTE_HOST", "me@host:99999"),
    ("REMOTE_DIR", "relative/dir"),
    ("REMOTE_DIR", "/"),
    ("REMOTE_DIR", "~/x"),
    ("REMOTE_DIR", "/tmp/../etc"),
    ("REMOTE_DIR", "/tmp/$(touch x)"),
    ("REMOTE_ENV", "BAD-NAME"),
    ("REMOTE_ENV", "1ABC"),
    ("TORCH_INDEX_URL", "not a url"),
    ("TORCH_PACKAGES", "torch;touch"),
    ("PIP_PACKAGES", "$(id)"),
    ("CUDA_VISIBLE_DEVICES", "0;1"),
    ("SYNC_EXCLUDE", "--delete-excluded"),
    ("REMOTE_PYTHON", "python3 -c evil"),
    ("TRAIN_IMPL", "other"),
    ("HLB_MODULE", "os; import x"),
    ("WORKSPACE", "/nonexistent/dir"),
]


@pytest.mark.parametrize("key,value", BAD, ids=[f"{k}={v}" for k, v in BAD])
def test_bad_values_are_one_line_errors_naming_key_and_value(tmp_path, key, value):
    with pytest.raises(Failure) as info:
        load(tmp_path, environ={key: value})
    assert info.value.kind is Kind.USAGE and "\n" not in info.value.message
    assert info.value.problem.startswith(f"{key}={value!r} is not valid")


def test_workspace_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(Failure, match="not a directory"):
        settings.load(environ={"WORKSPACE": str(f)})


def test_malformed_env_line_names_the_line(tmp_path):
    with pytest.raises(Failure) as info:
        load(tmp_path, env_text="REMOTE_HOST=l1\nthis is not an assignment\n")
    assert "line 2" in info.value.problem and "KEY=VALUE" in info.value.fix


@pytest.mark.parametrize("text,ok", [("11.5", 11.5), ("1", 1.0), (" 0.25", 0.25)])
def test_positive_float(text, ok):
    assert settings.positive_float("--epochs", text) == ok


@pytest.mark.parametrize("text", ["abc", "0", "-1", "nan", "inf", "-inf", "", "1e9"])
def test_positive_float_rejects(text):
    with pytest.raises(Failure, match="--epochs"):
        settings.positive_float("--epochs", text)


@pytest.mark.parametrize("text", ["0", "-3", "2.5", "x", "50001", "10" * 10])
def test_int_between_rejects(text):
    with pytest.raises(Failure, match="--batch-size"):
        settings.int_between("--batch-size", text, 1, 50000)


def test_the_readme_table_and_env_example_come_from_the_one_table():
    repo = Path(settings.__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text()
    assert settings.readme_table() in readme, (
        "README's configuration table is stale: paste `python -m remote_run.settings readme`")
    assert (repo / ".env.example").read_text() == settings.env_example(), (
        "regenerate with `python -m remote_run.settings env-example > .env.example`")
    for key in settings.KEYS:
        assert f"`{key.name}`" in readme and f"{key.name}=" in settings.env_example()


def test_describe_names_every_key_with_plain_values(tmp_path):
    s = load(tmp_path, environ={"REMOTE_ENV": "TOKEN", "TOKEN": "tok-s3cret"})
    described = s.describe()
    assert list(described) == [key.name for key in settings.KEYS]
    assert described["REMOTE_HOST"] == "local" and described["REMOTE_ENV"] == ["TOKEN"]
    assert described["RUNS_DIR"] == str(tmp_path / "var" / "runs")
    assert "tok-s3cret" not in repr(described)


def test_former_environment_only_knobs_are_settings_read_from_the_env_file(tmp_path):
    s = load(tmp_path, env_text="REMOTE_RUN_CHECK_TIMEOUT=7.5\nREMOTE_RUN_KILL_GRACE=0.5\n"
                                "REMOTE_RUN_CONTROL_DIR=/tmp/rr-mine\n")
    assert (s.check_timeout, s.kill_grace, s.control_dir) == (7.5, 0.5, Path("/tmp/rr-mine"))
    assert load(tmp_path, environ={"REMOTE_RUN_CHECK_TIMEOUT": "2"}).check_timeout == 2.0  # the environment wins


def test_defaults_of_the_former_environment_knobs(tmp_path):
    import os

    s = load(tmp_path)
    assert (s.check_timeout, s.kill_grace, s.control_dir) == (60.0, 3.0, Path(f"/tmp/remote-run-{os.getuid()}"))


SETTINGS_ROWS = [row for row in __import__("support.badinput", fromlist=["ROWS"]).ROWS
                 if row.needle in {key.name for key in settings.KEYS} and row.env and not row.dotenv and not row.setup
                 and all("{" not in str(v) for v in row.env.values()) and row.where == "local"]


@pytest.mark.parametrize("row", SETTINGS_ROWS, ids=[row.id for row in SETTINGS_ROWS])
def test_every_settings_row_of_the_bad_input_table_is_refused_in_process(tmp_path, row):
    """The same rows the CLI tests drive end to end, here against settings.load alone."""
    (tmp_path / "README.md").write_text("the fixture workspace has one\n")
    environ = {"WORKSPACE": str(tmp_path), "REMOTE_HOST": "local",
               **{k: v for k, v in row.env.items() if v is not None}}
    with pytest.raises(Failure) as info:
        settings.load(environ=environ)
    assert row.needle in info.value.line and "\n" not in info.value.message and info.value.code == row.status
