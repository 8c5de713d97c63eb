"""Read the pickled "CIFAR-10 python version" safely.

``pickle.load`` runs whatever functions a file names, so loading a pickle from
the internet with it is running that file as a program. The official
``cifar-10-batches-py`` files are Python 2 pickles (protocol 2) of plain
dicts; the only *functions* they name are numpy's array and dtype
reconstruction::

    data_batch_1 = {"batch_label": "training batch 1 of 5",
                    "labels":    [6, 9, 9, 4, ...],                      # 10,000 ints
                    "data":      <uint8 array (10000, 3072)>,            # numpy.core.multiarray._reconstruct,
                    "filenames": ["leptodactylus_pentadactylus_s_000004.png", ...]}  # numpy.ndarray, numpy.dtype
    batches.meta = {"label_names": ["airplane", ...], "num_cases_per_batch": 10000, "num_vis": 3072}

:class:`CifarUnpickler` allows exactly those (plus numpy's newer module name
``numpy._core`` and the buffer-based reconstruction of protocol 5 pickles that
Python 3 writes), for numeric dtypes only, and refuses every other global
(``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) *before* anything
is called, with :class:`~minigru.data.UnsafeDataError`.

Python 3 writes ``bytes`` (an array's pixels, or the keys of a dict loaded with
``encoding="bytes"``) at protocols 0-2 as a call, because those protocols
predate a bytes opcode: ``_codecs.encode(<str>, "latin1")``, and
``builtins.bytes()`` for an empty one (``pickle.Pickler.save_bytes``). The
unpickler accepts exactly these two calls: ``_codecs.encode`` with a ``str``
and the literal encoding ``"latin1"`` (no other codec is ever looked up, so no
codec module is imported and no bytes-to-bytes codec such as ``zlib`` runs),
and ``bytes`` with no argument at all (``bytes(n)`` would allocate ``n``
bytes). Any other argument is refused like a foreign global.
"""
from __future__ import annotations

import io
import pathlib
import pickle

import numpy as np

from .base import DatasetError, UnsafeDataError

__all__ = ["CifarUnpickler", "safe_unpickle", "read_python_batch", "read_python_meta"]

# numpy's own array reconstructor; asking an array for its reduce tuple finds it in
# every numpy version, whatever the module is called (numpy.core or numpy._core).
_NUMPY_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1, np.uint8))[0]
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: never object ("O") or void ("V")


def _numeric_dtype(*args):
    """``numpy.dtype(...)`` restricted to plain numeric types."""
    dtype = np.dtype(*args)
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
        raise UnsafeDataError(f"refusing a pickled numpy dtype {dtype!r}: only numeric dtypes are allowed")
    return dtype


class _NdarrayName:
    """What the name ``numpy.ndarray`` resolves to: numpy pickles only pass it to ``_reconstruct``, never
    call it, so the class itself (whose call allocates any shape asked for) is never handed out."""

    def __call__(self, *args, **kwargs):
        raise UnsafeDataError("refusing to unpickle a call of numpy.ndarray(...): numpy pickles only pass the "
                              "class to numpy's _reconstruct")

    def __repr__(self):
        return "numpy.ndarray"


_NDARRAY = _NdarrayName()


def _reconstruct_ndarray(subtype, shape, dtype_code):
    """``numpy.core.multiarray._reconstruct`` restricted to plain, empty ``numpy.ndarray``.

    numpy pickles every array as an empty ``_reconstruct(ndarray, (0,), b"b")``
    filled in by its state afterwards; any other shape would only serve to make
    numpy allocate memory the file does not contain.
    """
    if subtype is not _NDARRAY:
        raise UnsafeDataError(f"refusing to rebuild an array of type {subtype!r}: only numpy.ndarray is allowed")
    if type(shape) is not tuple or shape != (0,):
        raise UnsafeDataError(f"refusing numpy's _reconstruct with shape {shape!r}: numpy pickles write (0,)")
    return _NUMPY_RECONSTRUCT(np.ndarray, shape, dtype_code)


def _array_from_buffer(buffer, dtype, shape, order):
    """``numpy.core.numeric._frombuffer`` (pickle protocol 5) for numeric dtypes."""
    dtype = _numeric_dtype(dtype)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _latin1_bytes(*args):
    """``_codecs.encode(text, "latin1")``, the only form in which Python 3 pickles non-empty bytes at protocols 0-2."""
    if len(args) != 2 or type(args[0]) is not str or type(args[1]) is not str or args[1] != "latin1":
        shown = ", ".join(repr(a)[:40] for a in args)
        raise UnsafeDataError(f"refusing to unpickle the call _codecs.encode({shown}): only "
                              "_codecs.encode(<str>, 'latin1'), Python 3's way of pickling bytes, is allowed")
    return args[0].encode("latin1")  # a character above U+00FF raises UnicodeEncodeError: a corrupt file


