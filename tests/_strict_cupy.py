"""A strict CuPy stand-in for test runs without a GPU: NumPy underneath, CuPy's refusals on top.

``tests/conftest.py`` installs :data:`cupy` as minigru's "cupy" backend
(``minigru.backend._use_cupy_stand_in``), so every ``[cupy]`` test variant
runs on any CPU. The stand-in behaves like CuPy where backend bugs show
without a device:

- its arrays refuse implicit conversion to NumPy (``np.asarray(device)``
  raises CuPy's TypeError); ``.get()`` / ``asnumpy`` copy explicitly;
- its ufuncs, functions and operators refuse NumPy arrays ("Unsupported
  type"); NumPy scalars and Python numbers are fine, as on CuPy;
- functions and methods accept only the keyword arguments CuPy 13/14
  accept (the tables below; ``tests/test_strict_cupy.py`` compares them
  with the installed CuPy's signatures);
- basic-index assignment of a host array is refused (CuPy's ``fill`` path);
- 0-d results stay arrays (CuPy reductions return 0-d device arrays), and
  arrays have no ``__index__``, as on CuPy;
- it counts host syncs (``.get()``, ``float()``, ``int()``, ``bool()``,
  ``complex()``, ``.item()``, ``.tolist()``, formatting, boolean-mask
  indexing, stream synchronisation) and host-to-device copies in
  :data:`counters`.

What it cannot show: GPU numerics (it computes with NumPy), kernel
compilation (NVRTC) and CUDA library loading (cuBLAS, ...), asynchrony and
memory limits. Those need the real CuPy on a GPU: the ``[cupy-gpu]`` variants.
"""
from __future__ import annotations

import types

import numpy as np

IMPLICIT_CONVERSION = ("Implicit conversion to a NumPy array is not allowed. "
                       "Please use `.get()` to construct a NumPy array explicitly.")


