"""Array backends: the one module that knows NumPy from CuPy.

Every kernel in minigru asks its *inputs* which array module to use::

    xp = get_array_module(x, weight)   # numpy or cupy
    out = xp.zeros(shape, dtype=x.dtype)

so the same code runs on the CPU (NumPy) and on an NVIDIA GPU (CuPy).
The *current backend* (``set_backend`` / ``use_backend``) only decides
where **new** arrays are made: parameters of freshly built layers and the
batches a ``DataLoader`` yields. Arrays never move by themselves: mixing a
NumPy and a CuPy array raises :class:`BackendMismatchError` instead of
copying silently, and ``module.to("cupy")`` / :func:`to_backend` move data
explicitly.

Randomness is drawn on the host from a ``numpy.random.Generator`` and then
moved to the backend (see :func:`random_uniform`), so a seed gives the same
numbers on NumPy and on CuPy.

No other module of minigru imports ``cupy``.
"""
from __future__ import annotations

import contextlib
import math
import numbers
from typing import Iterator

import numpy as np

__all__ = [
    "BackendError", "BackendMismatchError", "BackendUnavailableError",
    "BACKENDS", "get_backend", "set_backend", "use_backend", "get_xp",
    "get_array_module", "backend_of", "is_array", "values_on_host", "cupy_available",
    "to_numpy", "to_backend", "scatter_add", "erf", "make_rng",
    "random_uniform", "random_normal", "synchronize",
]

BACKENDS = ("numpy", "cupy")

_CUPY_HINT = ("install CuPy with its CUDA libraries for your driver: pip install 'minigru[cuda12]' "
              "(CUDA 12.x driver) or pip install 'minigru[cuda13]' (CUDA 13.x driver)")


class BackendError(RuntimeError):
    """Base class of backend problems."""


class BackendUnavailableError(BackendError):
    """The requested backend cannot be used here (CuPy or a CUDA device is missing)."""


class BackendMismatchError(BackendError, TypeError):
    """Arrays of two backends (NumPy and CuPy) met in one operation."""


_current = "numpy"
_cupy = None      # the imported cupy module, once asked for and found usable
_stand_in = None  # a CuPy emulation used as the 'cupy' backend instead (tests only, see _use_cupy_stand_in)

_SELF_TEST = np.arange(6, dtype=np.float32).reshape(2, 3)
_SELF_TEST_SUM = float(((2 * _SELF_TEST + 1) @ _SELF_TEST.T).sum())


def _check_kernels(cupy) -> None:
    """Run one elementwise kernel, one matmul and one reduction on the device.

    A CUDA device can be visible while CuPy still cannot compile kernels
    (NVRTC missing) or multiply matrices (cuBLAS missing): plain
    ``cupy-cuda12x`` expects a CUDA Toolkit that driver-only machines lack.
    Failing here turns that into a :class:`BackendUnavailableError` with the
    fix, instead of a raw CuPy error at the first layer of a training run.
    """
    try:
        a = cupy.asarray(_SELF_TEST)
        total = float(cupy.asnumpy(((a * 2 + 1) @ a.T).sum()))
    except Exception as err:  # CompileException, ImportError, RuntimeError, CUDARuntimeError, ...
        reason = (str(err).strip().splitlines() or [""])[0]
        raise BackendUnavailableError(
            f"CuPy sees a CUDA device but cannot run kernels on it ({type(err).__name__}: {reason}); the CUDA "
            f"libraries (NVRTC, cuBLAS) are missing or do not match the driver; "
            f"{_CUPY_HINT}") from err
    if not np.isclose(total, _SELF_TEST_SUM):
        raise BackendUnavailableError(f"CuPy's self-test computed {total} instead of {_SELF_TEST_SUM}; the CUDA "
                                      f"setup is broken ({_CUPY_HINT})")


