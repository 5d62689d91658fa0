"""The end of a run and what goes with it: ports forwarded while it runs (--port, `inv tunnel`),
the files it wrote brought back (--pull), and notifications when it ends (NOTIFY_CMD, NOTIFY_URL).

Real CLI against the loopback sshd (alias l1). The host is this machine as the user rrtest, so a
port a run listens on and a webhook the test listens on are reachable from both sides, and the
tests look at the host's process list and REMOTE_DIR directly.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from support import cli as support
from support.cli import (
    log_has,
    one_line_error,
    processes,
    record_of,
    remote_exists,
    run_dirs,
    stop_runs,
    wait_for,
    wait_for_started_run,
)
from support.net import free_port
from support.workspace import make_workspace, unique_remote_dir


def cli(*args, **env):
    return support.cli(*args, venv=False, **env)


def Background(*args, **env):
    return support.Background(*args, venv=False, **env)


# Serves TOKEN on 127.0.0.1:PORT until GET /stop (or 30 s), then prints its RESULT line.
SERVE = """import http.server, sys, threading
port, token = int(sys.argv[1]), sys.argv[2]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = token.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/stop":
            threading.Thread(target=server.shutdown, daemon=True).start()

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", port), Handler)
limit = threading.Timer(30, server.shutdown)
limit.daemon = True
limit.start()
print("serving", port, flush=True)
server.serve_forever()
print("RESULT_SERVE served=1")
"""

# Writes outputs (two matching *.pt at different depths, one that does not match) and prints RESULT.
WRITE = """import os
os.makedirs("outputs/deep/er", exist_ok=True)
open("outputs/deep/er/model.pt", "wb").write(b"M" * 1500)
open("outputs/top.pt", "wb").write(b"T" * 20)
open("outputs/notes.txt", "w").write("not pulled")
print("RESULT_WRITE files=3")
"""

# Waits for the file named by its argument (at most 30 s), then prints its RESULT line.
GATE = """import os, sys, time
deadline = time.time() + 30
while not os.path.exists(sys.argv[1]) and time.time() < deadline:
    time.sleep(0.05)
