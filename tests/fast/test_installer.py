"""The host side of bootstrap in-process (remote_run/installer.py): pip's configuration read as
pip itself reads it and handed to uv, the one-line reason for a failure from the installers' real
output, and the progress line on a terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from remote_run.host import installer
from remote_run.host.control import FINAL, PROGRESS
from remote_run.host.installer import Sources, pip_config, reason
from remote_run.steps import Progress

# pip's own reading of its configuration: the options `pip install` would use, for each
# environment given on stdin (one process for all: importing pip takes a while).
PIP_OPTIONS = """
import json, os, sys
from pip._internal.commands import create_command
answers = []
for environ in json.load(sys.stdin):
    os.environ.clear()
    os.environ.update(environ)
    options, _ = create_command("install").parse_args([])
    answers.append({"index_url": options.index_url, "extra": options.extra_index_urls, "links": options.find_links,
                    "no_index": options.no_index, "trusted": options.trusted_hosts, "constraints": options.constraints})
print(json.dumps(answers))
"""


def ours(conf: dict) -> dict:
    def words(key):
        return (conf.get(key) or "").split()
    return {"index_url": conf.get("index-url") or "https://pypi.org/simple", "extra": words("extra-index-url"),
            "links": words("find-links"), "no_index": installer.truthy(conf.get("no-index", "")),
            "trusted": words("trusted-host"), "constraints": words("constraint")}


SCENARIOS = {
    "user file": ({".config/pip/pip.conf": "[global]\nindex-url = http://mirror/simple\n"
                   "extra-index-url = http://a/simple\n  http://b/simple\n"
                   "find-links = /w1 /w2\ntrusted-host = mirror\n"}, {}),
    "install section over global, underscores": (
        {".config/pip/pip.conf": "[global]\nindex_url = http://g/simple\n[install]\nindex-url = http://i/simple\n"},
        {}),
    "variables over files": ({".config/pip/pip.conf": "[global]\nindex-url = http://file/simple\nfind-links = /file\n"},
                             {"PIP_INDEX_URL": "http://env/simple", "PIP_FIND_LINKS": "/env1 /env2"}),
    "new user file over legacy, site file under both": (
        {"etc-xdg/pip/pip.conf": "[global]\nindex-url = http://site/simple\nno-index = yes\n",
         ".pip/pip.conf": "[global]\nindex-url = http://legacy/simple\nfind-links = /legacy\n",
         ".config/pip/pip.conf": "[global]\nindex-url = http://new/simple\n"}, {}),
    "PIP_CONFIG_FILE replaces the user file": ({".config/pip/pip.conf": "[global]\nindex-url = http://user/simple\n",
                                                "env.conf": "[global]\nextra-index-url = http://envfile/simple\n"},
                                               {"PIP_CONFIG_FILE": "{home}/env.conf"}),
    "PIP_CONFIG_FILE=/dev/null reads no file": ({".config/pip/pip.conf": "[global]\nindex-url = http://user/simple\n",
                                                 "etc-xdg/pip/pip.conf": "[global]\nfind-links = /site\n"},
                                                {"PIP_CONFIG_FILE": "/dev/null", "PIP_NO_INDEX": "1"}),
    "constraint and a false no-index": (
        {".config/pip/pip.conf": "[global]\nconstraint = /c.txt\nno-index = false\n"}, {}),
}


@pytest.fixture(scope="module")
def pip_reads(tmp_path_factory):
    """{scenario: (the environment, what pip makes of it)}: each scenario's files under a home of its own."""
    environs = {}
    for n, (name, (files, variables)) in enumerate(SCENARIOS.items()):
        home = tmp_path_factory.mktemp(f"pip-home-{n}")
        for rel, text in files.items():
            (home / rel).parent.mkdir(parents=True, exist_ok=True)
            (home / rel).write_text(text)
        environs[name] = {"HOME": str(home), "PATH": os.environ["PATH"], "XDG_CONFIG_DIRS": str(home / "etc-xdg"),
                          **{k: v.format(home=home) for k, v in variables.items()}}
    done = subprocess.run([sys.executable, "-c", PIP_OPTIONS], input=json.dumps(list(environs.values())),
                          capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr
    return dict(zip(environs, zip(environs.values(), json.loads(done.stdout))))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pip_configuration_is_read_as_pip_reads_it(pip_reads, scenario, monkeypatch):
    environ, theirs = pip_reads[scenario]
    monkeypatch.setenv("HOME", environ["HOME"])  # expanduser("~"), as on the host
    mine = ours(pip_config(environ))
    # this machine's /etc/pip.conf (no scenario's) names /etc/xdg/pip/constraints.txt: left out on both sides
    theirs["constraints"] = [c for c in theirs["constraints"] if c != "/etc/xdg/pip/constraints.txt"]
    mine["constraints"] = [c for c in mine["constraints"] if c != "/etc/xdg/pip/constraints.txt"]
    assert mine == theirs


def sources(conf: dict, environ=None) -> Sources:
    found = Sources.__new__(Sources)
    found.own, found.pip, found.conf, found.env, found.strategy = None, conf, conf, {}, True
    return found


def test_uv_gets_the_sources_pip_would_use_and_torch_index_url_replaces_the_index():
    conf = {"index-url": "http://mirror/simple", "extra-index-url": "http://a/simple http://b/simple",
            "find-links": "/opt/wheels", "trusted-host": "mirror", "constraint": "/c.txt"}
    assert sources(conf).args() == ["--index-url", "http://mirror/simple", "--extra-index-url", "http://a/simple",
                                    "--extra-index-url", "http://b/simple", "--find-links", "/opt/wheels",
                                    "--allow-insecure-host", "mirror", "--constraint", "/c.txt",
                                    "--index-strategy", "unsafe-best-match"]
    assert (sources(conf).args("https://download.pytorch.org/whl/cu121")[:2]
            == ["--index-url", "https://download.pytorch.org/whl/cu121"])
    # --no-index drops every index (as pip does), keeps find-links.
    offline = {"no-index": "true", "index-url": "http://mirror/simple", "find-links": "/w"}
    assert sources(offline).args("http://torch/whl") == ["--no-index", "--find-links", "/w",
                                                         "--index-strategy", "unsafe-best-match"]
    assert sources(offline).text() == "no index, find-links /w"
    assert sources({}).args() == [] and sources({}).text() == "index https://pypi.org/simple"


def test_uv_s_own_index_settings_win_over_pip_s(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n[tool.uv]\nconflicts = []\n")
    assert installer.uv_settings({}) is None  # a [tool.uv] without an index is not uv's index setting
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n[[tool.uv.index]]\nurl = 'http://own/simple'\n")
    assert installer.uv_settings({}) == str(tmp_path / "pyproject.toml")
    assert installer.uv_settings({"UV_INDEX_URL": "http://x"}) == "UV_INDEX_URL"
    found = Sources({"HOME": str(tmp_path), "PIP_INDEX_URL": "http://mirror/simple"})
    assert found.args() == []
    assert found.args("http://torch") == ["--index-url", "http://torch"]
    assert "uv's own settings" in found.text()


# Real output of uv 0.13.8 and pip 23.0.1 (captured on this project's test host); a long line is
# split into adjacent literals.
UV_NOT_FOUND = ("error: No solution found when resolving dependencies\n"
                "  cause: Because rr-no-such was not found in the package registry and you require rr-no-such,"
                " we can conclude that your requirements are unsatisfiable.")
UV_NO_VERSION = ("error: No solution found when resolving dependencies\n"
                 "  cause: Because there is no version of rrtiny-a==99 and you require rrtiny-a==99,"
                 " we can conclude that your requirements are unsatisfiable.")
UV_WRONG_PYTHON = ("error: No solution found when resolving dependencies\n"
                   "  cause: Because rrtiny-old==1.0 has no wheels with a matching Python implementation tag"
                   " (e.g., `cp311`) and only rrtiny-old==1.0 is available,"
                   " we can conclude that all versions of rrtiny-old cannot be used.\n"
                   "         And because you require rrtiny-old,"
                   " we can conclude that your requirements are unsatisfiable.\n"
                   "\n"
                   "hint: You require CPython 3.11 (`cp311`), but we only found wheels for `rrtiny-old` (v1.0)"
                   " with the following Python implementation tag: `cp27`")
UV_REFUSED = """error: Request failed after 3 retries in 8.6s
  cause: Failed to fetch: http://127.0.0.1:9/simple/rrtiny-c/
  cause: error sending request for url (http://127.0.0.1:9/simple/rrtiny-c/)
  cause: client error (Connect)
  cause: tcp connect error
  cause: Connection refused (os error 111)"""
UV_DNS = """error: Request failed after 3 retries in 7.1s
  cause: Failed to fetch: http://no-such-host.invalid/simple/rrtiny-c/
  cause: error sending request for url (http://no-such-host.invalid/simple/rrtiny-c/)
  cause: client error (Connect)
  cause: dns error
  cause: error resolving DNS
  cause: failed to lookup address information: Name or service not known"""
UV_DISK = ("error: Failed to install: rrtiny_big-1.0-py3-none-any.whl (rrtiny-big==1.0)\n"
           "  cause: Failed to copy to `/tmp/rrexp/small/v/lib/python3.11/site-packages/rrtiny_big/blob.bin`\n"
           "  cause: failed to copy file from /home/u/.cache/uv/archive-v0/R6b939RHAtL8OVVT/rrtiny_big/blob.bin"
           " to /tmp/rrexp/small/v/lib/python3.11/site-packages/rrtiny_big/.tmpuukjgA:"
           " No space left on device (os error 28)")
PIP_NOT_FOUND = """ERROR: Could not find a version that satisfies the requirement rr-no-such (from versions: none)
ERROR: No matching distribution found for rr-no-such"""
PIP_NO_VERSION = """ERROR: Could not find a version that satisfies the requirement rrtiny-a==99 (from versions: 1.0)
ERROR: No matching distribution found for rrtiny-a==99"""
PIP_REFUSED = ("WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None))"
               " after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPConnection"
               " object at 0x7f93a2669850>: Failed to establish a new connection: [Errno 111] Connection refused')':"
               " /simple/rrtiny-c/\n"
               "ERROR: Could not find a version that satisfies the requirement rrtiny-c (from versions: none)\n"
               "ERROR: No matching distribution found for rrtiny-c")

REASONS = {
    "uv: not in the index": (UV_NOT_FOUND, "rr-no-such is not in the package sources (index X)"),
    "uv: no such version": (UV_NO_VERSION, "no version rrtiny-a==99 in the package sources (index X)"),
    "uv: no wheel for this Python": (UV_WRONG_PYTHON, "rrtiny-old has no wheel for this Python (CPython 3."),
    "uv: connection refused": (UV_REFUSED,
                               "no package index reachable (http://127.0.0.1:9/simple/rrtiny-c/: connection refused)"),
    "uv: unknown host": (UV_DNS, "no package index reachable"
                                 " (http://no-such-host.invalid/simple/rrtiny-c/: the host name does not resolve)"),
    "uv: disk full": (UV_DISK, "the host's disk is full (No space left on device)"),
    "pip: not in the index": (PIP_NOT_FOUND, "rr-no-such is not in the package sources (index X),"
                                             " or none of its files fits CPython 3."),
    "pip: no such version": (PIP_NO_VERSION, "no version rrtiny-a==99 in the package sources (there: 1.0)"),
    "pip: connection refused": (PIP_REFUSED, "no package index reachable (index X: connection refused)"),
}


@pytest.mark.parametrize("output,expected", REASONS.values(), ids=REASONS.keys())
def test_a_failure_is_one_phrase_naming_the_package_and_why(output, expected):
    assert reason(output.splitlines(), "index X").startswith(expected)


def test_uv_s_wrong_python_names_the_tags_it_found():
    assert reason(UV_WRONG_PYTHON.splitlines(), "index X").endswith("its wheels are for `cp27`)")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_lines_redraw_one_line_on_a_terminal_and_are_lines_elsewhere():
    text = (f"remote-run: installing torch\n{PROGRESS}remote-run: installing torch… 1 s\n"
            f"{PROGRESS}remote-run: installing torch… 2 s\n"
            f"  Resolved 11 packages\n{FINAL}remote-run: it failed\nremote-run: done")
    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        progress = Progress(stream)
        for chunk in (text[:30], text[30:77], text[77:]):  # lines arrive cut anywhere
            progress.write(chunk)
        progress.close()
    assert terminal.getvalue() == ("remote-run: installing torch\nremote-run: installing torch… 1 s"
                                   "\r\x1b[Kremote-run: installing torch… 2 s"
                                   "\r\x1b[K  Resolved 11 packages\nremote-run: done\n")
    assert log.getvalue() == ("remote-run: installing torch\nremote-run: installing torch… 1 s\n"
                              "remote-run: installing torch… 2 s\n"
                              "  Resolved 11 packages\nremote-run: done\n")
