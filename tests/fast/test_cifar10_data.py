"""runners/cifar10_data.py against a tiny CIFAR-10 built in the real on-disk format. No internet."""
import contextlib
import functools
import hashlib
import http.server
import io
import os
import pickle
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

RUNNERS = Path(__file__).resolve().parents[2] / "runners"
sys.path.insert(0, str(RUNNERS))
import cifar10_data as cd  # noqa: E402

PER_BATCH, N_TEST = 3, 4
TINY = (5 * PER_BATCH, N_TEST)  # the sizes the loader must expect of make_tarball's data
UNREACHABLE = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # discard port: connection refused


def _add(tar, name, obj, protocol=2):
    data = pickle.dumps(obj, protocol=protocol)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_tarball(directory, batch_extra=None):
    """Write cifar-10-python.tar.gz the way the real one is laid out; return (md5, expected arrays)."""
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8) for _ in range(5)]
    test = rng.integers(0, 256, (N_TEST, 3072), dtype=np.uint8)
    train[0][0] = np.repeat(np.array([10, 20, 30], dtype=np.uint8), 1024)  # image 0: R=10 G=20 B=30
    train_labels = [[int(v) for v in rng.integers(0, 10, PER_BATCH)] for _ in range(5)]
    test_labels = [int(v) for v in rng.integers(0, 10, N_TEST)]
    path = Path(directory) / cd.TARBALL
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/readme.html", b"<html></html>")
        for i in range(5):
            _add(tar, f"cifar-10-batches-py/data_batch_{i + 1}",
                 {b"batch_label": f"training batch {i + 1} of 5".encode(), b"labels": train_labels[i],
                  b"data": train[i], b"filenames": [b"x.png"] * PER_BATCH, **(batch_extra or {})})
        _add(tar, "cifar-10-batches-py/test_batch", {b"batch_label": b"testing batch 1 of 1",
                                                     b"labels": test_labels, b"data": test})
        _add(tar, "cifar-10-batches-py/batches.meta", {b"label_names": [c.encode() for c in cd.CLASSES],
                                                       b"num_cases_per_batch": PER_BATCH, b"num_vis": 3072})
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    return md5, (np.concatenate(train), np.concatenate(train_labels), test, np.array(test_labels))


@pytest.fixture
def data_dir(tmp_path):
    """A directory of its own (tmp_path also holds the fake HOME that conftest.py makes)."""
    path = tmp_path / "cifar10"
    path.mkdir()
    return path


def leftovers(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith(".") or p.suffix == ".part")


