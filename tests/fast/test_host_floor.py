"""The host program runs on the oldest Python it claims (remote_run.host.FLOOR): vermin finds
nothing newer in it, nor in the program texts remote_run.ship sends, and an older python3 is told
so in one line, with the environment's exit status."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import remote_run.host
from remote_run import ship
from remote_run.host import FLOOR, exits

HOST = Path(remote_run.host.__file__).parent
FLOOR_TEXT = "%d.%d" % FLOOR

# What .ci/run runs too. --eval-annotations: annotations count as evaluated (a module without
# `from __future__ import annotations` evaluates them on 3.8); --pessimistic: code this Python
# cannot parse fails instead of passing as "inconclusive"; --no-config-file: these flags only.
VERMIN = ["--quiet", "--no-tips", "--violations", "--pessimistic", "--eval-annotations", "--no-config-file",
          f"--target={FLOOR_TEXT}-"]


def vermin(*paths) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", *VERMIN,
                           *map(str, paths)], capture_output=True, text=True, timeout=120)


def programs() -> dict:
    """Every text a host's Python is given to run (KEEPER with its bundle left out)."""
    return {"LOADER": ship.LOADER, "KEEPER": ship.KEEPER, "ENTRY": ship.ENTRY,
            "local": ship.local_argv("python3", "status", "/x")[-3]}


def test_the_host_package_and_every_program_text_need_nothing_newer_than_the_floor(tmp_path):
    for name, code in programs().items():
        (tmp_path / f"{name}.py").write_text(code)
    done = vermin(HOST, *sorted(tmp_path.iterdir()))
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_the_check_would_catch_what_newer_pythons_added(tmp_path):
    probe = tmp_path / "newer.py"
    probe.write_text("import functools\n"
                     "def f(names: list[str]):\n"
                     "    return {**{}} | {}, 'x'.removeprefix('y')\n"
                     "@functools.cache\n"
                     "def g():\n"
                     "    import tomllib\n")
    done = vermin(probe)
    assert done.returncode == 1, done.stdout
    for found in ("list[..]", "dict | dict", "str.removeprefix", "functools.cache", "tomllib"):
        assert found in done.stdout, (found, done.stdout)


def test_every_program_text_parses_on_an_older_python3_so_that_its_guard_gets_to_run():
    for name, code in {**programs(), "KEEPER": ship.keeper()}.items():
        newer = [type(n).__name__ for n in ast.walk(ast.parse(code)) if isinstance(n, (ast.JoinedStr, ast.NamedExpr))]
        assert newer == [], name  # f-strings (3.6), := (3.8)


def test_no_annotation_in_the_host_package_is_a_union_which_vermin_does_not_see(tmp_path):
    # vermin's own check of `X | Y` is unstable (it takes `os.O_WRONLY | os.O_APPEND` for one):
    # without `from __future__ import annotations`, `def f(x: str | None)` fails on 3.8 and 3.9.
    bad = []
    for path in sorted(HOST.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            # a parameter's, a variable's or a function's return annotation
            annotation = (node.returns if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                          else getattr(node, "annotation", None))
            if annotation and any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
                                  for n in ast.walk(annotation)):
                bad.append(f"{path.name}:{node.lineno}")
    assert bad == []


def test_the_host_package_states_its_floor():
    assert f"Python {FLOOR_TEXT}+" in remote_run.host.__doc__


def as_python(version, argv, home):
    """Run a host program command (argv from ship) as if by a Python of ``version``: its program
    text after a line that sets sys.version_info."""
    at = argv.index("-c") + 1
    code = "import sys\nsys.version_info = %r\n" % (version,) + argv[at]
    return subprocess.run([sys.executable, *argv[1:at], code, *argv[at + 1:]], capture_output=True, text=True,
                          timeout=60, env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("argv", [
    ship.remote_argv("python3", "status", "/x"),
    ship.remote_argv("python3", "status", "/x", carry=True),
    ship.local_argv("python3", "status", "/x"),
], ids=["loader", "keeper", "local"])
def test_an_older_python_says_so_in_one_line_and_exits_with_the_environments_status(argv, tmp_path):
    home = tmp_path / "host-home"
    home.mkdir()
    done = as_python((3, 6, 9, "final", 0), argv, home)
    assert done.stderr == (f"remote-run: python3 on this host is 3.6.9; remote-run needs Python {FLOOR_TEXT} or newer: "
                           "install it, or set REMOTE_PYTHON\n")
    assert done.returncode == exits.ENVIRONMENT and done.stdout == ""
    assert list(home.iterdir()) == []  # before anything else: nothing kept, nothing written


def test_the_floor_itself_passes_the_guard(tmp_path):
    done = as_python((*FLOOR, 0, "final", 0), ship.remote_argv("python3", "status", "/x"), tmp_path)
    assert done.returncode == exits.NO_PROGRAM, done.stderr  # the loader went on: it has kept nothing yet
    assert ship.MISSING + "true}" in done.stderr


# Stands for an old python3: runs this Python on the program it is given, as if it were 3.6.9.
OLD_PYTHON = """#!{python}
import os, sys
argv = sys.argv[1:]
at = argv.index("-c") + 1
argv[at] = "import sys\\nsys.version_info = (3, 6, 9, 'final', 0)\\n" + argv[at]
os.execv(sys.executable, [sys.executable, *argv])
"""


def test_doctor_names_a_host_python_older_than_the_floor_with_the_fix(tmp_path):
    from invoke import Context

    from remote_run import doctor, settings
    from remote_run.transport import Host

    python = tmp_path / "python3"
    python.write_text(OLD_PYTHON.format(python=sys.executable))
    python.chmod(0o755)
    s = settings.load(environ={"REMOTE_HOST": "local", "REMOTE_PYTHON": str(python), "WORKSPACE": str(tmp_path),
                               "TORCH_PACKAGES": ""})
    checks, data = doctor.host_checks(Host(s, Context()))
    assert data is None and [(c.name, c.status, c.text, c.fix) for c in checks] == [
        ("python", doctor.FAIL, f"python3 on this host is 3.6.9; remote-run needs Python {FLOOR_TEXT} or newer",
         f"install Python {FLOOR_TEXT} or newer there, or set REMOTE_PYTHON to one")]
