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

Naming only allowed functions is not enough: a pickle also applies BUILD
(``__setstate__``) to the objects it made, and numpy's own ``dtype`` and
``ndarray`` ``__setstate__`` trust their tuple (a damaged dtype state crashes
the interpreter). So the arrays and dtypes are built by the classes below,
which accept exactly the states numpy writes for numeric data (checked shape,
dtype, byte order and data length) before numpy sees them, and the functions
the names resolve to refuse BUILD altogether. The caller gets plain
``numpy.ndarray`` objects.
"""
from __future__ import annotations

import io
import math
import pathlib
import pickle

import numpy as np

from .base import DatasetError, UnsafeDataError

__all__ = ["CifarUnpickler", "safe_unpickle", "read_python_batch", "read_python_meta"]

# numpy's own array reconstructor; asking an array for its reduce tuple finds it in
# every numpy version, whatever the module is called (numpy.core or numpy._core).
_NUMPY_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1, np.uint8))[0]
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: never object ("O") or void ("V")


def _refuse(what: str):
    raise UnsafeDataError(f"refusing to unpickle {what}")


class _Global:
    """What an allowed global name resolves to: a call of ``function`` with positional arguments only.

    A pickle may also apply BUILD (``__setstate__``, or a write into ``__dict__`` and attributes) to any
    object it holds, the resolved globals included; these objects have no ``__dict__`` and refuse it.
    """

    __slots__ = ("name", "function")

    def __init__(self, name, function):
        self.name, self.function = name, function

    def __call__(self, *args, **kwargs):
        if kwargs:
            _refuse(f"a call of {self.name} with keyword arguments")
        return self.function(*args)

    def __setstate__(self, state):
        _refuse(f"a change to {self.name} (BUILD on a global)")

    def __repr__(self):
        return self.name


def _is_shape(shape) -> bool:
    return type(shape) is tuple and all(type(n) is int and n >= 0 for n in shape)


class _PickledDtype:
    """``numpy.dtype(name, align, copy)`` from a pickle, restricted to plain numeric types.

    numpy then sets the byte order with BUILD, ``(3, "<", None, None, None, -1, -1, 0)``.
    numpy's own ``dtype.__setstate__`` trusts that tuple (a damaged one crashes the
    interpreter), so it is checked and applied here, and only the finished ``dtype``
    is handed to numpy (by :class:`_PickledArray` and :func:`_array_from_buffer`).
    """

    __slots__ = ("dtype", "built")

    def __init__(self, *args):
        name, flags = (args[0], args[1:]) if args else (None, ())
        if type(name) is not str or len(flags) > 2 or any(type(f) not in (bool, int) or f not in (0, 1)
                                                          for f in flags):
            _refuse(f"numpy.dtype{tuple(args)!r:.80}: numpy pickles write numpy.dtype(<name>, <flag>, <flag>)")
        dtype = np.dtype(name)
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            _refuse(f"a numpy dtype {dtype!r}: only numeric dtypes are allowed")
        self.dtype, self.built = dtype, False

    def __setstate__(self, state):
        if (self.built or type(state) is not tuple or len(state) != 8 or state[0] != 3
                or state[1] not in ("<", ">", "|", "=") or state[2:] != (None, None, None, -1, -1, 0)):
            _refuse(f"the dtype state {state!r:.80}: numpy writes (3, <byte order>, None, None, None, -1, -1, 0) "
                    "for a numeric dtype")
        self.built = True
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


def _dtype_of(value) -> np.dtype:
    if not isinstance(value, _PickledDtype):
        _refuse(f"an array whose dtype is {value!r:.80}, not a numpy.dtype from the same file")
    return value.dtype


class _PickledArray(np.ndarray):
    """The empty array numpy's ``_reconstruct`` makes, which BUILD then fills with
    ``(1, shape, dtype, fortran_order, data)``: checked here before numpy's ``__setstate__`` sees it."""

    def __setstate__(self, state):
        if type(state) is not tuple or len(state) not in (4, 5) or (len(state) == 5 and state[0] != 1):
            _refuse(f"the array state {state!r:.80}: numpy writes (1, shape, dtype, fortran_order, data)")
        shape, dtype, fortran, data = state[-4:]
        dtype = _dtype_of(dtype)
        if not _is_shape(shape) or type(fortran) not in (bool, int) or fortran not in (0, 1):
            _refuse(f"an array of shape {shape!r:.40} and fortran_order {fortran!r:.20}")
        if type(data) not in (bytes, str):  # str: a Python 2 byte string, decoded as latin-1
            _refuse(f"array data of type {type(data).__name__}: only bytes")
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise ValueError(f"an array of shape {shape} and dtype {dtype} needs {math.prod(shape) * dtype.itemsize} "
                             f"bytes, the file holds {len(data)}")
        super().__setstate__((1, shape, dtype, bool(fortran), data))