def _empty_bytes(*args):
    """``bytes()``, how Python 3 pickles ``b""`` at protocols 0-2; never ``bytes(n)`` or ``bytes(obj)``."""
    if args:
        raise UnsafeDataError(f"refusing to unpickle the call bytes({repr(args[0])[:40]}, ...): only bytes() "
                              "with no argument (an empty bytes object) is allowed")
    return b""


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_ndarray,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_ndarray,
    ("numpy.core.numeric", "_frombuffer"): _array_from_buffer,
    ("numpy._core.numeric", "_frombuffer"): _array_from_buffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _numeric_dtype,
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _empty_bytes,  # the name Python 3 writes with fix_imports=True (the default)
    ("builtins", "bytes"): _empty_bytes,
}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array/dtype reconstruction (see the module docstring)."""

    def __init__(self, file, source: str = "<pickle>"):
        # latin1 turns Python 2 byte strings into str, as numpy's reconstruction expects.
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module, name):
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafeDataError(
                f"{self.source}: refusing to unpickle: the file names the global '{module}.{name}', "
                "which a CIFAR-10 python batch never contains (it only needs numpy arrays). "
                "The file is not a genuine CIFAR-10 batch and may be malicious; nothing in it was run. "
                "Delete it and use the official binary version (cifar-10-binary.tar.gz).")
        return allowed

    def load(self):
        # The reconstruction functions above do not know the file; every refusal must name it.
        try:
            return super().load()
        except UnsafeDataError as err:
            if str(err).startswith(f"{self.source}:"):
                raise
            raise UnsafeDataError(f"{self.source}: {err}. The file is not a genuine CIFAR-10 batch and may be "
                                  "malicious; nothing in it was run.") from err


def safe_unpickle(data: bytes, source: str = "<pickle>"):
    """Unpickle ``data`` with :class:`CifarUnpickler`; malformed data raises DatasetError naming ``source``."""
    try:
        return CifarUnpickler(io.BytesIO(data), source).load()
    except UnsafeDataError:
        raise
    except Exception as err:  # truncated or garbled pickles raise many different types
        raise DatasetError(f"{source}: not a readable CIFAR-10 python batch "
                           f"(truncated or corrupt pickle: {type(err).__name__}: {err})") from err


def _as_str_keys(obj, source: str) -> dict:
    if not isinstance(obj, dict):
        raise DatasetError(f"{source}: expected a pickled dict, found {type(obj).__name__}")
    # Python 3 re-pickles (encoding='bytes') have bytes keys, Python 2 originals str keys.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_python_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One ``cifar-10-batches-py`` batch file -> (uint8 images (n, 3, 32, 32), int64 labels (n,))."""
    path = pathlib.Path(path)
    batch = _as_str_keys(safe_unpickle(path.read_bytes(), str(path)), str(path))
    for key in ("data", "labels"):
        if key not in batch:
            raise DatasetError(f"{path}: the batch dict has no '{key}' entry (keys: {sorted(map(str, batch))})")
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = f"{data.dtype} array {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: 'data' must be a uint8 array (n, 3072), found {what}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{path}: 'labels' must be a list of integers ({err})") from err
    if labels.shape != (len(data),):
        raise DatasetError(f"{path}: {len(data)} images but 'labels' has shape {labels.shape}")
    if len(data) == 0:
        raise DatasetError(f"{path}: the batch holds no images")
    _check_label_range(labels, path)
    return data.reshape(-1, 3, 32, 32), labels


def read_python_meta(path) -> tuple[str, ...]:
    """``cifar-10-batches-py/batches.meta`` -> the 10 class names."""
    path = pathlib.Path(path)
    meta = _as_str_keys(safe_unpickle(path.read_bytes(), str(path)), str(path))
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DatasetError(f"{path}: expected 'label_names' to be a list of 10 class names, found {names!r}")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def _check_label_range(labels: np.ndarray, path) -> None:
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        raise DatasetError(f"{path}: label {int(labels[bad[0]])} of record {int(bad[0])} is outside 0..9; "
                           "the file is corrupt or not a CIFAR-10 batch")