def test_parse_round_trips_pixels_labels_and_channel_order(data_dir):
    md5, (train, train_labels, test, test_labels) = make_tarball(data_dir)
    train_x, train_y, test_x, test_y = cd.load_cifar10(data_dir, md5=md5, sizes=TINY)
    assert train_x.dtype == torch.uint8 and train_x.shape == (5 * PER_BATCH, 32, 32, 3)
    assert test_x.shape == (N_TEST, 32, 32, 3) and train_y.dtype == test_y.dtype == torch.int64
    assert train_x[0, 5, 7].tolist() == [10, 20, 30]  # NHWC: the last axis is the colour channel
    assert np.array_equal(train_x.numpy(), train.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert np.array_equal(test_x.numpy(), test.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert train_y.tolist() == train_labels.tolist() and test_y.tolist() == test_labels.tolist()
    cache = torch.load(data_dir / cd.CACHE, weights_only=True)
    assert cache["classes"] == cd.CLASSES and torch.equal(cache["train_images"], train_x)
    digest = hashlib.sha256(b"".join(cache[k].numpy().tobytes() for k in cd.TENSORS)).hexdigest()
    assert cache["sha256"] == digest
    assert leftovers(data_dir) == []


def test_cache_is_written_then_used(data_dir):
    md5, _ = make_tarball(data_dir)
    first = cd.load_cifar10(data_dir, md5=md5, sizes=TINY)
    (data_dir / cd.TARBALL).unlink()
    second = cd.load_cifar10(data_dir, md5="0" * 32, url=UNREACHABLE, sizes=TINY)  # neither is consulted now
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert sorted(p.name for p in data_dir.iterdir()) == [cd.CACHE]


def test_subset_keeps_a_proportional_test_slice(data_dir):
    md5, (train, _, test, _) = make_tarball(data_dir)
    train_x, train_y, test_x, test_y = cd.load_cifar10(data_dir, subset=8, md5=md5, sizes=TINY)
    assert len(train_x) == len(train_y) == 8 and len(test_x) == len(test_y) == N_TEST * 8 // (5 * PER_BATCH)
    (data_dir / cd.TARBALL).unlink()  # the cache holds the whole set: a subset is taken after loading
    _, _, test_x, _ = cd.load_cifar10(data_dir, subset=1, md5=md5, sizes=TINY)
    assert len(test_x) == 1  # never an empty test set


def test_bad_md5_is_one_line_and_moves_the_file_aside(data_dir):
    make_tarball(data_dir)
    with pytest.raises(cd.DatasetError) as err:
        cd.load_cifar10(data_dir, md5="0" * 32)
    message = str(err.value)
    assert "\n" not in message and "corrupt" in message and "expected 00000000" in message
    assert not (data_dir / cd.TARBALL).exists() and (data_dir / (cd.TARBALL + ".corrupt")).exists()
    assert not (data_dir / cd.CACHE).exists() and leftovers(data_dir) == []


def test_offline_is_one_quick_line_and_leaves_nothing(tmp_path):
    data_dir = tmp_path / "cifar10"
    start = time.monotonic()
    with pytest.raises(cd.DatasetError) as err:
        cd.load_cifar10(data_dir, url=UNREACHABLE, timeout=5)
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert message.startswith(f"cifar10: cannot download {UNREACHABLE} (") and "\n" not in message
    assert f"copy {cd.TARBALL} into {data_dir} and run again" in message
    assert list(data_dir.iterdir()) == []


def test_offline_in_the_shared_cache_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("REMOTE_RUN_DATA", str(tmp_path))
    with pytest.raises(cd.DatasetError) as err:
        cd.load_cifar10(tmp_path / "cifar10", url=UNREACHABLE, timeout=5)
    assert (f"copy {cd.TARBALL} into {tmp_path / 'cifar10'} (the dataset cache every run in this REMOTE_DIR "
            "shares, kept between runs) and run again") in str(err.value)


def test_pickles_naming_other_classes_are_refused(data_dir):
    md5, _ = make_tarball(data_dir, batch_extra={b"evil": os.getcwd})
    with pytest.raises(cd.DatasetError, match="cannot read .*UnpicklingError"):
        cd.load_cifar10(data_dir, md5=md5, sizes=TINY)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_from_a_local_server(tmp_path):
    served, data_dir = tmp_path / "served", tmp_path / "data"
    served.mkdir()
    md5, (train, *_) = make_tarball(served)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=served))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{cd.TARBALL}"
        train_x, *_ = cd.load_cifar10(data_dir, url=url, md5=md5, timeout=10, sizes=TINY)
    finally:
        server.shutdown()
        server.server_close()
    assert np.array_equal(train_x.numpy(), train.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert sorted(p.name for p in data_dir.iterdir()) == sorted([cd.TARBALL, cd.CACHE])


def test_concurrent_loads_agree(data_dir):
    md5, _ = make_tarball(data_dir)
    results = [None, None]

    def load(i):
        results[i] = cd.load_cifar10(data_dir, md5=md5, sizes=TINY)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(a, b) for a, b in zip(*results)) and leftovers(data_dir) == []


def test_synthetic_has_the_real_shapes_and_touches_no_disk(tmp_path):
    bad_cache = tmp_path / "bad" / cd.CACHE
    bad_cache.parent.mkdir()
    bad_cache.write_bytes(b"not a cache")
    cd.load_cifar10(bad_cache.parent, synthetic=True, subset=16)  # neither read nor replaced
    assert sorted(p.name for p in bad_cache.parent.iterdir()) == [cd.CACHE] and bad_cache.read_bytes() == b"not a cache"
    missing = tmp_path / "never-created"
    train_x, train_y, test_x, test_y = cd.load_cifar10(missing, synthetic=True)
    assert train_x.shape == (50000, 32, 32, 3) and test_x.shape == (10000, 32, 32, 3)
    assert train_x.dtype == test_x.dtype == torch.uint8 and train_y.dtype == test_y.dtype == torch.int64
    assert 0 <= int(train_y.min()) and int(train_y.max()) <= 9 and not missing.exists()
    a, b, c = (cd.load_cifar10(missing, synthetic=True, subset=512, seed=s) for s in (1, 1, 2))
    assert len(a[0]) == 512 and len(a[2]) == 512 * 10000 // 50000
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a[0], c[0])