def _reconstruct_ndarray(subtype, shape, dtype_code):
    """``numpy.core.multiarray._reconstruct`` restricted to plain, empty ``numpy.ndarray``.

    numpy pickles every array as an empty ``_reconstruct(ndarray, (0,), b"b")``
    filled in by its state afterwards; any other shape would only serve to make
    numpy allocate memory the file does not contain.
    """
    if subtype is not _NDARRAY:
        _refuse(f"an array of type {subtype!r}: only numpy.ndarray is allowed")
    if type(shape) is not tuple or shape != (0,) or dtype_code not in (b"b", "b"):
        _refuse(f"numpy's _reconstruct with {shape!r:.40}, {dtype_code!r:.20}: numpy pickles write (0,), b'b'")
    return _NUMPY_RECONSTRUCT(_PickledArray, (0,), b"b")


def _array_from_buffer(buffer, dtype, shape, order):
    """``numpy.core.numeric._frombuffer`` (pickle protocol 5): a new array that owns its memory."""
    dtype = _dtype_of(dtype)
    if type(buffer) not in (bytes, bytearray) or not _is_shape(shape) or order not in ("C", "F"):
        _refuse(f"numpy's _frombuffer with a {type(buffer).__name__}, shape {shape!r:.40}, order {order!r:.10}")
    if len(buffer) != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"an array of shape {shape} and dtype {dtype} needs {math.prod(shape) * dtype.itemsize} "
                         f"bytes, the file holds {len(buffer)}")
    array = _PickledArray(shape, dtype, order=order)
    array[...] = np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)
    return array


def _latin1_bytes(*args):
    """``_codecs.encode(text, "latin1")``: how Python 3 pickles non-empty bytes at protocols 0-2."""
    if len(args) != 2 or type(args[0]) is not str or type(args[1]) is not str or args[1] != "latin1":
        _refuse(f"the call _codecs.encode({', '.join(repr(a)[:40] for a in args)}): only "
                "_codecs.encode(<str>, 'latin1'), Python 3's way of pickling bytes, is allowed")
    return args[0].encode("latin1")  # a character above U+00FF raises UnicodeEncodeError: a corrupt file


def _empty_bytes(*args):
    """``bytes()``, how Python 3 pickles ``b""`` at protocols 0-2; never ``bytes(n)`` or ``bytes(obj)``."""
    if args:
        _refuse(f"the call bytes({repr(args[0])[:40]}, ...): only bytes() with no argument (an empty bytes "
                "object) is allowed")
    return b""


def _ndarray_call(*args):
    _refuse("a call of numpy.ndarray(...): numpy pickles only pass the class to numpy's _reconstruct")


_NDARRAY = _Global("numpy.ndarray", _ndarray_call)
_RECONSTRUCT = _Global("numpy.core.multiarray._reconstruct", _reconstruct_ndarray)
_FROMBUFFER = _Global("numpy.core.numeric._frombuffer", _array_from_buffer)
_BYTES = _Global("bytes", _empty_bytes)
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Global("numpy.dtype", _PickledDtype),
    ("_codecs", "encode"): _Global("_codecs.encode", _latin1_bytes),
    ("__builtin__", "bytes"): _BYTES,  # the name Python 3 writes with fix_imports=True (the default)
    ("builtins", "bytes"): _BYTES,
}


def _plain(obj):
    """The unpickled value with every array a plain ``numpy.ndarray`` (and any bare dtype a ``numpy.dtype``)."""
    if isinstance(obj, np.ndarray):
        return obj.view(np.ndarray)
    if isinstance(obj, _PickledDtype):
        return obj.dtype
    if isinstance(obj, dict):
        return {_plain(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


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
        return _plain(CifarUnpickler(io.BytesIO(data), source).load())
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
