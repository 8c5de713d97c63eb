"""CIFAR-10 loading: the three on-disk formats, safe unpickling and extraction, download, errors.

Every test writes its own tiny copy of the official formats (a few records per
file) under tmp_path; nothing here reads /work/shared or the internet.
"""
import functools
import hashlib
import http.server
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest

from minigru.data import (CIFAR10_CLASSES, CIFAR10_MD5, DatasetError, DatasetNotFoundError, UnsafeDataError,
                          load_cifar10)

TRAIN_BIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
TRAIN_PY = [f"data_batch_{i}" for i in range(1, 6)]


def _random_split(rng, n):
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n)
    return images, labels


def _expected(rng, counts=(3, 2, 4, 1, 2), n_test=3):
    """Random uint8 images/labels per batch file: {file_index: (images, labels)}; last entry is the test batch."""
    return [_random_split(rng, n) for n in (*counts, n_test)]


def _binary_records(images, labels) -> bytes:
    # The published layout, written byte by byte: label, then 1024 R, 1024 G, 1024 B, rows in order.
    out = bytearray()
    for image, label in zip(images, labels):
        out.append(int(label))
        for channel in range(3):
            for row in range(32):
                out.extend(bytes(int(v) for v in image[channel, row]))
    return bytes(out)


def write_binary_dir(folder, parts, meta=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in zip([*TRAIN_BIN, "test_batch.bin"], parts):
        (folder / name).write_bytes(_binary_records(images, labels))
    (folder / "batches.meta.txt").write_text(meta if meta is not None else "\n".join(CIFAR10_CLASSES) + "\n\n")


# ---- a Python 2 style pickle, written opcode by opcode as cPickle (protocol 2) wrote the official files

def _py2_str(s) -> bytes:
    data = s.encode("latin1") if isinstance(s, str) else s
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data          # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(data)) + data      # BINSTRING


def _py2_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def _py2_array(a: np.ndarray) -> bytes:
    assert a.dtype == np.uint8 and a.ndim == 2
    dtype = (b"cnumpy\ndtype\n" + _py2_str("u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
             + b"(" + _py2_int(3) + _py2_str("|") + b"NNN" + b"J\xff\xff\xff\xff" * 2 + _py2_int(0) + b"tb")
    return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _py2_int(0) + b"\x85"
            + _py2_str("b") + b"\x87R"
            + b"(" + _py2_int(1) + _py2_int(a.shape[0]) + _py2_int(a.shape[1]) + b"\x86" + dtype + b"\x89"
            + _py2_str(a.tobytes()) + b"tb")


def _py2_value(v) -> bytes:
    if isinstance(v, np.ndarray):
        return _py2_array(v)
    if isinstance(v, (str, bytes)):
        return _py2_str(v)
    if isinstance(v, int):
        return _py2_int(v)
    if isinstance(v, list):
        return b"](" + b"".join(_py2_value(x) for x in v) + b"e"
    raise TypeError(v)


def py2_pickle(d: dict) -> bytes:
    return b"\x80\x02}(" + b"".join(_py2_str(k) + _py2_value(v) for k, v in d.items()) + b"u."


def write_python_dir(folder, parts, pickler=py2_pickle):
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, (images, labels)) in enumerate(zip([*TRAIN_PY, "test_batch"], parts)):
        batch = {"data": images.reshape(len(images), 3072), "labels": [int(v) for v in labels],
                 "batch_label": f"batch {i}", "filenames": [f"img_{i}_{j}.png" for j in range(len(images))]}
        (folder / name).write_bytes(pickler(batch))
    meta = {"num_cases_per_batch": 10000, "label_names": list(CIFAR10_CLASSES), "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickler(meta))


def check_loaded(data, parts):
    train_images = np.concatenate([p[0] for p in parts[:5]])
    train_labels = np.concatenate([p[1] for p in parts[:5]])
    assert data.train_images.dtype == np.uint8 and data.test_images.dtype == np.uint8
    assert data.train_labels.dtype == np.int64 and data.test_labels.dtype == np.int64
    np.testing.assert_array_equal(data.train_images, train_images)
    np.testing.assert_array_equal(data.train_labels, train_labels)
    np.testing.assert_array_equal(data.test_images, parts[5][0])
    np.testing.assert_array_equal(data.test_labels, parts[5][1])
    assert data.classes == CIFAR10_CLASSES


@pytest.fixture
def parts(rng):
    return _expected(rng)


# ------------------------------------------------------------------ formats on disk

def test_binary_folder(tmp_path, parts):
    write_binary_dir(tmp_path / "cifar-10-batches-bin", parts)
    data = load_cifar10(tmp_path, download=False)
    check_loaded(data, parts)
    x, y, xt, yt, classes = data  # a named tuple: unpacks too
    assert x.shape == (12, 3, 32, 32) and data.train == (data.train_images, data.train_labels)


def test_root_may_be_the_batches_folder_itself(tmp_path, parts):
    write_binary_dir(tmp_path / "cifar-10-batches-bin", parts)
    check_loaded(load_cifar10(tmp_path / "cifar-10-batches-bin", download=False), parts)


def test_default_root_from_environment(tmp_path, parts, monkeypatch):
    write_binary_dir(tmp_path / "cifar-10-batches-bin", parts)
    monkeypatch.setenv("MINIGRU_DATA", str(tmp_path))
    check_loaded(load_cifar10(download=False), parts)


def test_py2_pickle_fixture_is_a_valid_pickle(parts):
    # The hand-written Python 2 pickle must mean what we think, read by the standard (trusting) unpickler.
    images, labels = parts[0]
    raw = py2_pickle({"data": images.reshape(-1, 3072), "labels": [int(v) for v in labels]})
    loaded = pickle.loads(raw, encoding="latin1")
    np.testing.assert_array_equal(loaded["data"], images.reshape(-1, 3072))
    assert loaded["labels"] == list(labels)


def test_python_folder_py2_pickles(tmp_path, parts):
    write_python_dir(tmp_path / "cifar-10-batches-py", parts)
    check_loaded(load_cifar10(tmp_path, download=False), parts)


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_python_folder_python3_repickles_with_bytes_keys(tmp_path, parts, protocol):
    def repickle(d):  # what a student gets by pickle.dump-ing the dict loaded with encoding='bytes'
        return pickle.dumps({k.encode(): v for k, v in d.items()}, protocol=protocol)
    write_python_dir(tmp_path / "cifar-10-batches-py", parts, pickler=repickle)
    check_loaded(load_cifar10(tmp_path, download=False), parts)


def test_binary_folder_preferred_over_python_folder(tmp_path, parts, rng):
    write_binary_dir(tmp_path / "cifar-10-batches-bin", parts)
    write_python_dir(tmp_path / "cifar-10-batches-py", _expected(rng))
    check_loaded(load_cifar10(tmp_path, download=False), parts)


# ------------------------------------------------------------------ malicious pickles

class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("make", [
    lambda marker: _Evil(os.system, f"touch {marker}"),
    lambda marker: _Evil(eval, f"open({str(marker)!r}, 'w')"),
    lambda marker: _Evil(subprocess.Popen, ["touch", str(marker)]),
], ids=["os.system", "builtins.eval", "subprocess.Popen"])
@pytest.mark.parametrize("where", ["data_batch_1", "batches.meta"])
def test_malicious_pickle_refused_before_running(tmp_path, parts, make, where):
    folder = tmp_path / "cifar-10-batches-py"
    write_python_dir(folder, parts)
    marker = tmp_path / "pwned"
    (folder / where).write_bytes(pickle.dumps({"data": make(marker), "labels": [1]}, protocol=2))
    with pytest.raises(UnsafeDataError, match="refusing to unpickle") as info:
        load_cifar10(tmp_path, download=False)
    assert where in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    np.array([1, "a"], dtype=object),       # object arrays would hold arbitrary pickled objects
    np.recarray((2,), dtype=[("a", "u1")]),  # subclasses and structured dtypes are not what CIFAR holds
])
def test_non_numeric_numpy_payloads_refused(tmp_path, parts, payload):
    folder = tmp_path / "cifar-10-batches-py"
    write_python_dir(folder, parts)
    (folder / "data_batch_2").write_bytes(pickle.dumps({"data": payload, "labels": [1, 2]}, protocol=2))
    with pytest.raises(UnsafeDataError):
        load_cifar10(tmp_path, download=False)