def _load_cupy():
    """Import CuPy and check that a CUDA device runs kernels; raise a clear error if not."""
    global _cupy
    if _stand_in is not None:
        return _stand_in
    if _cupy is not None:
        return _cupy
    try:
        import cupy  # noqa: PLC0415  (the only cupy import in the package)
    except ImportError as err:
        raise BackendUnavailableError(f"the 'cupy' backend needs CuPy, which is not installed; {_CUPY_HINT}") from err
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver/runtime missing or broken
        raise BackendUnavailableError(
            f"CuPy is installed but CUDA is not usable ({err}); the 'cupy' backend needs an NVIDIA GPU "
            f"with a working driver, and a CuPy build that matches it ({_CUPY_HINT})") from err
    if count == 0:
        raise BackendUnavailableError("CuPy is installed but no CUDA device was found; use the 'numpy' backend")
    _check_kernels(cupy)
    _cupy = cupy
    return cupy


def _use_cupy_stand_in(module) -> None:
    """Tests only: serve ``module`` (a CuPy emulation with an ``ndarray`` type) as the 'cupy' backend.

    ``tests/conftest.py`` installs ``tests/_strict_cupy.py`` this way so the
    CuPy code paths run on machines without a GPU; ``None`` restores the real
    CuPy. The module passes the same kernel check as CuPy.
    """
    global _stand_in
    if module is not None:
        _check_kernels(module)
    _stand_in = module


def cupy_available() -> bool:
    """True when CuPy imports and at least one CUDA device is usable."""
    try:
        _load_cupy()
    except BackendUnavailableError:
        return False
    return True


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    return name


def get_xp(name: str | None = None):
    """The array module (``numpy`` or ``cupy``) of backend ``name`` (default: the current one)."""
    name = _check_name(name or _current)
    return np if name == "numpy" else _load_cupy()


def get_backend() -> str:
    """Name of the current backend, ``"numpy"`` or ``"cupy"``."""
    return _current


def set_backend(name: str) -> None:
    """Make ``name`` the backend on which new parameters and batches are created.

    Raises :class:`BackendUnavailableError` at once if ``name == "cupy"`` and
    CuPy or a CUDA device is missing.
    """
    global _current
    get_xp(name)  # fails early and clearly if unusable
    _current = name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator:
    """Context manager: ``with use_backend("cupy"): model = CNNGRU()`` builds on the GPU.

    Yields the array module; the previous backend is restored on exit.
    """
    previous = _current
    set_backend(name)
    try:
        yield get_xp(name)
    finally:
        set_backend(previous)


def _is_cupy_array(a) -> bool:
    # Decided by the type's module, so that asking never imports CuPy.
    return type(a).__module__.split(".")[0] == "cupy" or (_stand_in is not None and isinstance(a, _stand_in.ndarray))


def is_array(a) -> bool:
    """True for NumPy and CuPy arrays (and NumPy scalars)."""
    return isinstance(a, (np.ndarray, np.generic)) or _is_cupy_array(a)


def values_on_host(*arrays) -> bool:
    """True when every array lives in host memory (NumPy), so reading its values costs no device sync.

    Checks that read values (``int(targets.max())``) are free on the host but
    stall a GPU until all queued work is done; kernels ask this before making them.
    """
    return not any(_is_cupy_array(a) for a in arrays)


def backend_of(a) -> str:
    """``"numpy"`` or ``"cupy"`` for an array; TypeError for anything else."""
    if isinstance(a, (np.ndarray, np.generic)):
        return "numpy"
    if _is_cupy_array(a):
        return "cupy"
    raise TypeError(f"expected a NumPy or CuPy array, got {type(a).__module__}.{type(a).__qualname__}"
                    + ("; convert torch tensors with .detach().cpu().numpy()" if type(a).__module__.startswith("torch") else ""))


def get_array_module(*arrays):
    """Return ``numpy`` or ``cupy``: the module that all array arguments belong to.

    ``None`` and Python numbers are ignored; with no arrays at all, NumPy is
    returned. Arrays of both backends raise :class:`BackendMismatchError`
    (minigru never copies between host and GPU behind your back).
    """
    found = None
    for a in arrays:
        if a is None or isinstance(a, numbers.Number):
            continue
        name = backend_of(a)
        if found is None:
            found = name
        elif name != found:
            raise BackendMismatchError(
                "arrays from two backends were mixed (numpy and cupy); move the model with "
                "module.to('cupy'|'numpy') or the data with minigru.backend.to_backend(array, name)")
    if found == "cupy":
        return _load_cupy()
    return np


