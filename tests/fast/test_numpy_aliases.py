"""runners/numpy_aliases.py, the sitecustomize every run gets: numpy's removed aliases come back
on import, and an interpreter that never imports numpy pays almost nothing for it."""

import shutil
import subprocess
import sys
from pathlib import Path

RUNNERS = Path(__file__).resolve().parents[2] / "runners"


def python(tmp_path, code):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    shutil.copy(RUNNERS / "numpy_aliases.py", site / "sitecustomize.py")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": f"{site}:{tmp_path}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_numpy_without_the_aliases_gets_them_when_imported(tmp_path):
    (tmp_path / "numpy").mkdir()
    (tmp_path / "numpy" / "__init__.py").write_text("int = 'kept'\n")  # one it has is left as it is
    assert python(tmp_path, "import numpy; print(numpy.float is float, numpy.bool is bool, numpy.int)") == [
        "True", "True", "kept"]


def test_a_run_that_never_imports_numpy_imports_nothing_heavy_for_it(tmp_path):
    """importlib.abc pulls in importlib.resources: about 40 ms on every run's interpreter start."""
    found = python(tmp_path, "import sys; print(*sys.modules)")
    assert "sitecustomize" in found
    assert not {"importlib.abc", "importlib.resources"} & set(found)
    assert python(tmp_path, "import sys; print(any(type(f).__name__ == '_AddAliasesOnImport' for f in sys.meta_path))"
                  ) == ["True"]
