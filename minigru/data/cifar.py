"""CIFAR-10: find it on disk (three formats), or download the official archive once, and load it fast.

``load_cifar10(root)`` looks under ``root`` (default ``$MINIGRU_DATA`` or
``~/.cache/minigru``) for, in this order:

1. ``cifar-10-batches-bin/``: the official *binary* version, extracted
   (``data_batch_1.bin`` ... ``data_batch_5.bin``, ``test_batch.bin``,
   ``batches.meta.txt``). Each ``.bin`` file is a sequence of 3,073-byte
   records: 1 label byte, then 1,024 red, 1,024 green and 1,024 blue bytes,
   row-major. The official files hold 10,000 records each; smaller files are
   accepted as long as their size is a positive multiple of 3,073 bytes (so
   tests and classroom subsets can use the same format).
2. ``cifar-10-batches-py/``: the pickled *python* version (``data_batch_1`` ...
   ``test_batch``, ``batches.meta``), read with a restricted unpickler
   (:mod:`minigru.data.cifar_pickle`) that refuses anything but numpy arrays.
3. ``cifar-10-binary.tar.gz``: the official binary archive, extracted safely
   (:mod:`minigru.data.safe_tar`) into ``cifar-10-batches-bin/``.

If none is there and ``download=True``, the archive is downloaded with pooch
from :data:`CIFAR10_URL` (or ``url=``, or ``$MINIGRU_CIFAR10_URL``), its MD5
is checked against :data:`CIFAR10_MD5` (or ``md5=``), and it is extracted; a
second call then finds the extracted folder and downloads nothing. An archive
already on disk is checked against ``md5=`` when one is given (without it, any
archive of the right layout is accepted, so that classroom subsets work).
Extracted folders are checked for structure (file names, sizes, label values),
not checksums: an MD5 describes the archive, and a folder has none to compare.
``root`` may also be the ``cifar-10-batches-bin`` or ``cifar-10-batches-py``
folder itself.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import re
import shutil
import tempfile

import numpy as np

from .base import ClassificationData, DatasetError, DatasetNotFoundError, data_root, require_optional
from .cifar_pickle import read_python_batch, read_python_meta
from .safe_tar import safe_extract

__all__ = ["load_cifar10", "read_binary_batch", "read_binary_meta", "CIFAR10_URL", "CIFAR10_MD5",
           "CIFAR10_CLASSES"]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # published on https://www.cs.toronto.edu/~kriz/cifar.html
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

ARCHIVE_NAME = "cifar-10-binary.tar.gz"
BINARY_DIR = "cifar-10-batches-bin"
PYTHON_DIR = "cifar-10-batches-py"
RECORD_BYTES = 1 + 3 * 32 * 32  # label byte + planar RGB
BINARY_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
BINARY_TEST = "test_batch.bin"
BINARY_META = "batches.meta.txt"
PYTHON_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
PYTHON_TEST = "test_batch"
PYTHON_META = "batches.meta"


# --------------------------------------------------------------------------- binary format

def _record_count(path: pathlib.Path) -> int:
    if not path.is_file():
        raise DatasetError(f"{path}: file missing; a {BINARY_DIR} folder needs {', '.join(BINARY_TRAIN)}, "
                           f"{BINARY_TEST} and {BINARY_META}")
    size = path.stat().st_size
    if size == 0 or size % RECORD_BYTES:
        raise DatasetError(f"{path}: {size:,} bytes is not a whole number of {RECORD_BYTES:,}-byte records "
                           f"(the official files are 10,000 records = {10000 * RECORD_BYTES:,} bytes); "
                           "the file is truncated or not a CIFAR-10 binary batch")
    return size // RECORD_BYTES


def read_binary_batch(path, images_out=None, labels_out=None):
    """One CIFAR-10 ``.bin`` batch -> (uint8 images (n, 3, 32, 32), int64 labels (n,)).

    ``images_out``/``labels_out`` (optional) are filled in place instead of
    allocating, which is how :func:`load_cifar10` concatenates batches without copies.
    """
    path = pathlib.Path(path)
    n = _record_count(path)
    records = np.fromfile(path, dtype=np.uint8).reshape(n, RECORD_BYTES)
    labels = records[:, 0]
    if labels.max() > 9:
        bad = int(np.flatnonzero(labels > 9)[0])
        raise DatasetError(f"{path}: record {bad} has label {int(labels[bad])}, outside 0..9; "
                           "the file is corrupt or not a CIFAR-10 binary batch")
    if images_out is None:
        images_out = np.empty((n, 3, 32, 32), np.uint8)
        labels_out = np.empty(n, np.int64)
    images_out.reshape(n, RECORD_BYTES - 1)[...] = records[:, 1:]
    labels_out[...] = labels
    return images_out, labels_out


def read_binary_meta(path) -> tuple[str, ...]:
    """``batches.meta.txt`` (one class name a line; blank lines ignored) -> the 10 class names."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file missing (it lists the 10 class names, one a line)")
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="ascii").splitlines() if line.strip())
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not a text file of class names ({err})") from err
    if len(names) != 10:
        raise DatasetError(f"{path}: expected 10 class names, one a line, found {len(names)}: {names[:12]}")
    return names


