"""Files and lines, the way both sides handle them: one atomic writer, readers that answer None
instead of raising, and one splitter of a stream into lines."""

import json
import os


def write_atomic(path, data, mode=None):
    """Write ``data`` (bytes) to ``path`` through a temporary name, as rsync does: a reader sees
    the old file or the new one, and a hardlinked copy of the old one keeps its contents. The
    file has ``mode`` from its first byte (a private file is never readable by others, not even
    half written); a failed write leaves no temporary file behind."""
    folder = os.path.dirname(path) or "."
    temp = os.path.join(folder, ".%s.rr%d" % (os.path.basename(path), os.getpid()))
    remove(temp)  # left by a writer of ours that was killed, with a mode of its own
    try:
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode), "wb") as handle:
            if mode is not None:
                os.fchmod(handle.fileno(), mode)  # the umask may have taken bits away
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        remove(temp)
        raise
    return path


def write_text(path, text, mode=None):
    """write_atomic() of ``text`` (UTF-8, surrogates kept), making the folder first if need be."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    return write_atomic(path, text.encode("utf-8", "surrogateescape"), mode)


def read_text(path, strip=True):
    """The file's text (surrounding blanks stripped unless not ``strip``), or None when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            text = handle.read()
    except OSError:
        return None
    return text.strip() if strip else text


def read_int(path):
    try:
        return int(read_text(path))
    except (TypeError, ValueError):
        return None


def read_json(path):
    """The file's JSON value, or None when it is missing or not JSON."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def remove(path):
    """Remove a file if it is there; True when it was."""
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


class Lines:
    """Text arriving in pieces, cut into whole lines: ``feed`` returns the lines completed so far
    (without their ends); ``rest`` is the line still open. ``ends`` are the characters that end a
    line (rsync's progress ends its lines with a carriage return)."""

    def __init__(self, ends="\n"):
        self.ends, self.rest = ends, ""

    def feed(self, text):
        self.rest += text
        if len(self.ends) == 1:
            *done, self.rest = self.rest.split(self.ends)
            return done
        done, start = [], 0
        for at, char in enumerate(self.rest):
            if char in self.ends:
                done.append(self.rest[start:at])
                start = at + 1
        self.rest = self.rest[start:]
        return done

    def close(self):
        """The open line as a last line (None when there is none)."""
        rest, self.rest = self.rest, ""
        return rest or None
