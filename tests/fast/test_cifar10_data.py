"""runners/cifar10_data.py against a tiny CIFAR-10 built in the real on-disk format. No internet."""
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
    train_x, train_y, test_x, test_y = cd.load_cifar10(data_dir, md5=md5)
    assert train_x.dtype == torch.uint8 and train_x.shape == (5 * PER_BATCH, 32, 32, 3)
    assert test_x.shape == (N_TEST, 32, 32, 3) and train_y.dtype == test_y.dtype == torch.int64
    assert train_x[0, 5, 7].tolist() == [10, 20, 30]  # NHWC: the last axis is the colour channel
    assert np.array_equal(train_x.numpy(), train.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert np.array_equal(test_x.numpy(), test.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert train_y.tolist() == train_labels.tolist() and test_y.tolist() == test_labels.tolist()
    cache = torch.load(data_dir / cd.CACHE, weights_only=True)
    assert cache["classes"] == cd.CLASSES and torch.equal(cache["train_images"], train_x)
    assert leftovers(data_dir) == []


def test_cache_is_written_then_used(data_dir):
    md5, _ = make_tarball(data_dir)
    first = cd.load_cifar10(data_dir, md5=md5)
    (data_dir / cd.TARBALL).unlink()
    second = cd.load_cifar10(data_dir, md5="0" * 32, url=UNREACHABLE)  # neither is consulted now
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert sorted(p.name for p in data_dir.iterdir()) == [cd.CACHE]


def test_subset_keeps_a_proportional_test_slice(data_dir):
    md5, (train, _, test, _) = make_tarball(data_dir)
    train_x, train_y, test_x, test_y = cd.load_cifar10(data_dir, subset=8, md5=md5)
    assert len(train_x) == len(train_y) == 8 and len(test_x) == len(test_y) == N_TEST * 8 // (5 * PER_BATCH)
    _, _, test_x, _ = cd.load_cifar10(data_dir, subset=1, md5=md5)
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


def test_pickles_naming_other_classes_are_refused(data_dir):
    md5, _ = make_tarball(data_dir, batch_extra={b"evil": os.getcwd})
    with pytest.raises(cd.DatasetError, match="cannot read .*UnpicklingError"):
        cd.load_cifar10(data_dir, md5=md5)


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
        train_x, *_ = cd.load_cifar10(data_dir, url=url, md5=md5, timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert np.array_equal(train_x.numpy(), train.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert sorted(p.name for p in data_dir.iterdir()) == sorted([cd.TARBALL, cd.CACHE])


def test_concurrent_loads_agree(data_dir):
    md5, _ = make_tarball(data_dir)
    results = [None, None]

    def load(i):
        results[i] = cd.load_cifar10(data_dir, md5=md5)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(a, b) for a, b in zip(*results)) and leftovers(data_dir) == []


def test_synthetic_has_the_real_shapes_and_touches_no_disk(tmp_path):
    missing = tmp_path / "never-created"
    train_x, train_y, test_x, test_y = cd.load_cifar10(missing, synthetic=True)
    assert train_x.shape == (50000, 32, 32, 3) and test_x.shape == (10000, 32, 32, 3)
    assert train_x.dtype == test_x.dtype == torch.uint8 and train_y.dtype == test_y.dtype == torch.int64
    assert 0 <= int(train_y.min()) and int(train_y.max()) <= 9 and not missing.exists()
    a, b, c = (cd.load_cifar10(missing, synthetic=True, subset=512, seed=s) for s in (1, 1, 2))
    assert len(a[0]) == 512 and len(a[2]) == 512 * 10000 // 50000
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a[0], c[0])


def test_trainer_reports_offline_in_one_line(tmp_path):
    env = dict(os.environ, CIFAR10_URL=UNREACHABLE)
    proc = subprocess.run([sys.executable, str(RUNNERS / "hlb_cifar.py"), "--data-dir", str(tmp_path / "d")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("cifar10: cannot download") and len(proc.stderr.strip().splitlines()) == 1