def _load_binary_dir(folder: pathlib.Path) -> ClassificationData:
    classes = read_binary_meta(folder / BINARY_META)
    train_files = [folder / name for name in BINARY_TRAIN]
    counts = [_record_count(p) for p in train_files]
    train_images = np.empty((sum(counts), 3, 32, 32), np.uint8)
    train_labels = np.empty(sum(counts), np.int64)
    start = 0
    for path, n in zip(train_files, counts):
        read_binary_batch(path, train_images[start:start + n], train_labels[start:start + n])
        start += n
    test_images, test_labels = read_binary_batch(folder / BINARY_TEST)
    return ClassificationData(train_images, train_labels, test_images, test_labels, classes)


# --------------------------------------------------------------------------- python (pickle) format

def _load_python_dir(folder: pathlib.Path) -> ClassificationData:
    for name in (*PYTHON_TRAIN, PYTHON_TEST, PYTHON_META):
        if not (folder / name).is_file():
            raise DatasetError(f"{folder / name}: file missing; a {PYTHON_DIR} folder needs "
                               f"{', '.join(PYTHON_TRAIN)}, {PYTHON_TEST} and {PYTHON_META}")
    classes = read_python_meta(folder / PYTHON_META)
    parts = [read_python_batch(folder / name) for name in PYTHON_TRAIN]
    train_images = np.concatenate([images for images, _ in parts])
    train_labels = np.concatenate([labels for _, labels in parts])
    test_images, test_labels = read_python_batch(folder / PYTHON_TEST)
    return ClassificationData(train_images, train_labels, test_images, test_labels, classes)


# --------------------------------------------------------------------------- archive and download

def _extract_archive(archive: pathlib.Path, root: pathlib.Path) -> ClassificationData:
    """Extract ``archive`` to ``root/cifar-10-batches-bin`` and load it.

    It is extracted into a temporary folder and validated first, so an
    interrupted or bad extraction never leaves a half folder to be found later.
    """
    with tempfile.TemporaryDirectory(prefix=".cifar10-extract-", dir=root) as tmp:
        safe_extract(archive, tmp)
        extracted = pathlib.Path(tmp) / BINARY_DIR
        if not extracted.is_dir():
            raise DatasetError(f"{archive}: the archive has no {BINARY_DIR}/ folder; "
                               "it is not the CIFAR-10 binary version")
        data = _load_binary_dir(extracted)  # the arrays are in memory: they outlive the folder's move
        shutil.move(str(extracted), str(root / BINARY_DIR))
    return data


def _normalise_md5(md5: str) -> str:
    text = str(md5).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise ValueError(f"md5 must be 32 hexadecimal digits, got {md5!r}")
    return text