# ------------------------------------------------------------------ corrupt files

def test_truncated_binary_file_named(tmp_path, parts):
    folder = tmp_path / "cifar-10-batches-bin"
    write_binary_dir(folder, parts)
    path = folder / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"data_batch_3\.bin.*3,073-byte records"):
        load_cifar10(tmp_path, download=False)


def test_empty_binary_file_refused(tmp_path, parts):
    folder = tmp_path / "cifar-10-batches-bin"
    write_binary_dir(folder, parts)
    (folder / "test_batch.bin").write_bytes(b"")
    with pytest.raises(DatasetError, match="test_batch.bin"):
        load_cifar10(tmp_path, download=False)


def test_missing_binary_file_named(tmp_path, parts):
    folder = tmp_path / "cifar-10-batches-bin"
    write_binary_dir(folder, parts)
    (folder / "data_batch_5.bin").unlink()
    with pytest.raises(DatasetError, match=r"data_batch_5\.bin: file missing"):
        load_cifar10(tmp_path, download=False)


def test_bad_label_byte_named(tmp_path, parts):
    folder = tmp_path / "cifar-10-batches-bin"
    write_binary_dir(folder, parts)
    raw = bytearray((folder / "data_batch_2.bin").read_bytes())
    raw[3073] = 200  # label of record 1
    (folder / "data_batch_2.bin").write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"data_batch_2\.bin: record 1 has label 200"):
        load_cifar10(tmp_path, download=False)


