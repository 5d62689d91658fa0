"""CIFAR-10 for the speedrun trainers: download once, verify, cache as uint8 tensors.

    train_x, train_y, test_x, test_y = load_cifar10(data_dir)

Images are uint8 tensors in NHWC layout (N, 32, 32, 3), labels int64 in 0..9, all on the CPU.
The first call downloads cifar-10-python.tar.gz into data_dir (or uses a copy you put there),
checks its md5, parses the pickled batches straight out of the tarball and writes
data_dir/cifar10_uint8.pt with a sha256 of its tensors inside; later calls read that cache and
check it (50000 / 10000 images of 32x32x3 uint8, int64 labels in 0..9, the ten class names, the
sha256) before trusting it. A cache that fails is rebuilt from the tarball when a good one is
beside it, and refused otherwise. CIFAR10_URL in the environment points the download at a mirror.
Failures raise DatasetError: one line, no traceback (the trainers print it and exit with status 2).
"""
import hashlib
import http.client
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
SIZES = (50000, 10000)  # training and test images
TENSORS = ("train_images", "train_labels", "test_images", "test_labels")  # the order the sha256 covers
TRAIN_MEMBERS = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
TEST_MEMBER = "cifar-10-batches-py/test_batch"
META_MEMBER = "cifar-10-batches-py/batches.meta"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class DatasetError(SystemExit):
    """Raised with a one-line message. The trainers catch it, print it and exit 2 (the user has
    something to do); uncaught, Python prints it to stderr and exits 1. Never a traceback."""


def load_cifar10(data_dir, synthetic=False, subset=None, *, seed=0, url=None, md5=MD5, timeout=60, sizes=SIZES):
    """Return (train_images, train_labels, test_images, test_labels); see the module docstring.

    subset=N keeps the first N training images and the same fraction of the test set (>= 1); it is
    taken after the cache is checked, so the cache always holds the whole data set.
    synthetic=True touches no disk (no cache either): deterministic random data of the real shapes.
    md5 and sizes describe the tarball and the cache to expect (tests pass tiny ones).
    """
    if synthetic:
        n_train = 50000 if subset is None else min(subset, 50000)
        data = synthetic_cifar10(n_train, max(1, n_train // 5), seed)
    else:
        data = _load_real(os.fspath(data_dir), url or os.environ.get("CIFAR10_URL") or URL, md5, timeout, sizes)
    train_x, train_y, test_x, test_y = data
    if subset is not None:
        n_test = max(1, len(test_x) * min(subset, len(train_x)) // len(train_x))
        train_x, train_y, test_x, test_y = train_x[:subset], train_y[:subset], test_x[:n_test], test_y[:n_test]
    return train_x, train_y, test_x, test_y


def default_data_dir(script):
    """DATA_DIR = None in a trainer means $REMOTE_RUN_DATA/cifar10: the dataset cache every run in a
    REMOTE_DIR shares (remote-run sets it). Run by hand without it: <parent of the script's directory>/data/cifar10."""
    shared = os.environ.get("REMOTE_RUN_DATA")
    if shared:
        return os.path.join(shared, "cifar10")
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(script))), "data", "cifar10")


def _where(folder):
    """``folder`` in words: the shared dataset cache, when it is in it."""
    shared = os.environ.get("REMOTE_RUN_DATA")
    if shared and os.path.abspath(folder).startswith(os.path.abspath(shared) + os.sep):
        return f"{folder} (the dataset cache every run in this REMOTE_DIR shares, kept between runs)"
    return folder


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


def write_cache(path, data):
    """Save {train_images, train_labels, test_images, test_labels, classes} with their sha256, atomically."""
    _atomic_save({**data, "sha256": _digest(data)}, path)