def run_trainer(script, data_dir, url=UNREACHABLE):
    env = dict(os.environ, CIFAR10_URL=url, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(RUNNERS / script), "--data-dir", str(data_dir)],
                          cwd=data_dir.parent, env=env, capture_output=True, text=True, timeout=60)


def test_trainer_reports_offline_in_one_line(tmp_path):
    proc = run_trainer("hlb_cifar.py", tmp_path / "d")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("cifar10: cannot download") and len(proc.stderr.strip().splitlines()) == 1


# --- the cache is checked before it is trusted ---

def tiny_cache(data_dir, **changes):
    """A cache written by the loader from make_tarball's data, then edited; returns its path."""
    md5, _ = make_tarball(data_dir)
    cd.load_cifar10(data_dir, md5=md5, sizes=TINY)
    (data_dir / cd.TARBALL).unlink()
    path = data_dir / cd.CACHE
    if changes:
        d = torch.load(path, weights_only=True)
        d.update(changes)
        torch.save({k: v for k, v in d.items() if v is not None}, path)
    return path


def test_a_cache_of_1500_images_is_not_cifar10(data_dir):
    """The reported case: a consistent, checksummed cache that is simply too small."""
    data = dict(zip(cd.TENSORS, cd.synthetic_cifar10(1500, 300)))
    cd.write_cache(data_dir / cd.CACHE, {**data, "classes": cd.CLASSES})
    with pytest.raises(cd.DatasetError) as err:
        cd.load_cifar10(data_dir)
    message = str(err.value)
    assert message.startswith(f"cifar10: {data_dir / cd.CACHE} is not a valid CIFAR-10 cache (") and "\n" not in message
    assert "uint8 1500x32x32x3, expected uint8 50000x32x32x3" in message
    assert "delete it and run again" in message and f"copy {cd.TARBALL} into {data_dir}" in message
    assert cd.load_cifar10(data_dir, sizes=(1500, 300))[0].shape == (1500, 32, 32, 3)  # right sizes: accepted


@pytest.mark.parametrize("changes, reason", [
    ({"train_images": torch.zeros(5 * PER_BATCH, 32, 32, 3)}, "train_images are float32 15x32x32x3"),
    ({"test_images": torch.zeros(N_TEST, 3, 32, 32, dtype=torch.uint8)}, "test_images are uint8 4x3x32x32"),
    ({"train_labels": torch.zeros(5 * PER_BATCH, dtype=torch.int32)}, "train_labels are int32 15, expected int64"),
    ({"test_labels": torch.zeros(N_TEST - 1, dtype=torch.int64)}, "test_labels are int64 3, expected int64 4"),
    ({"test_labels": torch.full((N_TEST,), 10)}, "test_labels outside 0..9"),
    ({"train_labels": None}, "not the expected dict of tensors"),
    ({"classes": ["cat"] * 10}, "wrong class names"),
    ({"sha256": None}, "no sha256"),
    ({"sha256": "0" * 64}, "sha256 mismatch"),
])
def test_a_cache_that_fails_a_check_is_refused_without_a_tarball(data_dir, changes, reason):
    path = tiny_cache(data_dir, **changes)
    before = path.read_bytes()
    with pytest.raises(cd.DatasetError) as err:
        cd.load_cifar10(data_dir, sizes=TINY, url=UNREACHABLE)  # refused, not downloaded
    message = str(err.value)
    assert message.startswith(f"cifar10: {path} is not a valid CIFAR-10 cache ({reason}") and "\n" not in message
    assert path.read_bytes() == before and sorted(p.name for p in data_dir.iterdir()) == [cd.CACHE]


def test_changed_pixels_fail_the_checksum(data_dir):
    path = tiny_cache(data_dir)
    d = torch.load(path, weights_only=True)
    d["test_images"][1, 2, 3, 0] ^= 1  # one bit of one pixel
    torch.save(d, path)
    with pytest.raises(cd.DatasetError, match="sha256 mismatch"):
        cd.load_cifar10(data_dir, sizes=TINY)


def test_an_unreadable_cache_is_refused(data_dir):
    (data_dir / cd.CACHE).write_bytes(b"PK\x03\x04 half a file")
    with pytest.raises(cd.DatasetError, match=r"is not a valid CIFAR-10 cache \(unreadable: "):
        cd.load_cifar10(data_dir, sizes=TINY)