def test_meta_must_list_ten_classes(tmp_path, parts):
    write_binary_dir(tmp_path / "cifar-10-batches-bin", parts, meta="\n".join(CIFAR10_CLASSES[:9]))
    with pytest.raises(DatasetError, match="batches.meta.txt: expected 10 class names"):
        load_cifar10(tmp_path, download=False)


def test_truncated_pickle_named(tmp_path, parts):
    folder = tmp_path / "cifar-10-batches-py"
    write_python_dir(folder, parts)
    raw = (folder / "data_batch_4").read_bytes()
    (folder / "data_batch_4").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="data_batch_4.*truncated or corrupt"):
        load_cifar10(tmp_path, download=False)


def test_pickle_with_wrong_data_shape(tmp_path, parts):
    folder = tmp_path / "cifar-10-batches-py"
    write_python_dir(folder, parts)
    (folder / "test_batch").write_bytes(py2_pickle({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    with pytest.raises(DatasetError, match=r"test_batch: 'data' must be a uint8 array \(n, 3072\)"):
        load_cifar10(tmp_path, download=False)


# ------------------------------------------------------------------ archives

def make_archive(path, parts, extra_members=()):
    staging = path.parent / "staging"
    write_binary_dir(staging / "cifar-10-batches-bin", parts)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
        for info, data in extra_members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_archive_extracted_then_cached(tmp_path, parts):
    root = tmp_path / "root"
    root.mkdir()
    make_archive(root / "cifar-10-binary.tar.gz", parts)
    check_loaded(load_cifar10(root, download=False), parts)
    assert (root / "cifar-10-batches-bin" / "data_batch_1.bin").is_file()
    assert not [p for p in root.iterdir() if p.name.startswith(".cifar10-extract")]  # temporary folder gone
    (root / "cifar-10-binary.tar.gz").unlink()
    check_loaded(load_cifar10(root, download=False), parts)  # second call reads the extracted folder


def test_archive_on_disk_checked_against_md5(tmp_path, parts):
    root = tmp_path / "root"
    root.mkdir()
    archive = root / "cifar-10-binary.tar.gz"
    actual = make_archive(archive, parts)
    for wrong in (CIFAR10_MD5, actual[::-1], actual[:-1] + ("0" if actual[-1] != "0" else "1")):
        with pytest.raises(DatasetError) as info:
            load_cifar10(root, download=True, md5=wrong, url="http://127.0.0.1:9/never-contacted.tar.gz")
        message = str(info.value)
        assert str(archive) in message and actual in message and wrong in message
        assert "\n" not in message
        assert not (root / "cifar-10-batches-bin").exists() and archive.is_file()  # not used, not deleted
    with pytest.raises(ValueError, match="32 hexadecimal digits"):
        load_cifar10(root, download=False, md5="md5-of-my-archive")
    check_loaded(load_cifar10(root, download=False, md5=f" {actual.upper()} "), parts)


def _member(name, type_=tarfile.REGTYPE, linkname="", data=b"x"):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = type_, linkname
    info.size = len(data) if type_ == tarfile.REGTYPE else 0
    return info, (data if type_ == tarfile.REGTYPE else None)


@pytest.mark.parametrize("member", [
    ("../evil.txt",),
    ("cifar-10-batches-bin/../../evil.txt",),
    ("/tmp/minigru-test-evil-absolute.txt",),
    ("cifar-10-batches-bin/link", tarfile.SYMTYPE, "../../evil.txt"),
    ("cifar-10-batches-bin/hard", tarfile.LNKTYPE, "/etc/passwd"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink"])
def test_unsafe_archive_refused(tmp_path, parts, member):
    root = tmp_path / "a" / "root"
    root.mkdir(parents=True)
    make_archive(root / "cifar-10-binary.tar.gz", parts, [_member(*member)])
    with pytest.raises(UnsafeDataError, match="nothing was extracted"):
        load_cifar10(root, download=False)
    assert not (tmp_path / "a" / "evil.txt").exists() and not (root.parent.parent / "evil.txt").exists()
    assert not (root / "cifar-10-batches-bin").exists()
    assert not os.path.exists("/tmp/minigru-test-evil-absolute.txt")


def test_corrupt_archive_named(tmp_path):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DatasetError, match="cifar-10-binary.tar.gz: cannot read the archive"):
        load_cifar10(tmp_path, download=False)


# ------------------------------------------------------------------ download

class _Server:
    def __init__(self, folder):
        self.requests = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                outer.requests.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     functools.partial(Handler, directory=str(folder)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(tmp_path, monkeypatch):
    pytest.importorskip("pooch")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    served = tmp_path / "served"
    served.mkdir()
    s = _Server(served)
    s.folder = served
    yield s
    s.close()


def test_download_verify_extract_and_cache(tmp_path, parts, server):
    md5 = make_archive(server.folder / "fake-cifar.tar.gz", parts)
    root = tmp_path / "cache"
    check_loaded(load_cifar10(root, url=server.url("fake-cifar.tar.gz"), md5=md5, progress=False), parts)
    assert len(server.requests) == 1
    check_loaded(load_cifar10(root, url=server.url("fake-cifar.tar.gz"), md5=md5, progress=False), parts)
    assert len(server.requests) == 1  # the second call read the cache


def test_download_url_from_environment(tmp_path, parts, server, monkeypatch):
    md5 = make_archive(server.folder / "fake-cifar.tar.gz", parts)
    monkeypatch.setenv("MINIGRU_CIFAR10_URL", server.url("fake-cifar.tar.gz"))
    check_loaded(load_cifar10(tmp_path / "cache", md5=md5, progress=False), parts)


def test_download_checksum_mismatch_discards_file(tmp_path, parts, server):
    md5 = make_archive(server.folder / "fake-cifar.tar.gz", parts)
    wrong = md5[::-1]
    root = tmp_path / "cache"
    with pytest.raises(DatasetError, match="failed its checksum.*discarded"):
        load_cifar10(root, url=server.url("fake-cifar.tar.gz"), md5=wrong, progress=False)
    assert list(root.iterdir()) == []
    with pytest.raises(DatasetNotFoundError):
        load_cifar10(root, download=False)


def test_download_failure_says_where_to_put_files(tmp_path, server):
    with pytest.raises(DatasetNotFoundError, match="downloading .* failed") as info:
        load_cifar10(tmp_path / "cache", url=server.url("missing.tar.gz"), md5=CIFAR10_MD5, progress=False)
    assert "cifar-10-batches-bin" in str(info.value)


def test_offline_error_lists_formats_and_places(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(tmp_path, download=False)
    message = str(info.value)
    for needle in ("cifar-10-batches-bin", "cifar-10-batches-py", "cifar-10-binary.tar.gz", "MINIGRU_DATA",
                   str(tmp_path), "data_batch_1.bin", "batches.meta.txt", CIFAR10_MD5):
        assert needle in message


def test_missing_pooch_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pooch", None)  # makes `import pooch` fail
    with pytest.raises(ImportError, match=r"pip install 'minigru\[train\]'"):
        load_cifar10(tmp_path, url="http://127.0.0.1:9/none.tar.gz")


def test_import_needs_no_optional_packages():
    code = ("import sys, minigru, minigru.data; "
            "print(sorted(m for m in ('pooch', 'PIL', 'tqdm', 'requests') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