class Counters:
    """Host syncs and host-to-device copies since the last :meth:`reset`."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.syncs = 0
        self.host_to_device = 0


counters = Counters()

# Keyword arguments CuPy accepts (CuPy 13.6 and 14.2 agree on these); positional use is unchecked.
UFUNC_KWARGS = frozenset({"out", "casting", "dtype"})
UFUNCS = ("add subtract multiply divide true_divide floor_divide power maximum minimum exp log log1p expm1 "
          "tanh sqrt square abs absolute sign negative greater greater_equal less less_equal equal not_equal "
          "isfinite isnan isinf logical_and logical_or logical_not floor ceil sin cos").split()
_SHAPE_KW = {"shape", "dtype", "order"}
_LIKE_KW = {"dtype", "order", "subok", "shape"}
FUNCTION_KWARGS = {
    "empty": _SHAPE_KW, "zeros": _SHAPE_KW, "ones": _SHAPE_KW, "full": _SHAPE_KW | {"fill_value"},
    "empty_like": _LIKE_KW | {"prototype"}, "zeros_like": _LIKE_KW | {"a"}, "ones_like": _LIKE_KW | {"a"},
    "full_like": _LIKE_KW | {"a", "fill_value"},
    "arange": {"start", "stop", "step", "dtype"}, "eye": {"N", "M", "k", "dtype", "order"},
    "asarray": {"a", "dtype", "order", "copy", "blocking"}, "array": {"obj", "dtype", "copy", "order", "subok",
                                                                     "ndmin", "blocking"},
    "ascontiguousarray": {"a", "dtype"}, "asnumpy": {"a", "stream", "order", "out", "blocking"},
    "concatenate": {"tup", "axis", "out", "dtype", "casting"}, "stack": {"tup", "axis", "out", "dtype", "casting"},
    "matmul": {"axes", "axis", "keepdims", "casting", "dtype", "signature", "order", "out"},
    "einsum": {"dtype", "optimize"},
    "repeat": {"a", "repeats", "axis"}, "tile": {"A", "reps"}, "copyto": {"dst", "src", "casting", "where"},
    "clip": {"a", "a_min", "a_max", "out"}, "broadcast_to": {"array", "shape"}, "take": {"a", "indices", "axis", "out"},
    "pad": {"array", "pad_width", "mode", "constant_values"}, "bincount": {"x", "weights", "minlength"},
    "where": {"condition", "x", "y"}, "dot": {"a", "b", "out"}, "tensordot": {"a", "b", "axes"},
    "outer": {"a", "b", "out"},
    "sum": {"a", "axis", "dtype", "out", "keepdims"}, "mean": {"a", "axis", "dtype", "out", "keepdims"},
    "var": {"a", "axis", "dtype", "out", "ddof", "keepdims"}, "std": {"a", "axis", "dtype", "out", "ddof", "keepdims"},
    "max": {"a", "axis", "out", "keepdims"}, "min": {"a", "axis", "out", "keepdims"},
    "amax": {"a", "axis", "out", "keepdims"}, "amin": {"a", "axis", "out", "keepdims"},
    "all": {"a", "axis", "out", "keepdims"}, "any": {"a", "axis", "out", "keepdims"},
    "argmax": {"a", "axis", "dtype", "out", "keepdims"}, "argmin": {"a", "axis", "dtype", "out", "keepdims"},
    "cumsum": {"a", "axis", "dtype", "out"}, "count_nonzero": {"a", "axis"},
    "transpose": {"a", "axes"}, "moveaxis": {"a", "source", "destination"}, "swapaxes": {"a", "axis1", "axis2"},
    "reshape": {"a", "newshape", "order", "copy"}, "ravel": {"a", "order"}, "squeeze": {"a", "axis"},
    "expand_dims": {"a", "axis"}, "split": {"ary", "indices_or_sections", "axis"}, "flip": {"a", "axis"},
    "sort": {"a", "axis", "kind"}, "argsort": {"a", "axis", "kind"}, "allclose": {"a", "b", "rtol", "atol",
                                                                                 "equal_nan"},
    "round": {"a", "decimals", "out"}, "shape": {"a"}, "ndim": {"a"}, "size": {"a", "axis"},
}
NAMESPACE_KWARGS = {"linalg.norm": {"x", "ord", "axis", "keepdims"},
                    "lib.stride_tricks.as_strided": {"x", "shape", "strides"}}
METHOD_KWARGS = {
    "astype": {"dtype", "order", "casting", "subok", "copy"}, "sum": {"axis", "dtype", "out", "keepdims"},
    "mean": {"axis", "dtype", "out", "keepdims"}, "var": {"axis", "dtype", "out", "ddof", "keepdims"},
    "std": {"axis", "dtype", "out", "ddof", "keepdims"}, "max": {"axis", "out", "keepdims"},
    "min": {"axis", "out", "keepdims"}, "all": {"axis", "out", "keepdims"}, "any": {"axis", "out", "keepdims"},
    "argmax": {"axis", "out", "dtype", "keepdims"}, "argmin": {"axis", "out", "dtype", "keepdims"},
    "cumsum": {"axis", "dtype", "out"}, "prod": {"axis", "dtype", "out", "keepdims"},
    "reshape": {"order", "copy"}, "transpose": set(), "copy": {"order"}, "ravel": {"order"}, "flatten": {"order"},
    "clip": {"min", "max", "out"}, "take": {"indices", "axis", "out"}, "repeat": {"repeats", "axis"},
    "squeeze": {"axis"}, "swapaxes": {"axis1", "axis2"}, "dot": {"b", "out"}, "round": {"decimals", "out"},
    "view": {"dtype", "type"}, "nonzero": set(), "trace": {"offset", "axis1", "axis2", "dtype", "out"},
    "diagonal": {"offset", "axis1", "axis2"},
}


FUNCTION_KWARGS = {name: frozenset(v) for name, v in FUNCTION_KWARGS.items()}
NAMESPACE_KWARGS = {name: frozenset(v) for name, v in NAMESPACE_KWARGS.items()}
METHOD_KWARGS = {name: frozenset(v) for name, v in METHOD_KWARGS.items()}


def _refuse(value):
    raise TypeError(f"Unsupported type {type(value)}")


_SCALARS = (bool, int, float, complex, np.generic, np.dtype, type, str, slice)


def _dev(value, sequences=False):
    """The NumPy array inside a device value; Python/NumPy scalars pass; host arrays are refused."""
    if type(value) is ndarray:
        return value._a
    if value is None or isinstance(value, _SCALARS):
        return value
    if sequences and isinstance(value, (tuple, list)):
        return type(value)(_dev(v, True) for v in value)
    return _refuse(value)


def _wrap(result):
    if type(result) is np.ndarray:
        return ndarray(result)
    if isinstance(result, np.generic):
        return ndarray(np.asarray(result))
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    if isinstance(result, list) and result and isinstance(result[0], np.ndarray):
        return [_wrap(r) for r in result]
    return result


def _call(where, func, args, kwargs, allowed, sequences=True):
    out = None
    if kwargs:
        if not allowed.issuperset(kwargs):
            unknown = sorted(set(kwargs) - allowed)
            raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r} (CuPy does not accept it)")
        out = kwargs.get("out")
        kwargs = {k: _dev(v, sequences) for k, v in kwargs.items()}
    result = func(*[_dev(a, sequences) for a in args], **kwargs)
    if out is not None and type(out) is ndarray and result is out._a:
        return out
    return _wrap(result)


def _host_to_device(obj, dtype=None, copy=None):
    """cupy.asarray/array: device arrays pass; host data is copied to the device (counted)."""
    if isinstance(obj, ndarray):
        a = obj._a if dtype is None else obj._a.astype(dtype, copy=bool(copy))
        return obj if a is obj._a and not copy else ndarray(a.copy() if copy and a is obj._a else a)
    if isinstance(obj, (list, tuple)) and any(isinstance(v, ndarray) for v in obj):
        return ndarray(np.asarray([_dev(v, True) for v in obj], dtype=dtype))  # stacked on the device
    counters.host_to_device += 1
    return ndarray(np.array(obj, dtype=dtype))


def _index(key):
    """Unwrap an index; host index arrays are copied to the device (counted), device masks sync."""
    if type(key) in (int, slice):
        return key
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        if key.dtype == np.bool_:
            counters.syncs += 1          # CuPy reads the number of True entries back to size the result
        return key._a
    if isinstance(key, (np.ndarray, list)):
        counters.host_to_device += 1
        return np.asarray(key)
    return key


def _is_basic(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return not any(isinstance(k, (ndarray, np.ndarray, list)) for k in keys)


class ndarray:  # noqa: N801  (named like cupy.ndarray)
    """A device array of the stand-in: a NumPy array that never leaves implicitly."""

    __slots__ = ("_a",)
    __array_priority__ = 100.0
    __hash__ = None

    def __init__(self, a: np.ndarray):
        self._a = a

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: _wrap(self._a.T))
    real = property(lambda self: _wrap(self._a.real))
    imag = property(lambda self: _wrap(self._a.imag))
    device = property(lambda self: _DEVICE)

    # --- explicit transfers and host syncs
    def get(self, stream=None, order="C", out=None, blocking=True):
        counters.syncs += 1
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        counters.host_to_device += 1
        self._a[...] = arr

    def item(self):
        counters.syncs += 1
        return self._a.item()

    def tolist(self):
        counters.syncs += 1
        return self._a.tolist()

    def __float__(self):
        counters.syncs += 1
        return float(self._a)

    def __int__(self):
        counters.syncs += 1
        return int(self._a)

    def __bool__(self):
        counters.syncs += 1
        return bool(self._a)

    def __complex__(self):
        counters.syncs += 1
        return complex(self._a)

    def __format__(self, spec):
        counters.syncs += 1
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(IMPLICIT_CONVERSION)

    def __repr__(self):
        return f"strict_cupy.{self._a!r}"

    def __str__(self):
        return str(self._a)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (_wrap(row) for row in self._a)

    def fill(self, value):
        if isinstance(value, np.ndarray) and value.ndim:
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        self._a.fill(_dev(value) if isinstance(value, ndarray) else value)

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, ndarray):
            value = value._a
        elif isinstance(value, (np.ndarray, list, tuple)):
            if _is_basic(key) and not (isinstance(value, np.ndarray) and value.ndim == 0):
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill") if isinstance(
                    value, np.ndarray) else TypeError(f"Unsupported type {type(value)}")
            counters.host_to_device += 1
        self._a[_index(key)] = value

    # --- NumPy protocol: np.<ufunc>/np.<function> on device arrays dispatch to the stand-in, as on CuPy
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or ufunc.__name__ not in UFUNCS:
            return NotImplemented
        return getattr(cupy, ufunc.__name__)(*inputs, **kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        mine = getattr(cupy, func.__name__, None) if func.__name__ in FUNCTION_KWARGS else None
        return NotImplemented if mine is None else mine(*args, **kwargs)

    def __getattr__(self, name):
        if name not in METHOD_KWARGS:
            raise AttributeError(f"the CuPy stand-in's ndarray has no method {name!r} (add it with the keywords "
                                 "cupy.ndarray accepts)")
        method = getattr(self._a, name)
        return lambda *args, **kwargs: _call(f"ndarray.{name}", method, args, kwargs, METHOD_KWARGS[name])


def _binary(op):
    numpy_op = getattr(np.ndarray, op)

    def method(self, other):
        try:
            value = _dev(other)
        except TypeError:
            if isinstance(other, np.ndarray) or op not in ("__eq__", "__ne__"):
                raise
            return NotImplemented
        result = numpy_op(self._a, value)
        if result is NotImplemented:
            return result
        return self if result is self._a else _wrap(result)
    method.__name__ = op
    return method


for _name in ("add sub mul truediv floordiv mod pow matmul and or xor lshift rshift".split()):
    for _op in (f"__{_name}__", f"__r{_name}__", f"__i{_name}__"):
        setattr(ndarray, _op, _binary(_op))
for _op in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
    setattr(ndarray, _op, _binary(_op))
for _op in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(ndarray, _op, (lambda op: lambda self: _wrap(getattr(self._a, op)()))(_op))


class ufunc:  # noqa: N801
    """A CuPy-like ufunc: device arrays and scalars only; keywords out, casting, dtype."""

    def __init__(self, name):
        self.__name__ = name
        self._np = getattr(np, name)

    def __call__(self, *args, **kwargs):
        return _call(self.__name__, self._np, args, kwargs, UFUNC_KWARGS, sequences=False)

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            _refuse(a)
        args = (a._a, _index(indices)) + (() if b is None else (_dev(b),))
        self._np.at(*args)

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        return _call(f"{self.__name__}.reduce", self._np.reduce, (array,),
                     {"axis": axis, "dtype": dtype, "out": out, "keepdims": keepdims}, {"axis", "dtype", "out",
                                                                                       "keepdims"})

    def outer(self, a, b, **kwargs):
        return _call(f"{self.__name__}.outer", self._np.outer, (a, b), kwargs, UFUNC_KWARGS, sequences=False)


class _Stream:
    def synchronize(self):
        counters.syncs += 1


class _Device:
    id = 0

    def __str__(self):
        return "<CUDA Device 0 (stand-in)>"


_DEVICE = _Device()


def _function(name, func, allowed):
    def call(*args, **kwargs):
        return _call(name, func, args, kwargs, allowed)
    call.__name__ = name
    return call


def _asnumpy(a, stream=None, order="C", out=None, blocking=True):
    return a.get(order=order, out=out) if isinstance(a, ndarray) else np.asarray(a, order=order)


def _ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        _refuse(a)          # CuPy's ascontiguousarray takes device arrays only
    return ndarray(np.ascontiguousarray(a._a, dtype=dtype))


def _make_module() -> types.ModuleType:
    module = types.ModuleType("cupy", "A strict CuPy stand-in for tests (see tests/_strict_cupy.py).")
    module.ndarray = ndarray
    module.counters = counters
    for name in UFUNCS:
        setattr(module, name, ufunc(name))
    for name, allowed in FUNCTION_KWARGS.items():
        if hasattr(np, name):   # asarray, array, asnumpy, ascontiguousarray: set below
            setattr(module, name, _function(name, getattr(np, name), allowed))
    module.asarray = lambda a, dtype=None, order=None, *, copy=None, blocking=False: _host_to_device(a, dtype, copy)
    module.array = lambda obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False: \
        _host_to_device(obj, dtype, copy)
    module.asnumpy = _asnumpy
    module.ascontiguousarray = _ascontiguousarray
    module.linalg = types.SimpleNamespace(norm=_function("linalg.norm", np.linalg.norm,
                                                         NAMESPACE_KWARGS["linalg.norm"]))
    module.lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(as_strided=_function(
        "as_strided", np.lib.stride_tricks.as_strided, NAMESPACE_KWARGS["lib.stride_tricks.as_strided"])))
    module.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
        get_current_stream=lambda: _Stream(), Device=lambda device=0: _DEVICE)
    for name in ("float16 float32 float64 int8 int16 int32 int64 uint8 uint16 uint32 uint64 bool_ complex64 "
                 "complex128 dtype newaxis pi inf nan e".split()):
        setattr(module, name, getattr(np, name))
    return module


cupy = _make_module()
