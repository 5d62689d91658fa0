"""`inv clean`: delete REMOTE_DIR, only if remote-run created it, it mirrors this checkout (or
--take-over) and none of its runs is live."""

import os
import shutil

from . import exits, layout, states, tree
from .control import fail, say
from .files import remove
from .owner import CHECKOUT, MARKER, examine, other_checkout, refusal, shown, whose
from .runs import state_of


def clean(root, data, checkout=None):
    """Delete REMOTE_DIR; keep its dataset cache (and our own state) unless ``data``. Another
    checkout's REMOTE_DIR (owner.other_checkout) is refused: its runs are not this one's to lose."""
    found = examine(root)
    if found["state"] == "absent":
        say("nothing to clean: %s does not exist" % root)
        return exits.OK
    line = refusal(root, found)
    if line:
        return fail(line, exits.REFUSED)
    if not os.path.isfile(os.path.join(root, MARKER)):
        return fail("REMOTE_DIR=%s was not created by remote-run (no %s marker); refusing to delete it"
                    % (root, MARKER), exits.REFUSED)
    if other_checkout(root, checkout):
        found = whose(root)
        return fail("REMOTE_DIR=%s on %s mirrors another checkout (%s) and holds %d of its runs, which clean would "
                    "delete; add --take-over to delete them too, or set REMOTE_DIR to this checkout's own"
                    % (root, checkout.get("host") or "this host", shown(found["checkout"]), found["runs"]),
                    exits.REFUSED)
    line = layout.settle(root)  # an older layout's runs/ and data/ are found where they are now
    if line:
        return fail(line, exits.REFUSED)
    runs = os.path.join(root, layout.RUNS)
    for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
        if state_of(os.path.join(runs, name))[0] in states.LIVE:
            return fail("run %s is still running in %s; stop it with inv kill first" % (name, root), exits.REFUSED)
    if data or not os.path.isdir(os.path.join(root, layout.DATA)):
        shutil.rmtree(root)
        say("removed %s" % root)
        return exits.OK
    for path in [os.path.join(root, name) for name in os.listdir(root) if name != layout.OWN] + [runs]:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
    remove(os.path.join(root, tree.STAMP))
    remove(os.path.join(root, tree.RENDERED))
    remove(os.path.join(root, CHECKOUT))  # what is left mirrors no checkout: the next sync's adopts it
    say("removed %s except the dataset cache %s/%s (add --data to remove it too)" % (root, root, layout.DATA))
    return exits.OK