def _check_md5(archive: pathlib.Path, md5: str) -> None:
    """Raise DatasetError naming ``archive`` and both hashes if its MD5 is not ``md5``."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(archive, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != md5:
        raise DatasetError(f"{archive}: MD5 {digest.hexdigest()} does not match the expected {md5}; the file is "
                           "damaged or not the archive you meant, and was not used. Delete it to download "
                           "it again, or pass the md5= of the archive you trust")


def _download(root: pathlib.Path, url: str, md5: str, progress: bool) -> pathlib.Path:
    pooch = require_optional("pooch", "downloading CIFAR-10")
    if progress:
        require_optional("tqdm", "the download progress bar")
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=60)
    try:
        path = pooch.retrieve(url, known_hash=f"md5:{md5}", fname=ARCHIVE_NAME, path=root,
                              downloader=downloader)
    except ValueError as err:
        if "hash" not in str(err).lower():
            raise
        # pooch checks the hash on a temporary file and deletes it on mismatch: nothing bad is kept.
        raise DatasetError(f"the file downloaded from {url} failed its checksum (expected MD5 {md5}); "
                           f"it was discarded and not used. ({err})") from err
    except Exception as err:  # network errors come from requests/urllib in many types
        raise DatasetNotFoundError(_not_found_message(root, f"downloading {url} failed: "
                                                            f"{type(err).__name__}: {err}")) from err
    return pathlib.Path(path)


def _not_found_message(root: pathlib.Path, reason: str) -> str:
    return (f"CIFAR-10 not found under {root} ({reason}). Put ONE of these under that folder:\n"
            f"  1. {root / BINARY_DIR}/ with {', '.join(BINARY_TRAIN)}, {BINARY_TEST}, {BINARY_META} "
            "(the extracted binary version)\n"
            f"  2. {root / PYTHON_DIR}/ with {', '.join(PYTHON_TRAIN)}, {PYTHON_TEST}, {PYTHON_META} "
            "(the extracted python version)\n"
            f"  3. {root / ARCHIVE_NAME} (the official archive from {CIFAR10_URL}, MD5 {CIFAR10_MD5})\n"
            "or call load_cifar10(download=True) where the internet is reachable. "
            "Choose the folder with load_cifar10(root=...) or the MINIGRU_DATA environment variable.")


# --------------------------------------------------------------------------- public entry point

def _find_local(root: pathlib.Path):
    """The loader for the first format present under ``root`` (or ``root`` itself), or None."""
    if (root / "data_batch_1.bin").exists():
        return _load_binary_dir, root
    if (root / "data_batch_1").exists() and (root / PYTHON_META).exists():
        return _load_python_dir, root
    if (root / BINARY_DIR).is_dir():
        return _load_binary_dir, root / BINARY_DIR
    if (root / PYTHON_DIR).is_dir():
        return _load_python_dir, root / PYTHON_DIR
    if (root / ARCHIVE_NAME).is_file():
        return (lambda archive: _extract_archive(archive, root)), root / ARCHIVE_NAME
    return None


def load_cifar10(root=None, download: bool = True, *, url: str | None = None, md5: str | None = None,
                 progress: bool = True) -> ClassificationData:
    """Load CIFAR-10 as uint8 ``(N, 3, 32, 32)`` images and int64 labels.

    Parameters
    ----------
    root : folder to look in and download to (default ``$MINIGRU_DATA`` or
        ``~/.cache/minigru``). May also be a ``cifar-10-batches-bin`` or
        ``cifar-10-batches-py`` folder itself.
    download : fetch the official archive when no copy is found (needs pooch:
        ``pip install 'minigru[train]'``).
    url : where to download from (default ``$MINIGRU_CIFAR10_URL`` or :data:`CIFAR10_URL`).
    md5 : expected MD5 of the archive: of a download (default :data:`CIFAR10_MD5`),
        and of an archive already in ``root`` when given (extracted folders
        have no hash to compare and are checked for structure only).
    progress : show a download progress bar (tqdm).

    Returns
    -------
    :class:`~minigru.data.ClassificationData` with ``train_images`` uint8
    (50000, 3, 32, 32), ``train_labels`` int64 (50000,), ``test_images`` uint8
    (10000, 3, 32, 32), ``test_labels`` int64 (10000,), and the 10 ``classes``
    (fewer images if the files hold fewer records; see the module docstring).

    Raises
    ------
    DatasetNotFoundError : no copy found and downloading was off or failed; the
        message says where to put which files.
    DatasetError : a file is missing, truncated or corrupt (the message names
        it), the download failed its checksum (the file is discarded), or an
        archive on disk does not have the ``md5`` given (the file is kept, unused).
    ValueError : ``md5`` is not 32 hexadecimal digits.
    UnsafeDataError : a pickle or archive tried to run code or escape ``root``.
    """
    root = data_root(root)
    md5 = None if md5 is None else _normalise_md5(md5)
    found = _find_local(root)
    if found is None:
        if not download:
            raise DatasetNotFoundError(_not_found_message(root, "no copy found and download=False"))
        root.mkdir(parents=True, exist_ok=True)
        archive = _download(root, url or os.environ.get("MINIGRU_CIFAR10_URL") or CIFAR10_URL,
                            md5 or CIFAR10_MD5, progress)
        return _extract_archive(archive, root)
    load, path = found
    if md5 is not None and path.name == ARCHIVE_NAME:
        _check_md5(path, md5)
    return load(path)