print("RESULT_GATE ok=1")
"""

LONG = "import time\nprint('long', flush=True)\ntime.sleep(60)\n"

# NOTIFY_CMD: appends the REMOTE_RUN_* variables it was given to the file named by its argument.
NOTIFY = """import json, os, sys
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({k: v for k, v in os.environ.items() if k.startswith("REMOTE_RUN_")}) + "\\n")
"""


@pytest.fixture
def box(sshd, offline_pip, tmp_path):
    ws = make_workspace(tmp_path)
    for name, text in {"serve.py": SERVE, "write.py": WRITE, "gate.py": GATE, "long.py": LONG}.items():
        (ws / "scripts" / name).write_text(text)
    remote = unique_remote_dir("rrt_ends")
    yield ws, remote
    stop_runs(sshd, remote)
    sshd.cleanup_remote(remote)


def fetch(port: int, path: str = "/", timeout: float = 5) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
        return answer.read().decode()


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def two_ports() -> tuple[int, int]:
    remote, local = free_port(), free_port()
    while local == remote:
        local = free_port()
    return remote, local


# ------------------------------------------------------------------------------------- ports

def test_a_port_forward_reaches_a_server_the_run_starts_and_closes_with_the_run(sshd, box, tmp_path):
    ws, remote = box
    token, (rport, lport) = uuid.uuid4().hex, two_ports()
    bg = Background(sshd, ws, tmp_path / "bg", "run", "scripts/serve.py", "--args", f"{rport} {token}",
                    "--port", f"{rport}:{lport}", REMOTE_DIR=remote)
    try:
        wait_for(lambda: "serving" in bg.stdout or bg.proc.poll() is not None, 30, "the run's server")
        assert f"forwarding port {rport} of l1 to http://127.0.0.1:{lport}" in bg.stderr, bg.stderr
        assert fetch(lport) == token  # through the master connection, to the run's port on the host
        assert fetch(lport, "/stop") == token
        code = bg.wait(30)
    finally:
        bg.kill()
    assert code == 0, bg.stderr
    assert "RESULT_SERVE served=1" in bg.stdout
    assert not listening(lport), "the forward outlived the run"


def test_tunnel_forwards_for_a_detached_run_until_ctrl_c_or_its_end(sshd, box, tmp_path):
    ws, remote = box
    token, (rport, lport) = uuid.uuid4().hex, two_ports()
    done = cli(sshd, ws, "run", "scripts/serve.py", "--args", f"{rport} {token}", "--detach", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(remote)
    wait_for(lambda: log_has(run, "serving"), 15, "the detached run's server")

    tunnel = Background(sshd, ws, tmp_path / "bg", "tunnel", "--port", f"{rport}:{lport}", REMOTE_DIR=remote)
    try:
        wait_for(lambda: "Ctrl+C closes the tunnel" in tunnel.stderr or tunnel.proc.poll() is not None,
                 15, "the tunnel")
        assert f"run {run.name} on l1" in tunnel.stderr, tunnel.stderr  # without --run: the latest running run, named
        assert fetch(lport) == token
        tunnel.ctrl_c()
        code = tunnel.wait(10)
    finally:
        tunnel.kill()
    assert code == 0 and "tunnel closed" in tunnel.stderr, tunnel.stderr
    assert "Traceback" not in tunnel.stderr
    assert not listening(lport)

    # Again with --run: the tunnel closes by itself when the run ends.
    tunnel = Background(sshd, ws, tmp_path / "bg", "tunnel", "--port", f"{rport}:{lport}", "--run", run.name,
                        REMOTE_DIR=remote)
    try:
        wait_for(lambda: "Ctrl+C closes the tunnel" in tunnel.stderr or tunnel.proc.poll() is not None,
                 15, "the tunnel")
        assert fetch(lport, "/stop") == token
        code = tunnel.wait(15)
    finally:
        tunnel.kill()
    assert code == 0 and f"run {run.name} is finished; closing the tunnel" in tunnel.stderr, tunnel.stderr
    assert not listening(lport)
    line = one_line_error(cli(sshd, ws, "tunnel", "--port", str(rport), "--run", run.name, REMOTE_DIR=remote))
    assert "not running" in line, line


def test_a_local_port_in_use_is_one_line_and_nothing_starts(sshd, box, monkeypatch):
    ws, remote = box
    rport, lport = two_ports()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", lport))
        taken.listen()
        mark = sshd.mark()
        for args in (["run", "scripts/hello.py", "--port", f"{rport}:{lport}"],
                     ["tunnel", "--port", f"{rport}:{lport}"]):
            line = one_line_error(cli(sshd, ws, *args, REMOTE_DIR=remote))
            assert f"local port {lport} is already in use" in line and f"--port {rport}:LOCAL" in line, line
        assert sshd.count("Starting session:", mark) == 0, (
            "a busy local port must be refused before anything reaches the host")
        assert not remote_exists(sshd, remote)

        # The same found by ssh itself (the port taken after our check): its "Port forwarding failed"
        # becomes the same line.
        from invoke import Context

        from remote_run import ports, settings
        from remote_run.errors import Failure, Kind
        from remote_run.transport import Host

        for name, value in sshd.env(REMOTE_HOST="l1", REMOTE_DIR=remote).items():
            monkeypatch.setenv(name, value)
        host = Host(settings.load(), Context())
        monkeypatch.setattr(ports, "check_free", lambda forwards: None)
        with pytest.raises(Failure) as info:
            ports.open_forwards(host, [ports.Forward(rport, lport)])
        assert info.value.problem.startswith(f"local port {lport} is already in use"), info.value.message
        assert info.value.kind is Kind.USAGE, info.value.message


# -------------------------------------------------------------------------------------- pull

def test_pull_brings_back_what_the_run_wrote_with_sizes_in_the_record(sshd, box):
    ws, remote = box
    done = cli(sshd, ws, "run", "scripts/write.py", "--pull", "outputs/**/*.pt", "--pull", "*.ckpt", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(remote)
    pulled = ws / "var" / "runs" / run.name / "pulled"
    assert (pulled / "outputs" / "deep" / "er" / "model.pt").read_bytes() == b"M" * 1500
    assert (pulled / "outputs" / "top.pt").read_bytes() == b"T" * 20  # `**/` matches no folder too
    assert not (pulled / "outputs" / "notes.txt").exists()
    assert not (pulled / "model.ckpt").exists(), "model.ckpt was synced, not written by the run"
    entry = record_of(ws, run.name)["pulled"]
    assert entry["patterns"] == ["outputs/**/*.pt", "*.ckpt"]
    assert entry["files"] == [{"path": "outputs/deep/er/model.pt", "size": 1500},
                              {"path": "outputs/top.pt", "size": 20}]
    assert "pulled 2 files (1.5 KB)" in done.stderr, done.stderr
    assert "`outputs/top.pt` (20 bytes)" in (ws / "var" / "runs" / run.name / "log.md").read_text()


def test_a_detached_run_s_files_come_with_logs_follow_and_never_overwrite_a_local_file(sshd, box):
    ws, remote = box
    done = cli(sshd, ws, "run", "scripts/write.py", "--pull", "outputs", "--detach", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(remote)
    assert record_of(ws, run.name)["pulled"] == {"patterns": ["outputs"]}
    wait_for(lambda: (run / "exit_code").exists(), 20, "the detached run to end")
    pulled = ws / "var" / "runs" / run.name / "pulled" / "outputs"
    assert not pulled.exists()

    done = cli(sshd, ws, "logs", "--follow", "--run", run.name, REMOTE_DIR=remote)  # the run ended meanwhile
    assert done.returncode == 0, done.stderr
    assert (sorted(p.relative_to(pulled).as_posix() for p in pulled.rglob("*") if p.is_file())
            == ["deep/er/model.pt", "notes.txt", "top.pt"])

    (pulled / "top.pt").write_bytes(b"mine")  # edited here
    done = cli(sshd, ws, "logs", "--follow", "--run", run.name, REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    assert (pulled / "top.pt").read_bytes() == b"mine"
    assert ("kept 1 local file that differs from the host's (never overwritten): outputs/top.pt"
            in done.stderr), done.stderr
    assert "pulled 0 files" in done.stderr and "2 already there" in done.stderr, done.stderr
    assert record_of(ws, run.name)["pulled"]["kept"] == ["outputs/top.pt"]


# ------------------------------------------------------------------------------- notifications

def test_notify_cmd_runs_once_per_followed_run_with_its_outcome(sshd, box, tmp_path):
    ws, remote = box
    (tmp_path / "notify.py").write_text(NOTIFY)
    out = tmp_path / "notified.jsonl"
    command = f"python3 {tmp_path / 'notify.py'} {out}"
    runs = []  # hello, exit3, the group's two runs, long

    def new_runs(before):
        return sorted(p.name for p in run_dirs(remote) if p.name not in before and not p.name.endswith("-x2"))

    for args, status in ((["scripts/hello.py"], 0), (["scripts/exit3.py"], 3),
                         (["scripts/hello.py", "--repeat", "2"], 0)):
        before = {p.name for p in run_dirs(remote)}
        done = cli(sshd, ws, "run", *args, REMOTE_DIR=remote, NOTIFY_CMD=command)
        assert done.returncode == status and "Traceback" not in done.stderr, done.stderr
        assert "NOTIFY_CMD" not in done.stderr, done.stderr
        runs += new_runs(before)
    before = {p.name for p in run_dirs(remote)}
    bg = Background(sshd, ws, tmp_path / "bg", "run", "scripts/long.py", REMOTE_DIR=remote, NOTIFY_CMD=command)
    try:
        run = wait_for_started_run(remote, known=before, bg=bg)
        wait_for(lambda: log_has(run, "long"), 10, "the long run")
        bg.ctrl_c()
        assert bg.wait(20) == 130, bg.stderr
    finally:
        bg.kill()
    runs += new_runs(before)
    # Following one of them again completes its record again, and notifies no one.
    again = cli(sshd, ws, "logs", "--follow", "--run", runs[0], REMOTE_DIR=remote, NOTIFY_CMD=command)
    assert again.returncode == 0, (runs, again.stderr)

    seen = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {entry["REMOTE_RUN_ID"]: entry for entry in seen}
    assert len(seen) == len(by_id) == 5, (runs, seen)
    hello, failed, member1, member2, killed = (by_id[r] for r in runs)
    assert (hello["REMOTE_RUN_OUTCOME"], hello["REMOTE_RUN_EXIT"], hello["REMOTE_RUN_RESULT"]) == (
        "finished", "0", "RESULT_HELLO answer=42 ratio=0.5")
    assert (failed["REMOTE_RUN_OUTCOME"], failed["REMOTE_RUN_EXIT"], failed["REMOTE_RUN_RESULT"]) == (
        "failed", "3", "RESULT_EXIT code=3")
    assert member1["REMOTE_RUN_OUTCOME"] == member2["REMOTE_RUN_OUTCOME"] == "finished"
    assert (killed["REMOTE_RUN_OUTCOME"], killed["REMOTE_RUN_EXIT"], killed["REMOTE_RUN_RESULT"]) == (
        "killed", "130", "")
    assert hello["REMOTE_RUN_RECORD"] == str(ws / "var" / "runs" / runs[0])


class Hook(http.server.ThreadingHTTPServer):
    """A webhook on 127.0.0.1 that keeps what was POSTed to it."""

    def __init__(self):
        self.posts: list[dict] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(handler):
                body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
                self.posts.append({"path": handler.path, "type": handler.headers.get("Content-Type"),
                                   "body": body.decode()})
                handler.send_response(200)
                handler.end_headers()

            def log_message(handler, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_notify_url_is_called_by_the_host_for_a_detached_group_and_appears_nowhere(sshd, box, tmp_path):
    ws, remote = box
    hook, secret = Hook(), uuid.uuid4().hex
    release = Path(unique_remote_dir("rrt_release"))
    url = f"http://127.0.0.1:{hook.server_address[1]}/hook/{secret}"
    try:
        done = cli(sshd, ws, "run", "scripts/gate.py", "--args", str(release), "--repeat", "2", "--detach",
                   REMOTE_DIR=remote, NOTIFY_URL=url)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: any((p / "pid").exists() for p in run_dirs(remote) if p.name.endswith(".1")),
                 20, "the group's first run")
        # While it runs: not in the host's process list, not in any file of REMOTE_DIR, nor in what we
        # printed or recorded.
        leaks = [row for row in processes() if secret in row[4]]
        assert not leaks, leaks
        grep = subprocess.run(["grep", "-rl", "--", secret, remote], check=False, capture_output=True, text=True)
        assert grep.stdout == ""
        assert secret not in done.stdout + done.stderr
        assert not hook.posts, "notified before the run ended"

        release.touch()  # the runs end with no client following them
        wait_for(lambda: len(hook.posts) >= 2, 20, "two POSTs from the host")
        time.sleep(0.3)
    finally:
        release.unlink(missing_ok=True)
        hook.shutdown()
    members = sorted(p.name for p in run_dirs(remote) if "." in p.name)
    assert len(hook.posts) == 2 and len(members) == 2, hook.posts
    for post, member in zip(sorted(hook.posts, key=lambda p: json.loads(p["body"])["run"]), members):
        assert post["path"] == f"/hook/{secret}" and post["type"] == "application/json"
        body = json.loads(post["body"])
        assert (body["run"], body["outcome"], body["exit"], body["result"]) == (
            member, "finished", 0, "RESULT_GATE ok=1"), body
        assert body["text"].startswith(f"remote-run: run {member} finished (exit 0)")
        assert "RESULT_GATE ok=1" in body["text"]
    grep = subprocess.run(["grep", "-rl", "--", secret, remote], check=False, capture_output=True, text=True)
    assert grep.stdout == ""
    for path in (ws / "var" / "runs").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    assert secret not in sshd.log_text()

    # A webhook that cannot be reached: one line in the run's log (without the URL); the run's outcome stands.
    closed = free_port()
    done = cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote,
               NOTIFY_URL=f"http://127.0.0.1:{closed}/hook/{secret}")
    assert done.returncode == 0 and "RESULT_HELLO" in done.stdout, done.stderr
    [last] = [p for p in run_dirs(remote) if p.name.endswith("_run")]
    wait_for(lambda: log_has(last, "NOTIFY_URL notification failed"), 15, "the failure line in the run's log")
    assert secret not in (last / "run.log").read_text()
    assert record_of(ws, last.name)["outcome"] == "finished"


def test_ntfy_gets_a_text_body_other_webhooks_json_and_a_bad_url_is_never_repeated(tmp_path):
    from remote_run import notify
    from remote_run.errors import Failure
    from remote_run.host import notify as host_notify

    assert notify.body_format("https://ntfy.sh/my-topic") == notify.body_format("https://ntfy.example.org/t") == "text"
    assert notify.body_format("https://hooks.slack.com/services/T0/B0/x") == "json"
    run_dir = tmp_path / "runs" / "20261124T000000Z_run"
    run_dir.mkdir(parents=True)
    (run_dir / "run.log").write_text("epoch 1\nRESULT_X acc=0.9\n")
    hook = Hook()
    try:
        host_notify.post({"url": f"http://127.0.0.1:{hook.server_address[1]}/topic", "format": "text", "timeout": 5},
                         str(run_dir), 0)
    finally:
        hook.shutdown()
    [post] = hook.posts
    assert post["type"].startswith("text/plain")
    assert post["body"] == ("remote-run: run 20261124T000000Z_run finished (exit 0) on " + socket.gethostname()
                            + "\nRESULT_X acc=0.9")

    secret = uuid.uuid4().hex
    for value in (f"ftp://{secret}@example.com/x", f"https://example.com/{secret} x", f"http://{secret}:99999/"):
        with pytest.raises(Failure) as info:
            notify.parse_url(value)
        assert info.value.problem.startswith("NOTIFY_URL is not valid"), info.value.message
        assert secret not in info.value.message, info.value.message