def test_a_bad_cache_is_rebuilt_from_a_good_tarball(data_dir, capsys):
    path = tiny_cache(data_dir, sha256=None)
    md5, (train, *_) = make_tarball(data_dir)
    train_x, *_ = cd.load_cifar10(data_dir, md5=md5, sizes=TINY)
    assert np.array_equal(train_x.numpy(), train.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    notice = capsys.readouterr().out
    assert f"{path} is not a valid CIFAR-10 cache (no sha256" in notice
    assert f"rebuilding it from {data_dir / cd.TARBALL}" in notice
    (data_dir / cd.TARBALL).unlink()
    again = cd.load_cifar10(data_dir, sizes=TINY)  # the rebuilt cache passes on its own
    assert torch.equal(again[0], train_x) and leftovers(data_dir) == []


def test_a_bad_cache_beside_a_corrupt_tarball_is_refused_in_one_line(data_dir):
    path = tiny_cache(data_dir, sha256="0" * 64)
    make_tarball(data_dir)
    with pytest.raises(cd.DatasetError) as err:
        cd.load_cifar10(data_dir, md5="0" * 32, sizes=TINY)
    message = str(err.value)
    assert message.startswith(f"cifar10: {path} is not a valid CIFAR-10 cache (sha256 mismatch") and "\n" not in message
    assert "is corrupt (md5" in message and f"delete {path} and run again" in message
    assert (data_dir / (cd.TARBALL + ".corrupt")).exists()


def test_trainer_refuses_a_small_cache_in_one_line_with_status_2(tmp_path):
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    data = dict(zip(cd.TENSORS, cd.synthetic_cifar10(1500, 300)))
    cd.write_cache(data_dir / cd.CACHE, {**data, "classes": cd.CLASSES})
    proc = run_trainer("david_cifar.py", data_dir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "RESULT" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cifar10: {data_dir / cd.CACHE} is not a valid CIFAR-10 cache")


# --- a download that drops mid-way ---

class _DropMidway(http.server.BaseHTTPRequestHandler):
    """Announces a body (by Content-Length, or as one chunk) and closes the connection half way."""

    protocol_version = "HTTP/1.1"
    body = bytes(range(256)) * 400
    chunked = False

    def do_GET(self):
        self.send_response(200)
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        half = self.body[:len(self.body) // 2]
        self.wfile.write(b"%x\r\n" % len(self.body) + half if self.chunked else half)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_dropping(chunked):
    handler = type("Handler", (_DropMidway,), {"chunked": chunked})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{cd.TARBALL}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(params=[False, True], ids=["content-length", "chunked"])
def dropping_url(request):
    with serve_dropping(request.param) as url:
        yield url


def test_a_dropped_download_is_one_line_and_leaves_nothing(tmp_path, dropping_url):
    data_dir = tmp_path / "cifar10"
    with pytest.raises(cd.DatasetError) as err:
        cd.load_cifar10(data_dir, url=dropping_url, timeout=10)
    message = str(err.value)
    assert message.startswith(f"cifar10: cannot download {dropping_url} (") and "\n" not in message
    assert f"copy {cd.TARBALL} into {data_dir} and run again" in message
    assert list(data_dir.iterdir()) == []


def test_trainer_reports_a_dropped_download_in_one_line_with_status_2(tmp_path):
    with serve_dropping(chunked=False) as url:
        proc = run_trainer("hlb_cifar.py", tmp_path / "d", url=url)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cifar10: cannot download {url} (the connection closed after")
    assert list((tmp_path / "d").iterdir()) == []


class _FailingResponse:
    """A response that gives one chunk, then raises what it was given (as Ctrl+C would, mid-read)."""

    def __init__(self, error):
        self.error, self.chunks, self.headers = error, [b"x" * 100], {"Content-Length": "1000"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, n):
        if self.chunks:
            return self.chunks.pop()
        raise self.error


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("unforeseen")])
def test_an_interrupted_download_leaves_no_temporary_file(tmp_path, monkeypatch, error):
    monkeypatch.setattr(cd.urllib.request, "urlopen", lambda url, timeout: _FailingResponse(error))
    data_dir = tmp_path / "cifar10"
    with pytest.raises(type(error)):
        cd.load_cifar10(data_dir, url="http://example.invalid/x")
    assert list(data_dir.iterdir()) == []
