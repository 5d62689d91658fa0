"""The host side of `inv doctor`: one look at everything a run will need there, changing nothing.

Standard library only, Python 3.6+. remote_run.doctor sends it with `python -S -c`, after exits.py,
tree.py and launcher.py as modules (the GPU query is the launcher's own), with a JSON payload as its
one argument; it prints one JSON object. It only reads: no file is written, nothing is installed,
no directory is created, and every command it starts (rsync, uv, nvidia-smi, docker) only reports.
"""

import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time

# Set by the program remote_run.doctor builds; None when imported on this machine (tests).
launcher = globals().get("launcher")
if launcher is not None and hasattr(launcher, "_remove"):
    # The launcher's GPU check drops stale entries of this user's GPU queue as it reads them; doctor
    # only looks, so they stay for the next run to drop.
    launcher._remove = lambda path: None
PYPI = "https://pypi.org/simple"


def command(argv, timeout=5.0):
    """(exit status, output) of a short command; (None, "") when it is not installed, (-1, "") when it hung."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError:
        return None, ""
    try:
        out = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -1, ""
    return proc.returncode, out.decode("utf-8", "replace")


def tool(name, version_argv, timeout=5.0):
    """Where ``name`` is on PATH and the first line its version command prints."""
    path = shutil.which(name)
    if not path:
        return {"path": None, "version": "", "path_searched": os.environ.get("PATH", "")}
    code, out = command([path] + version_argv, timeout)
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return {"path": path, "version": lines[0] if lines and code == 0 else "", "exit": code}


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def os_name():
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return sys.platform


def find_uv(tool, places, minimum):
    """The uv bootstrap would use: the host's own (installer.UV_PLACES, sent as ``places``) if at
    least ``minimum``, else the one an earlier bootstrap installed into REMOTE_DIR (``tool``)."""
    for path in [shutil.which(p) if "/" not in p else os.path.expanduser(p) for p in places] + [tool]:
        if path and os.access(path, os.X_OK):
            code, out = command([path, "--version"])
            match = re.match(r"uv (\d+)\.(\d+)", out) if code == 0 else None
            if match and [int(n) for n in match.groups()] >= list(minimum):
                return {"path": path, "version": out.strip().splitlines()[0]}
    return {"path": None, "version": ""}


def python_check(payload):
    """The interpreter running this program (python3, REMOTE_PYTHON, or remote-run's own on `local`)."""
    import importlib.util

    found = {"version": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable,
             "venv": importlib.util.find_spec("venv") is not None,
             "ensurepip": importlib.util.find_spec("ensurepip") is not None}
    if not payload.get("venv"):
        # Runs use this interpreter itself: is torch there (without importing it: seconds)?
        import site

        site.main()  # -S left site-packages out
        found["torch"] = None
        if importlib.util.find_spec("torch") is not None:
            try:
                from importlib.metadata import version

                found["torch"] = version("torch")
            except Exception:  # noqa: BLE001 - Python < 3.8, or odd metadata: torch is there all the same
                found["torch"] = "installed"
    return found


def existing_ancestor(path):
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    return path or "/"


def disk_check(root):
    where = existing_ancestor(root)
    try:
        info = os.statvfs(where)
    except OSError as exc:
        return {"where": where, "error": exc.strerror or str(exc)}
    mount = os.path.realpath(where)
    while not os.path.ismount(mount):
        mount = os.path.dirname(mount)
    return {"where": where, "mount": mount, "free_bytes": info.f_bavail * info.f_frsize}


def remote_dir_check(root, marker):
    """REMOTE_DIR as `lstat` sees it: absent, ours, or someone else's / unsafe (and why)."""
    home = os.path.realpath(os.path.expanduser("~"))
    real = os.path.realpath(root)
    if home == real or home.startswith(real.rstrip("/") + "/"):
        return {"state": "home", "home": home}
    # As sync's claim does: every folder above it must be ours or root's, and not open to others'
    # writes unless sticky (as /tmp is), or another user could swap it.
    above = existing_ancestor(os.path.realpath(os.path.dirname(root)))
    while True:
        try:
            info = os.stat(above)
        except OSError:
            break
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid not in (0, os.getuid()) or (mode & 0o022 and not mode & stat.S_ISVTX):
            return {"state": "ancestor", "above": above, "owner": user_name(info.st_uid), "mode": "%04o" % mode}
        if above == "/":
            break
        above = os.path.dirname(above)
    try:
        info = os.lstat(root)
    except FileNotFoundError:
        parent = existing_ancestor(os.path.dirname(root))
        return {"state": "absent", "parent": parent, "writable": os.access(parent, os.W_OK | os.X_OK)}
    except OSError as exc:
        return {"state": "unreadable", "error": exc.strerror or str(exc)}
    found = {"owner": user_name(info.st_uid), "mode": "%04o" % stat.S_IMODE(info.st_mode), "me": user_name(os.getuid())}
    if stat.S_ISLNK(info.st_mode):
        found.update(state="symlink", target=os.readlink(root))
    elif not stat.S_ISDIR(info.st_mode):
        found["state"] = "notdir"
    elif info.st_uid != os.getuid():
        found["state"] = "foreign"
    elif stat.S_IMODE(info.st_mode) & 0o022:
        found["state"] = "writable"
    elif os.path.isfile(os.path.join(root, marker)):
        found["state"] = "ours"
        found["synced"] = os.path.isfile(os.path.join(root, ".remote-run", "synced"))
        runs = os.path.join(root, "runs")
        found["runs"] = len(os.listdir(runs)) if os.path.isdir(runs) else 0
    else:
        try:
            found["state"] = "empty" if not os.listdir(root) else "unclaimed"
        except OSError as exc:
            found.update(state="unreadable", error=exc.strerror or str(exc))
    return found


def package_index():
    """The index bootstrap installs from on this host: uv's own settings when set (UV_DEFAULT_INDEX,
    UV_INDEX_URL), else pip's (PIP_INDEX_URL, pip.conf's index-url or no-index), which bootstrap
    also gives uv; PyPI unless one is set."""
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL"):
        if os.environ.get(name):
            return {"url": os.environ[name].split()[0], "source": name}
    import configparser

    if os.environ.get("PIP_NO_INDEX", "").lower() in ("1", "true", "yes", "on"):
        return {"no_index": True, "source": "PIP_NO_INDEX"}
    if os.environ.get("PIP_INDEX_URL"):
        return {"url": os.environ["PIP_INDEX_URL"].split()[0], "source": "PIP_INDEX_URL"}
    home = os.path.expanduser("~")
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files = ["/etc/pip.conf", "/etc/xdg/pip/pip.conf", os.path.join(home, ".pip", "pip.conf"),
             os.path.join(config_home, "pip", "pip.conf")]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(os.environ["PIP_CONFIG_FILE"])
    found = {"url": PYPI, "source": "pip's default"}
    for path in files:  # later files win, as in pip
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (configparser.Error, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            if parser.has_option(section, "no-index") and parser.get(section, "no-index").strip().lower() in ("1", "true", "yes", "on"):
                found = {"no_index": True, "source": path}
            elif parser.has_option(section, "index-url") and parser.get(section, "index-url").split():
                found = {"url": parser.get(section, "index-url").split()[0], "source": path}
    return found


def proxy_for(scheme):
    for name in (scheme + "_proxy", scheme.upper() + "_PROXY"):
        if os.environ.get(name):
            return os.environ[name]
    return ""


def reach(target, timeout):
    """Can this host open a connection to ``target`` ({"url": ...})? Through the proxy when one is set."""
    url = target["url"]
    found = {"url": url, "label": target.get("label", "")}
    scheme, _, rest = url.partition("://")
    if scheme == "file":
        found.update(kind="path", ok=os.path.exists(rest))
        return found
    hostport = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    host, port = hostport, 443 if scheme == "https" else 80
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") else port
    elif ":" in hostport:
        host, _, text = hostport.rpartition(":")
        port = int(text) if text.isdigit() else port
    proxy = proxy_for(scheme)
    no_proxy = [n.strip().lstrip(".") for n in (os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or "").split(",") if n.strip()]
    if proxy and not any(host == n or host.endswith("." + n) for n in no_proxy):
        found["proxy"] = proxy
        via = proxy.partition("://")[2] or proxy
        via = via.split("/", 1)[0].rsplit("@", 1)[-1]
        host, _, text = via.rpartition(":") if ":" in via else (via, "", "")
        port = int(text) if text.isdigit() else 8080
    found.update(kind="net", host=host, port=port)
    started = time.time()
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        found.update(ok=True, seconds=round(time.time() - started, 4))
    except (OSError, ValueError) as exc:
        found.update(ok=False, error=str(getattr(exc, "strerror", None) or exc) or exc.__class__.__name__)
    return found


def in_threads(fn, items, timeout):
    """[fn(item) for item in items], each in a thread; a call that does not return in time is None."""
    results = [None] * len(items)

    def work(i, item):
        results[i] = fn(item)

    threads = [threading.Thread(target=work, args=(i, item)) for i, item in enumerate(items)]
    for thread in threads:
        thread.daemon = True
        thread.start()
    deadline = time.time() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.time()))
    return results


