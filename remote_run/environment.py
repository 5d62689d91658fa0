"""The remote Python environment: one command that builds REMOTE_DIR/.venv or proves it current,
and the check the launcher folds into a run's command."""

from __future__ import annotations

import hashlib
import json

from . import exits
from .settings import Settings

FORMAT = 1  # bump when the bootstrap script changes what it builds

# $1 REMOTE_DIR, $2 wanted stamp, $3 force (0/1), $4 torch index URL, $5 torch packages,
# $6 extra packages. Package lists are validated tokens, split on spaces with globbing off.
BOOTSTRAP_SCRIPT = r"""
set -eu
dir=$1 want=$2 force=$3 index=$4 torch=$5 extra=$6
cd "$dir" || { echo "remote-run: REMOTE_DIR $dir is missing; run inv sync first" >&2; exit USAGE; }
if [ "$force" = 0 ] && [ -x .venv/bin/python ] && [ "$(cat .venv/.remote-run-stamp 2>/dev/null)" = "$want" ]; then
  echo "remote-run: environment is up to date ($dir/.venv)" >&2; exit 0
fi
[ "$force" = 0 ] || rm -rf .venv
rm -f .venv/.remote-run-stamp
set -f
if command -v uv >/dev/null 2>&1; then
  [ -x .venv/bin/python ] || uv venv --quiet .venv
  install() { uv pip install --python .venv/bin/python "$@"; }
else
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv || { echo "remote-run: python3 -m venv failed; install python3-venv on the host or set REMOTE_PYTHON" >&2; exit USAGE; }
  fi
  .venv/bin/python -m pip install --quiet --upgrade pip
  install() { .venv/bin/python -m pip install --quiet "$@"; }
fi
if [ -n "$torch" ]; then
  echo "remote-run: installing $torch${index:+ from $index}" >&2
  if [ -n "$index" ]; then install --index-url "$index" $torch; else install $torch; fi
fi
if [ -n "$extra" ]; then echo "remote-run: installing $extra" >&2; install $extra; fi
if [ -f requirements.txt ]; then echo "remote-run: installing requirements.txt" >&2; install -r requirements.txt; fi
echo "$want" > .venv/.remote-run-stamp
echo "remote-run: environment ready ($dir/.venv)" >&2
""".replace("USAGE", str(exits.USAGE))

def stamp(settings: Settings) -> str:
    """A hash of everything that determines the environment."""
    requirements = settings.workspace / "requirements.txt"
    inputs = {
        "format": FORMAT,
        "index": settings.torch_index_url,
        "torch": list(settings.torch_packages),
        "extra": list(settings.pip_packages),
        "requirements": requirements.read_bytes().hex() if requirements.is_file() else None,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


def check(host) -> dict:
    """The launcher's "env" check: the venv's stamp, or (REMOTE_PYTHON, `local`) the interpreter itself."""
    if host.uses_venv:
        return {"kind": "venv", "stamp": stamp(host.settings)}
    return {"kind": "probe"}


def bootstrap_args(settings: Settings, force: bool) -> list[str]:
    return [
        settings.remote_dir,
        stamp(settings),
        "1" if force else "0",
        settings.torch_index_url,
        " ".join(settings.torch_packages),
        " ".join(settings.pip_packages),
    ]
