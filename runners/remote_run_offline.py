"""A workspace trainer's data set download that found no network: one line naming what to do,
instead of the download's traceback. Copied beside hlb_workspace.py and david_workspace.py, under
a name no workspace module has (the workspace's own modules are imported after it)."""

import sys


def offline(error):
    """The URLError behind ``error`` (a data set download that found no network), or None."""
    import urllib.error

    while error is not None:
        if isinstance(error, urllib.error.URLError):
            return error
        error = error.__cause__ or error.__context__
    return None


def exit_offline(found, where):
    """One line instead of the download's traceback, naming what to do; exit 2 like the builtin trainers."""
    print(f"{where} cannot download its data set ({getattr(found, 'reason', found)}): is the host offline? "
          "Copy the files onto the host where it looks for them (torchvision's `Downloading URL to PATH` line "
          "above), or put cifar-10-python.tar.gz in the shared cache $REMOTE_RUN_DATA/cifar10 and train "
          "with --impl builtin, which reads it from there", file=sys.stderr, flush=True)
    sys.exit(2)