def versions_of_driver(text):
    found = {}
    for key, label in (("driver", "Driver Version:"), ("cuda", "CUDA Version:")):
        at = text.find(label)
        if at >= 0:
            words = text[at + len(label):].split()
            found[key] = words[0] if words else ""
    return found


def gpu_check(spec, header):
    """The launcher's GPU check, plus driver and CUDA versions and who owns each GPU process."""
    procs = launcher.start_gpu_query()
    report = launcher.check_gpu(spec, procs)
    if header is not None:
        try:
            text = header.communicate(timeout=spec["limit"])[0].decode("utf-8", "replace")
            report.update(versions_of_driver(text))
        except subprocess.TimeoutExpired:
            header.kill()
            header.wait()
    for gpu in report["gpus"]:
        for process in gpu["processes"]:
            try:
                process["user"] = user_name(os.stat("/proc/%d" % process["pid"]).st_uid)
            except OSError:
                process["user"] = None  # another container's process, or it just ended
    return report


def docker_check(limit):
    """Docker's version, and whether it can start GPU containers (the launcher's own check)."""
    found = tool("docker", ["--version"])
    found.update(launcher.check_docker(limit) if found["path"] else {"state": "missing"})
    return found


def main(argv):
    started = time.time()
    payload = json.loads(argv[0] if argv else sys.stdin.readline())
    root = payload["root"]
    report = {"user": user_name(os.getuid()), "hostname": socket.gethostname(), "os": os_name()}
    # The slow ones first, side by side: the GPU query, the index connections, docker.
    header = None
    if payload.get("gpu"):
        try:
            header = subprocess.Popen(["nvidia-smi"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError:
            header = None
    background = {}

    def later(name, fn, *args):
        def work():
            background[name] = fn(*args)
        thread = threading.Thread(target=work)
        thread.daemon = True
        thread.start()
        return thread

    report["uv"] = find_uv(payload.get("uv_tool"), payload["uv_places"], payload["min_uv"])
    report["index"] = package_index()
    targets = [dict(report["index"], label="packages")] if report["index"].get("url") else []
    if payload.get("torch_index"):
        targets.append({"url": payload["torch_index"], "label": "torch"})
    timeout = payload.get("connect_timeout", 3.0)
    waiting = [later("indexes", in_threads, lambda t: reach(t, timeout), targets, timeout + 1), later("docker", docker_check, 10.0)]
    report["rsync"] = tool("rsync", ["--version"])
    report["python"] = python_check(payload)
    report["disk"] = disk_check(root)
    report["remote_dir"] = remote_dir_check(root, payload.get("marker", ".remote-run/owner"))
    if payload.get("gpu"):
        report["gpu"] = gpu_check(payload["gpu"], header)
    for thread in waiting:
        thread.join(15)
    report["indexes"] = background.get("indexes") or [None] * len(targets)
    report["docker"] = background.get("docker") or {"path": "?", "state": "error", "text": "docker did not answer within 15 s"}
    report["seconds"] = round(time.time() - started, 4)
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
