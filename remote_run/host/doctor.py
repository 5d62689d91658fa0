"""`inv doctor` on the host: one look at everything a run will need there, changing nothing.

Its payload: root, venv (whether runs use REMOTE_DIR/.venv), connect_timeout, torch_index, gpu
(the GPU check's spec). It prints one JSON object. It only reads: no file is written, nothing is
installed, no directory is created, and every command it starts (rsync, uv, pip, nvidia-smi,
docker) only reports.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from . import checks, installer, owner
from . import gpus as gpu_info

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


def os_name():
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return sys.platform


def uv_check(root):
    """The uv a bootstrap would use (installer.find_uv)."""
    found = installer.find_uv(root)
    if found is None:
        return {"path": None, "version": ""}
    return {"path": found[0], "version": "uv " + installer.version_text(found[1])}


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


def package_index(environ=None, project=()):
    """The index bootstrap installs from on this host: the project's own ([[tool.uv.index]] in its
    pyproject.toml, ``project``), else uv's own settings when set (UV_DEFAULT_INDEX, UV_INDEX_URL),
    else pip's (its index-url or no-index, as pip reports them), which bootstrap also gives uv;
    PyPI unless one is set."""
    environ = os.environ if environ is None else environ
    if project:
        return {"url": project[0], "project": list(project), "source": "the project's [[tool.uv.index]]"}
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL"):
        if environ.get(name):
            return {"url": environ[name].split()[0], "source": name}
    conf = installer.pip_config(environ)
    if installer.truthy(conf.get("no-index", "")):
        return {"no_index": True, "source": "pip's configuration"}
    if (conf.get("index-url") or "").split():
        return {"url": conf["index-url"].split()[0], "source": "pip's configuration"}
    return {"url": PYPI, "source": "pip's default"}


def proxy_for(scheme):
    for name in (scheme + "_proxy", scheme.upper() + "_PROXY"):
        if os.environ.get(name):
            return os.environ[name]
    return ""


def reach(target, timeout):
    """Can this host open a connection to ``target`` ({"url": ...})? Through the proxy when one is set."""
    url = target["url"]
    found = {"url": url, "label": target.get("label", "")}
    scheme, _, rest = url.partition("://") if "://" in url else ("file", "", url)
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
    no_proxy = [n.strip().lstrip(".")
                for n in (os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or "").split(",") if n.strip()]
    if proxy and not any(host == n or host.endswith("." + n) for n in no_proxy):
        found["proxy"] = proxy
        via = proxy.partition("://")[2] or proxy
        via = via.split("/", 1)[0].rsplit("@", 1)[-1]
        host, _, text = via.rpartition(":") if ":" in via else (via, "", "")
        port = int(text) if text.isdigit() else 8080
    found.update(kind="net", host=host, port=port)
    started = time.time()
    try:
        connection = socket.create_connection((host, port), timeout=timeout)
        try:
            if scheme == "https" and not found.get("proxy"):
                tls_handshake(connection, host)
        finally:
            connection.close()
        found.update(ok=True, seconds=round(time.time() - started, 4))
    except (OSError, ValueError) as exc:
        found.update(ok=False, error=str(getattr(exc, "strerror", None) or exc) or exc.__class__.__name__)
    return found


def tls_handshake(connection, host):
    """A TLS handshake trusting what bootstrap's uv trusts (installer.trust: pip's cert,
    SSL_CERT_FILE, else the system's store): an index whose certificate uv would refuse fails here."""
    import ssl

    cafile = installer.trust(os.environ, installer.pip_config(os.environ)).get("SSL_CERT_FILE") or None
    context = ssl.create_default_context(cafile=cafile)
    try:
        context.wrap_socket(connection, server_hostname=host).close()
    except ssl.SSLCertVerificationError as exc:
        raise OSError("its TLS certificate is not trusted (%s)" % (exc.verify_message or exc)) from None


def versions_of_driver(text):
    found = {}
    for key, label in (("driver", "Driver Version:"), ("cuda", "CUDA Version:")):
        at = text.find(label)
        if at >= 0:
            words = text[at + len(label):].split()
            found[key] = words[0] if words else ""
    return found


def gpu_check(spec, header):
    """The run check's GPU check (host.checks), plus driver and CUDA versions and who owns each GPU process."""
    # Only looks: this user's dead queue entries stay for the next run to drop.
    report = checks.check_gpu(spec, gpu_info.start_query(), drop_stale=False)
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
                process["user"] = owner.user_name(os.stat("/proc/%d" % process["pid"]).st_uid)
            except OSError:
                process["user"] = None  # another container's process, or it just ended
    return report


def docker_check(limit):
    """Docker's version, and whether it can start GPU containers (host.gpus.docker)."""
    found = tool("docker", ["--version"])
    found.update(gpu_info.docker(limit) if found["path"] else {"state": "missing"})
    return found


def main(payload):
    started = time.time()
    root = payload["root"]
    report = {"user": owner.user_name(os.getuid()), "hostname": socket.gethostname(), "os": os_name()}
    # The slow ones first, side by side: the GPU query, pip's answer and the index connections, docker.
    header = None
    if payload.get("gpu"):
        try:
            header = subprocess.Popen(["nvidia-smi"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        except OSError:
            header = None
    timeout = payload.get("connect_timeout", 3.0)
    pool = ThreadPoolExecutor(max_workers=6)
    docker = pool.submit(docker_check, 10.0)
    index = pool.submit(package_index, None, payload.get("project_indexes") or [])
    report["uv"] = uv_check(root)
    report["rsync"] = tool("rsync", ["--version"])
    report["python"] = python_check(payload)
    report["disk"] = disk_check(root)
    report["remote_dir"] = owner.examine(root)
    report["index"] = index.result()
    if report["index"].get("project"):
        targets = [{"url": url, "label": "project index"} for url in report["index"]["project"]]
    else:
        targets = [dict(report["index"], label="packages")] if report["index"].get("url") else []
    if payload.get("torch_index"):
        targets.append({"url": payload["torch_index"], "label": "torch"})
    reaching = [pool.submit(reach, target, timeout) for target in targets]
    if payload.get("gpu"):
        report["gpu"] = gpu_check(payload["gpu"], header)
    report["indexes"] = [answer(future, timeout + 1) for future in reaching]
    report["docker"] = (answer(docker, 15)
                        or {"path": "?", "state": "error", "text": "docker did not answer within 15 s"})
    pool.shutdown(wait=False)
    report["seconds"] = round(time.time() - started, 4)
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    return 0


def answer(future, timeout):
    """What ``future`` returned, or None when it did not in ``timeout`` seconds."""
    from concurrent.futures import TimeoutError as Late

    try:
        return future.result(timeout)
    except Late:
        return None