def _load_real(data_dir, url, md5, timeout, sizes):
    cache, tarball = os.path.join(data_dir, CACHE), os.path.join(data_dir, TARBALL)
    problem = None
    if os.path.exists(cache):
        try:
            d = torch.load(cache, weights_only=True)
        except Exception as e:  # truncated, not a torch file, or holding more than tensors
            problem = f"unreadable: {type(e).__name__}"
        else:
            problem = _cache_problem(d, sizes)
        if problem is None:
            return tuple(d[k] for k in TENSORS)
        if not os.path.exists(tarball):  # rebuilding would mean a download the user did not expect
            raise DatasetError(f"cifar10: {cache} is not a valid CIFAR-10 cache ({problem}); delete it and run "
                               f"again to download CIFAR-10, or copy {TARBALL} into {data_dir} to rebuild it")
        print(f"cifar10: {cache} is not a valid CIFAR-10 cache ({problem}); rebuilding it from {tarball}", flush=True)
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cifar10: cannot create {data_dir} ({e.strerror}); pass a writable --data-dir") from None
    if not os.path.exists(tarball):
        _download(url, tarball, timeout)
    corrupt = _md5_problem(tarball, md5)
    if corrupt and problem:
        raise DatasetError(f"cifar10: {cache} is not a valid CIFAR-10 cache ({problem}) and {corrupt}; "
                           f"delete {cache} and run again to download CIFAR-10, or copy a good {TARBALL} there")
    if corrupt:
        raise DatasetError(f"cifar10: {corrupt}; run again to download a fresh copy, or copy a good one there")
    d = _parse_tarball(tarball)
    write_cache(cache, d)
    return tuple(d[k] for k in TENSORS)


def _digest(d):
    h = hashlib.sha256()
    for key in TENSORS:
        h.update(d[key].contiguous().numpy())  # the raw bytes, without a copy
    return h.hexdigest()


def _cache_problem(d, sizes):
    """Why a loaded cache is not the CIFAR-10 we expect, in a few words; None when it is."""
    if not isinstance(d, dict) or not all(isinstance(d.get(k), torch.Tensor) for k in TENSORS):
        return "not the expected dict of tensors"
    for split, n in zip(("train", "test"), sizes):
        x, y = d[f"{split}_images"], d[f"{split}_labels"]
        if x.dtype != torch.uint8 or tuple(x.shape) != (n, 32, 32, 3):
            return f"{split}_images are {_describe(x)}, expected uint8 {n}x32x32x3"
        if y.dtype != torch.int64 or tuple(y.shape) != (n,):
            return f"{split}_labels are {_describe(y)}, expected int64 {n}"
        if n and not 0 <= int(y.min()) <= int(y.max()) <= 9:
            return f"{split}_labels outside 0..9"
    if d.get("classes") != CLASSES:
        return "wrong class names"
    if "sha256" not in d:
        return "no sha256: written by an older version or by hand"
    if d["sha256"] != _digest(d):
        return "sha256 mismatch: the tensors were changed or damaged"
    return None


def _describe(t):
    return f"{str(t.dtype).removeprefix('torch.')} {'x'.join(map(str, t.shape))}"


def _download(url, dest, timeout):
    print(f"cifar10: downloading {url} -> {dest}", flush=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=f".{TARBALL}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as response:
            expected, received = response.headers.get("Content-Length"), 0
            while chunk := response.read(1 << 20):
                f.write(chunk)
                received += len(chunk)
            # http.client returns a short body without complaint when the server closes early
            if expected is not None and expected.isdigit() and received != int(expected):
                raise ConnectionError(f"the connection closed after {received} of {expected} bytes")
        os.replace(tmp, dest)  # only a complete download ever gets the real name
    except (OSError, ValueError, http.client.HTTPException) as e:  # HTTPException: IncompleteRead (chunked)
        os.unlink(tmp)
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e) or type(e).__name__
        if isinstance(e, http.client.IncompleteRead):  # its own text counts bytes of one chunk only
            reason = "the connection closed before the end of the file"
        raise DatasetError(f"cifar10: cannot download {url} ({reason}); "
                           f"copy {TARBALL} into {_where(os.path.dirname(dest))} and run again") from None
    except BaseException:  # Ctrl+C or anything unforeseen: no half file left behind, then carry on
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _md5_problem(path, expected):
    """None if the file's md5 is `expected`; otherwise move it aside and say so."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() == expected:
        return None
    aside = path + ".corrupt"
    os.replace(path, aside)
    return f"{path} is corrupt (md5 {h.hexdigest()}, expected {expected}); moved it to {aside}"


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
