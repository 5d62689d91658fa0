"""NOTIFY_URL: the host tells a webhook how a run ended, even when nobody follows it.

The URL is only in the memory of the run's supervisor (it came on stdin); the post is made by a
process of its own that nothing waits for. A failure is one line in the run's log, without the
URL or any piece of it, and changes nothing else.
"""

import json
import os

from . import states
from .runs import facts, last_result


def run_ended(notify, run_dir, code):
    """Post the run's end to NOTIFY_URL from a detached grandchild (when a URL was given)."""
    if not notify or not notify.get("url"):
        return
    child = os.fork()
    if child:
        os.waitpid(child, 0)  # the grandchild is on its own
        return
    try:
        if not os.fork():
            post(notify, run_dir, code)
    finally:
        os._exit(0)


def post(notify, run_dir, code):
    import socket
    import urllib.error
    import urllib.parse
    import urllib.request

    url, run_id = notify["url"], os.path.basename(run_dir)
    outcome = states.decide(**{**facts(run_dir), "exit_code": code})  # the file may not be written yet
    result = last_result(os.path.join(run_dir, "run.log")) or ""
    host = socket.gethostname()
    text = "remote-run: run %s %s (exit %d) on %s%s" % (run_id, outcome, code, host, "\n" + result if result else "")
    if notify.get("format") == "text":  # ntfy: the body is the message
        data, headers = text.encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8",
                                               "Title": "remote-run: run " + outcome}
    else:  # Slack-compatible JSON: "text" is the message
        data = json.dumps({"text": text, "run": run_id, "outcome": outcome, "exit": code, "result": result,
                           "host": host}).encode("utf-8")
        headers = {"Content-Type": "application/json"}
    headers["User-Agent"] = "remote-run"
    try:
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=notify.get("timeout", 10)) as answer:
            answer.read(4096)
        return
    except urllib.error.HTTPError as exc:
        why = "HTTP %d %s" % (exc.code, exc.reason)
    except urllib.error.URLError as exc:
        why = str(exc.reason)
    except (OSError, ValueError) as exc:
        why = "%s: %s" % (type(exc).__name__, exc)
    parts = urllib.parse.urlsplit(url)
    for secret in (url, parts.netloc, parts.path, parts.query):  # never the URL, nor a piece of it
        if len(secret) > 1:
            why = why.replace(secret, "<NOTIFY_URL>")
    try:
        with open(os.path.join(run_dir, "run.log"), "ab") as log:
            log.write(("remote-run: the NOTIFY_URL notification failed (%s); the run's outcome is unchanged\n"
                       % why[:200]).encode())
    except OSError:
        pass