def to_numpy(a) -> np.ndarray:
    """A NumPy copy (or view) of a NumPy or CuPy array; Python numbers become 0-d arrays.

    Lists and tuples may hold arrays of either backend (each device array is
    copied explicitly: CuPy refuses ``np.asarray`` of its arrays).
    """
    if _is_cupy_array(a):
        return a.get()
    if isinstance(a, (list, tuple)):
        if all(isinstance(v, numbers.Number) for v in a):
            return np.asarray(a)
        return np.asarray([to_numpy(v) for v in a])
    if isinstance(a, (np.ndarray, np.generic, numbers.Number)):
        return np.asarray(a)
    backend_of(a)  # raises a TypeError naming the unsupported type
    return np.asarray(a)


def to_backend(a, name: str | None = None, dtype=None):
    """Move ``a`` to backend ``name`` (default: current), optionally casting to ``dtype``.

    Returns ``a`` itself when it already lives there with that dtype.
    """
    xp = get_xp(name)
    if xp is np:
        out = to_numpy(a)
    else:
        out = xp.asarray(a)  # host -> device copy (or no-op for a CuPy array)
    if dtype is not None and out.dtype != np.dtype(dtype):
        out = out.astype(dtype)
    return out


def scatter_add(target, indices, values) -> None:
    """``target[indices] += values`` where repeated indices *accumulate*, in place.

    Plain fancy-index ``+=`` keeps only one of several updates to the same
    element; ``xp.add.at`` (``numpy.add.at``, ``cupy.add.at``) adds them all.
    On CuPy ``values`` must be a device array or a number, and the dtype one
    that CUDA's atomicAdd supports (float16/32/64, int32, uint32, uint64).
    """
    get_array_module(target, values).add.at(target, indices, values)


_ERF = np.frompyfunc(math.erf, 1, 1)


def erf(x):
    """The error function of every element of ``x``: same shape, dtype and backend.

    NumPy has no erf, so the values come from Python's ``math.erf`` element by element, on the host
    (a CuPy array makes a round trip): exact to float64 rounding, and about 50 times slower than a
    NumPy ufunc. It serves the exact GELU (``GELU(approximate="none")``) and its gradient checks;
    the tanh form (``approximate="tanh"``) is the one to train with.
    """
    host = to_numpy(x)
    values = _ERF(host.astype(np.float64, copy=False)).astype(host.dtype)
    return _place(values, x)


def make_rng(seed=None) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, another Generator (returned as is) or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        raise TypeError("pass a numpy.random.Generator (np.random.default_rng(seed)) or an int seed, "
                        "not the legacy RandomState")
    return np.random.default_rng(seed)


def random_uniform(rng: np.random.Generator, shape, low=0.0, high=1.0, dtype=np.float32, like=None):
    """Uniform samples drawn on the host from ``rng`` and placed on the backend of ``like``
    (or the current backend when ``like`` is None)."""
    host = rng.uniform(low, high, size=shape).astype(dtype, copy=False)
    return _place(host, like)


def random_normal(rng: np.random.Generator, shape, mean=0.0, std=1.0, dtype=np.float32, like=None):
    """Normal samples drawn on the host from ``rng``, placed like :func:`random_uniform`."""
    host = rng.normal(mean, std, size=shape).astype(dtype, copy=False)
    return _place(host, like)


def _place(host: np.ndarray, like):
    if like is None:
        return to_backend(host)
    xp = get_array_module(like)
    return host if xp is np else xp.asarray(host)


def synchronize(xp=None) -> None:
    """Wait for queued GPU work (for honest timings); a no-op on NumPy."""
    active = xp if xp is not None else (_stand_in or _cupy)
    if active is not None and active is not np:
        active.cuda.get_current_stream().synchronize()
