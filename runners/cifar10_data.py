"""CIFAR-10 for the speedrun trainers: download once, verify, cache as uint8 tensors.

    train_x, train_y, test_x, test_y = load_cifar10(data_dir)

Images are uint8 tensors in NHWC layout (N, 32, 32, 3), labels int64 in 0..9, all on the CPU.
The first call downloads cifar-10-python.tar.gz into data_dir (or uses a copy you put there),
checks its md5, parses the pickled batches straight out of the tarball and writes
data_dir/cifar10_uint8.pt; later calls only read that cache. CIFAR10_URL in the environment
points the download at a mirror. Failures raise DatasetError: one line, no traceback.
"""
import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.request

import torch

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
TARBALL = "cifar-10-python.tar.gz"
CACHE = "cifar10_uint8.pt"
TRAIN_MEMBERS = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
TEST_MEMBER = "cifar-10-batches-py/test_batch"
META_MEMBER = "cifar-10-batches-py/batches.meta"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class DatasetError(SystemExit):
    """Raised with a one-line message; uncaught, Python prints it to stderr and exits 1."""


def load_cifar10(data_dir, synthetic=False, subset=None, *, seed=0, url=None, md5=MD5, timeout=60):
    """Return (train_images, train_labels, test_images, test_labels); see the module docstring.

    subset=N keeps the first N training images and the same fraction of the test set (>= 1).
    synthetic=True touches no disk: deterministic random data of the real shapes and dtypes.
    """
    if synthetic:
        n_train = 50000 if subset is None else min(subset, 50000)
        data = synthetic_cifar10(n_train, max(1, n_train // 5), seed)
    else:
        data = _load_real(os.fspath(data_dir), url or os.environ.get("CIFAR10_URL") or URL, md5, timeout)
    train_x, train_y, test_x, test_y = data
    if subset is not None:
        n_test = max(1, len(test_x) * min(subset, len(train_x)) // len(train_x))
        train_x, train_y, test_x, test_y = train_x[:subset], train_y[:subset], test_x[:n_test], test_y[:n_test]
    return train_x, train_y, test_x, test_y


def default_data_dir(script):
    """DATA_DIR = None in a trainer means <parent of the script's directory>/data/cifar10."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(script))), "data", "cifar10")


def synthetic_cifar10(n_train=50000, n_test=10000, seed=0):
    """Noise images tinted by a per-class colour, so a model can learn something from them."""
    gen = torch.Generator().manual_seed(seed)
    palette = torch.randint(0, 128, (10, 3), generator=gen, dtype=torch.uint8)
    out = []
    for n in (n_train, n_test):
        labels = torch.randint(0, 10, (n,), generator=gen)
        noise = torch.randint(0, 128, (n, 32, 32, 3), generator=gen, dtype=torch.uint8)
        out += [noise + palette[labels][:, None, None, :], labels]
    return tuple(out)


def _load_real(data_dir, url, md5, timeout):
    cache = os.path.join(data_dir, CACHE)
    if os.path.exists(cache):
        try:
            d = torch.load(cache, weights_only=True)
            return d["train_images"], d["train_labels"], d["test_images"], d["test_labels"]
        except Exception as e:
            raise DatasetError(f"cifar10: cannot read the cache {cache} ({type(e).__name__}); "
                               "delete it and run again") from None
    tarball = os.path.join(data_dir, TARBALL)
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cifar10: cannot create {data_dir} ({e.strerror}); pass a writable --data-dir")
    if not os.path.exists(tarball):
        _download(url, tarball, timeout)
    _check_md5(tarball, md5)
    d = _parse_tarball(tarball)
    _atomic_save(d, cache)
    return d["train_images"], d["train_labels"], d["test_images"], d["test_labels"]


def _download(url, dest, timeout):
    print(f"cifar10: downloading {url} -> {dest}", flush=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=f".{TARBALL}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                f.write(chunk)
        os.replace(tmp, dest)  # only a complete download ever gets the real name
    except (OSError, ValueError) as e:  # URLError, HTTPError and socket timeouts are OSErrors
        os.unlink(tmp)
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise DatasetError(f"cifar10: cannot download {url} ({reason}); "
                           f"copy {TARBALL} into {os.path.dirname(dest)} and run again") from None


def _check_md5(path, expected):
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != expected:
        aside = path + ".corrupt"
        os.replace(path, aside)
        raise DatasetError(f"cifar10: {path} is corrupt (md5 {h.hexdigest()}, expected {expected}); "
                           f"moved it to {aside}; run again to download a fresh copy, or copy a good one there")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """The batches hold numpy arrays and nothing else; refuse any other class a pickle names."""

    def find_class(self, module, name):
        numpy_ok = module.split(".")[0] == "numpy" and name in {"_reconstruct", "_frombuffer", "ndarray", "dtype"}
        if numpy_ok or (module, name) == ("_codecs", "encode"):  # _codecs.encode: bytes in protocol-2 pickles
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in a CIFAR-10 batch")


def _parse_tarball(path):
    """Read only the seven known members straight out of the tarball; nothing is extracted."""
    def read(tar, name):
        member = tar.getmember(name)
        if not member.isfile():
            raise KeyError(name)
        return _NumpyOnlyUnpickler(tar.extractfile(member), encoding="bytes").load()

    def to_tensors(batches):
        images = torch.cat([torch.as_tensor(b[b"data"]).reshape(-1, 3, 32, 32) for b in batches])
        labels = torch.cat([torch.as_tensor(b[b"labels"], dtype=torch.int64) for b in batches])
        return images.permute(0, 2, 3, 1).contiguous(), labels  # channel-major rows -> NHWC

    try:
        with tarfile.open(path, "r:gz") as tar:
            train = [read(tar, name) for name in TRAIN_MEMBERS]
            test = [read(tar, TEST_MEMBER)]
            classes = [c.decode() for c in read(tar, META_MEMBER)[b"label_names"]]
        (train_x, train_y), (test_x, test_y) = to_tensors(train), to_tensors(test)
    except (OSError, EOFError, KeyError, ValueError, RuntimeError, tarfile.TarError, pickle.UnpicklingError) as e:
        raise DatasetError(f"cifar10: cannot read {path} ({type(e).__name__}: {e}); "
                           f"delete it and run again to download a fresh copy") from None
    return {"train_images": train_x, "train_labels": train_y, "test_images": test_x,
            "test_labels": test_y, "classes": classes}


def _atomic_save(obj, path):
    """Write to a temporary file in the same directory, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{CACHE}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
