"""`clean`: delete REMOTE_DIR on the host, only if remote-run created it and no run is running."""

from __future__ import annotations

from . import exits
from .errors import Failure
from .shell import script
from .transport import Host

CLEAN_SCRIPT = r"""
dir=$1 data=$2
[ -d "$dir" ] || { echo "remote-run: nothing to clean: $dir does not exist" >&2; exit 0; }
[ -f "$dir/.remote-run/owner" ] || { echo "remote-run: REMOTE_DIR=$dir was not created by remote-run (no .remote-run/owner marker); refusing to delete it" >&2; exit REFUSED; }
for run in "$dir"/runs/*/; do
  [ -f "$run/pid" ] && [ ! -f "$run/exit_code" ] && kill -0 "$(cat "$run/pid")" 2>/dev/null &&
    { echo "remote-run: run $(basename "$run") is still running in $dir; stop it with inv kill first" >&2; exit REFUSED; }
done
if [ "$data" = 1 ] || [ ! -d "$dir/data" ]; then
  rm -rf -- "$dir" && echo "remote-run: removed $dir" >&2
else
  find "$dir" -mindepth 1 -maxdepth 1 ! -name data ! -name .remote-run -exec rm -rf -- {} + &&
    rm -f -- "$dir/.remote-run/synced" "$dir/.remote-run/rendered" &&
    echo "remote-run: removed $dir except the dataset cache $dir/data (add --data to remove it too)" >&2
fi
""".replace("REFUSED", str(exits.REFUSED))


def clean(host: Host, *, data: bool) -> str:
    """Delete REMOTE_DIR (keeping data/ unless ``data``); the host's one-line account of it."""
    result = host.run(script(CLEAN_SCRIPT, host.settings.remote_dir, "1" if data else "0"), hide=True)
    lines = [line[len("remote-run: "):] for line in result.stderr.splitlines() if line.startswith("remote-run: ")]
    if result.exited:
        raise Failure(lines[-1] if lines else f"cleaning {host.label}:{host.settings.remote_dir} failed (exit {result.exited}): {result.stderr.strip()[-300:]}")
    return lines[-1] if lines else f"cleaned {host.settings.remote_dir}"
